// Gradient checks of matmul (2-D, batched with broadcast batch dims, 1-D operands) and of matmulT under
// every pair of transpose flags: elementwise, plus a directional check on larger operands.

import { describe } from 'vitest';
import { fc, test as fcTest } from '@fast-check/vitest';
import * as E from '../engine/index.js';
import { broadcastPair, dim, directionalCheck, gradcheck, input, seedArb, type GradInput } from '../testing/index.js';

const mkn = (max = 5) => fc.tuple(dim(max), dim(max), dim(max));
const names = (a: GradInput, b: GradInput) => `[${a.shape}] @ [${b.shape}]`;

describe('gradcheck: matmul', () => {
  const twoD = mkn().chain(([M, K, N]) => fc.tuple(input([M, K]), input([K, N])));
  fcTest.prop([twoD, seedArb])('matmul 2-D', ([a, b], seed) => {
    gradcheck(E.matmul, [a, b], { name: `matmul ${names(a, b)}`, seed });
    directionalCheck(E.matmul, [a, b], { name: `matmul ${names(a, b)}`, seed });
  });

  // Batch dims that broadcast: equal, size 1 on either side, or missing on either side.
  const batched = (maxDim: number) =>
    fc
      .tuple(broadcastPair(2, 3), mkn(maxDim))
      .chain(([[, ba, bb], [M, K, N]]) => fc.tuple(input([...ba, M, K]), input([...bb, K, N])));
  fcTest.prop([batched(4), seedArb])('matmul batched, broadcast batch dims', ([a, b], seed) => {
    gradcheck(E.matmul, [a, b], { name: `matmul ${names(a, b)}`, seed });
    directionalCheck(E.matmul, [a, b], { name: `matmul ${names(a, b)}`, seed });
  });

  // torch.matmul's promotion: a 1-D left operand is a row, a 1-D right operand a column.
  const oneD = fc
    .tuple(fc.constantFrom('vec @ vec', 'vec @ mat', 'mat @ vec'), broadcastPair(2, 3), mkn())
    .chain(([kind, [, ba, bb], [M, K, N]]) => {
      const a = kind === 'mat @ vec' ? [...ba, M, K] : [K];
      const b = kind === 'vec @ mat' ? [...bb, K, N] : [K];
      return fc.tuple(input(a), input(b));
    });
  fcTest.prop([oneD, seedArb])('matmul with 1-D operands', ([a, b], seed) => {
    gradcheck(E.matmul, [a, b], { name: `matmul ${names(a, b)}`, seed });
    directionalCheck(E.matmul, [a, b], { name: `matmul ${names(a, b)}`, seed });
  });

  // Larger operands, where an elementwise check would be slow: only the directional one.
  fcTest.prop([batched(12), seedArb])('matmul directional, larger operands', ([a, b], seed) => {
    directionalCheck(E.matmul, [a, b], { name: `matmul ${names(a, b)}`, seed });
  });
});

describe('gradcheck: matmulT', () => {
  for (const [transA, transB] of [
    [false, false],
    [false, true],
    [true, false],
    [true, true],
  ] as const) {
    const name = `matmulT(transA ${transA}, transB ${transB})`;
    const arb = fc
      .tuple(broadcastPair(2, 3), mkn())
      .chain(([[, ba, bb], [M, K, N]]) =>
        fc.tuple(input([...ba, ...(transA ? [K, M] : [M, K])]), input([...bb, ...(transB ? [N, K] : [K, N])])),
      );
    fcTest.prop([arb, seedArb])(name, ([a, b], seed) => {
      const f = (x: E.Tensor, y: E.Tensor) => E.matmulT(x, y, transA, transB);
      gradcheck(f, [a, b], { name: `${name} ${names(a, b)}`, seed });
      directionalCheck(f, [a, b], { name: `${name} ${names(a, b)}`, seed });
    });
  }
});
