// The CPU matmul against a naive triple loop in float64, at sizes that are not multiples of the kernel's
// 4x8 tile (1, 3, 17, 33, 65, 127 and the tile edges), under every pair of transpose flags, with
// broadcast batch dims and in float64. Forward values only; gradients are in gradcheck-matmul.test.ts.

import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';

/** mulberry32: a small seeded generator, so a failing case replays. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = Math.imul(s ^ (s >>> 15), 1 | s);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Values in [-1, 1) that float32 holds exactly, so the float64 reference sees the same inputs. */
function values(n: number, seed: number): Float64Array {
  const r = rng(seed);
  return Float64Array.from({ length: n }, () => Math.fround(2 * r() - 1));
}

interface Case {
  aShape: number[];
  bShape: number[];
  transA: boolean;
  transB: boolean;
  dtype: 'float32' | 'float64';
}

/**
 * Checks E.matmulT against sum_k op(A)[i, k] op(B)[k, j] in float64, per element within the bound
 * (K + 2) u sum_k |op(A)[i, k] op(B)[k, j]| (u the unit roundoff): rounding in any summation order.
 */
function check(c: Case, seed: number): void {
  const { aShape, bShape, transA, transB, dtype } = c;
  const ra = aShape.length;
  const rb = bShape.length;
  const [M, K] = transA ? [aShape[ra - 1], aShape[ra - 2]] : [aShape[ra - 2], aShape[ra - 1]];
  const N = transB ? bShape[rb - 2] : bShape[rb - 1];
  const aData = values(
    aShape.reduce((p, d) => p * d, 1),
    seed,
  );
  const bData = values(
    bShape.reduce((p, d) => p * d, 1),
    seed + 1,
  );
  const batch = E.broadcastShapes('test', aShape.slice(0, -2), bShape.slice(0, -2));

  const a = E.tensor(aData, aShape, { dtype });
  const b = E.tensor(bData, bShape, { dtype });
  const y = E.matmulT(a, b, transA, transB);
  expect(y.shape).toEqual([...batch, M, N]);
  const got = y.dataSync();

  const u = dtype === 'float32' ? 2 ** -24 : 2 ** -53;
  const nb = batch.reduce((p, d) => p * d, 1);
  // Offsets of each batch entry's matrix in a and b, broadcast like the engine does.
  const aOffs = E.broadcastStrides(aShape.slice(0, -2), batch);
  const bOffs = E.broadcastStrides(bShape.slice(0, -2), batch);
  for (let bi = 0; bi < nb; bi++) {
    let ao = 0;
    let bo = 0;
    for (let d = batch.length - 1, rest = bi; d >= 0; d--) {
      const idx = rest % batch[d];
      rest = Math.floor(rest / batch[d]);
      ao += idx * aOffs[d];
      bo += idx * bOffs[d];
    }
    ao *= M * K;
    bo *= K * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        let abs = 0;
        for (let k = 0; k < K; k++) {
          const x = aData[ao + (transA ? k * M + i : i * K + k)];
          const w = bData[bo + (transB ? j * K + k : k * N + j)];
          s += x * w;
          abs += Math.abs(x * w);
        }
        const v = got[bi * M * N + i * N + j];
        if (!(Math.abs(v - s) <= (K + 2) * u * abs)) {
          throw new Error(
            `matmulT [${aShape}]${transA ? '^T' : ''} @ [${bShape}]${transB ? '^T' : ''} ${dtype}: ` +
              `batch ${bi}, C[${i}, ${j}] = ${v}, reference ${s} (seed ${seed})`,
          );
        }
      }
    }
  }
}

const FLAGS = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
] as const;
const ODD = [1, 3, 17, 33, 65, 127];
// The tile is 4 x 8: one short of, exactly, and one past each edge.
const EDGES = [2, 4, 5, 7, 8, 9];

const mat = (rows: number, cols: number, trans: boolean) => (trans ? [cols, rows] : [rows, cols]);

describe('cpu matmul vs a float64 triple loop', () => {
  for (const [transA, transB] of FLAGS) {
    const flags = `transA ${transA}, transB ${transB}`;

    test(`every M, N, K in {${ODD}}, ${flags}`, () => {
      let seed = 1;
      for (const M of ODD)
        for (const N of ODD)
          for (const K of ODD) {
            check({ aShape: mat(M, K, transA), bShape: mat(K, N, transB), transA, transB, dtype: 'float32' }, seed++);
          }
    });

    test(`tile edges: M, N in {${EDGES}}, K in {1, 8, 33}, ${flags}`, () => {
      let seed = 1000;
      for (const M of EDGES)
        for (const N of EDGES)
          for (const K of [1, 8, 33]) {
            check({ aShape: mat(M, K, transA), bShape: mat(K, N, transB), transA, transB, dtype: 'float32' }, seed++);
          }
    });

    test(`broadcast batch dims, ${flags}`, () => {
      let seed = 2000;
      for (const [M, N, K] of [
        [1, 17, 33],
        [3, 5, 7],
        [17, 33, 65],
        [65, 9, 3],
      ]) {
        const a = mat(M, K, transA);
        const b = mat(K, N, transB);
        // Both batched; one side broadcast along an axis; one side missing the batch dims altogether.
        for (const [ba, bb] of [
          [[3], [3]],
          [[2, 1], [3]],
          [
            [1, 3],
            [2, 1],
          ],
          [[], [2, 3]],
          [[4], []],
        ]) {
          check({ aShape: [...ba, ...a], bShape: [...bb, ...b], transA, transB, dtype: 'float32' }, seed++);
        }
      }
    });

    test(`float64, ${flags}`, () => {
      let seed = 3000;
      for (const [M, N, K] of [
        [1, 1, 1],
        [3, 17, 33],
        [33, 65, 17],
        [127, 3, 65],
      ]) {
        check(
          { aShape: [2, ...mat(M, K, transA)], bShape: mat(K, N, transB), transA, transB, dtype: 'float64' },
          seed++,
        );
      }
    });
  }

  test('an empty dimension gives zeros or an empty result', () => {
    expect(Array.from(E.matmul(E.zeros([3, 0]), E.zeros([0, 2])).dataSync())).toEqual([0, 0, 0, 0, 0, 0]);
    expect(E.matmul(E.zeros([0, 4]), E.zeros([4, 5])).shape).toEqual([0, 5]);
  });
});
