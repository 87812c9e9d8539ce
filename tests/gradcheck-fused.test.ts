// Gradient checks of the fused ops (softmax, logSoftmax, targetLogProb, crossEntropy, attention, layerNorm,
// rmsNorm), each twice: with the CPU's fused kernels and with their composed fallbacks. Elementwise and
// directional. Whether the two paths agree on values is tests/algebra.test.ts's business, not this file's.

import { afterEach, beforeEach, describe, expect, test } from 'vitest';
import { fc, test as fcTest } from '@fast-check/vitest';
import * as E from '../engine/index.js';
import { cpuFused } from '../engine/cpu/fused.js';
import {
  dim,
  directionalCheck,
  floats,
  gradcheck,
  input,
  int32,
  seedArb,
  shapeArb,
  sizeOf,
  type GradFn,
  type GradInput,
} from '../testing/index.js';

/** Both checks on the same inputs. */
function check(fn: GradFn, inputs: readonly GradInput[], name: string, seed: number): void {
  gradcheck(fn, inputs, { name, seed });
  directionalCheck(fn, inputs, { name, seed });
}

/** Targets per row: a class in [0, V) or a negative (masked) value, about half and half. */
const targetsArb = (n: number, V: number) =>
  fc
    .array(fc.oneof(fc.integer({ min: 0, max: V - 1 }), fc.integer({ min: -5, max: -1 })), {
      minLength: n,
      maxLength: n,
    })
    .map((t) => Int32Array.from(t));

/** logits [...rows, V] and int32 targets [...rows]. */
const logitsTargets = shapeArb(0, 2, 4).chain((rows) =>
  dim(5).chain((V) =>
    fc.tuple(input([...rows, V], floats(-3, 3)), fc.constant(rows), targetsArb(sizeOf(rows), V), fc.constant(V)),
  ),
);

describe.each([
  ['fused kernels', true],
  ['composed fallbacks', false],
] as const)('gradcheck: fused ops, %s', (_, fused) => {
  beforeEach(() => E.setFusedKernels(fused));
  afterEach(() => E.setFusedKernels(true));

  test('the switch selects the path', () => {
    const x = E.zeros([2], { dtype: 'float64' });
    expect(E.fusedKernel(x, 'logSoftmax') !== undefined).toBe(fused);
    x.dispose();
  });

  const withDim = (nonLast: boolean) =>
    shapeArb(nonLast ? 2 : 1, 3, 4).chain((s) => {
      const r = s.length;
      const dimArb = nonLast
        ? fc.integer({ min: 0, max: r - 2 }).chain((d) => fc.constantFrom(d, d - r))
        : fc.constantFrom(-1, r - 1);
      return fc.tuple(input(s, floats(-3, 3)), dimArb);
    });

  fcTest.prop([withDim(false), seedArb])('logSoftmax, last dim', ([x, d], seed) => {
    check((t) => E.logSoftmax(t, d), [x], `logSoftmax(dim ${d}) of [${x.shape}]`, seed);
  });
  fcTest.prop([withDim(true), seedArb])('logSoftmax, non-last dim', ([x, d], seed) => {
    check((t) => E.logSoftmax(t, d), [x], `logSoftmax(dim ${d}) of [${x.shape}]`, seed);
  });
  fcTest.prop([fc.boolean().chain(withDim), seedArb])('softmax', ([x, d], seed) => {
    check((t) => E.softmax(t, d), [x], `softmax(dim ${d}) of [${x.shape}]`, seed);
  });

  fcTest.prop([logitsTargets, seedArb])(
    'targetLogProb (negative targets mask their rows)',
    ([logits, rows, targets], seed) => {
      check(
        (t) => E.targetLogProb(t, int32(targets, rows)),
        [logits],
        `targetLogProb([${logits.shape}], targets ${targets})`,
        seed,
      );
    },
  );

  for (const reduction of ['mean', 'sum', 'none'] as const) {
    // ignoreIndex: the default (-100), or a class, so some valid-looking targets are ignored too.
    const arb = logitsTargets.chain(([logits, rows, targets, V]) =>
      fc.tuple(
        fc.constant(logits),
        fc.constant(rows),
        fc.constant(targets),
        fc.option(fc.integer({ min: 0, max: V - 1 }), { nil: undefined }),
      ),
    );
    fcTest.prop([arb, seedArb])(
      `crossEntropy, reduction ${reduction}`,
      ([logits, rows, targets, ignoreIndex], seed) => {
        check(
          (t) => E.crossEntropy(t, int32(targets, rows), { reduction, ignoreIndex }),
          [logits],
          `crossEntropy(${reduction}, ignoreIndex ${ignoreIndex}) of [${logits.shape}], targets ${targets}`,
          seed,
        );
      },
    );
  }

  // q [...batch, T, hs], k and v [...batch, S, hs]; T == S is a prompt, T < S decodes against a KV cache.
  for (const kv of ['T == S', 'T < S'] as const) {
    const arb = fc
      .record({
        batch: fc.array(dim(2), { maxLength: 2 }),
        T: dim(kv === 'T == S' ? 6 : 5),
        extra: dim(kv === 'T == S' ? 0 : 5, kv === 'T == S' ? 0 : 1),
        hs: dim(4),
        scale: fc.option(
          fc.integer({ min: 2, max: 20 }).map((k) => k / 10),
          { nil: undefined },
        ),
      })
      .chain(({ batch, T, extra, hs, scale }) => {
        const S = Math.min(T + extra, 6);
        return fc.tuple(
          input([...batch, T, hs]),
          input([...batch, S, hs]),
          input([...batch, S, hs]),
          fc.constant(scale),
        );
      });
    fcTest.prop([arb, seedArb])(`scaledDotProductAttention, ${kv}`, ([q, k, v, scale], seed) => {
      const f = (a: E.Tensor, b: E.Tensor, c: E.Tensor) => E.scaledDotProductAttention(a, b, c, { scale });
      check(f, [q, k, v], `attention(q [${q.shape}], k, v [${k.shape}], scale ${scale})`, seed);
    });
  }

  const normArb = shapeArb(0, 2, 4).chain((rows) =>
    dim(5).chain((C) => fc.tuple(input([...rows, C]), input([C]), input([C]))),
  );
  for (const params of ['none', 'weight', 'bias', 'weight and bias'] as const) {
    fcTest.prop([normArb, seedArb])(`layerNorm, ${params}`, ([x, w, b], seed) => {
      const name = `layerNorm(${params}) of [${x.shape}]`;
      if (params === 'none') check((t) => E.layerNorm(t), [x], name, seed);
      if (params === 'weight') check((t, tw) => E.layerNorm(t, tw), [x, w], name, seed);
      if (params === 'bias') check((t, tb) => E.layerNorm(t, undefined, tb), [x, b], name, seed);
      if (params === 'weight and bias') check((t, tw, tb) => E.layerNorm(t, tw, tb), [x, w, b], name, seed);
    });
  }
  for (const params of ['none', 'weight'] as const) {
    fcTest.prop([normArb, seedArb])(`rmsNorm, ${params}`, ([x, w], seed) => {
      const name = `rmsNorm(${params}) of [${x.shape}]`;
      if (params === 'none') check((t) => E.rmsNorm(t), [x], name, seed);
      else check((t, tw) => E.rmsNorm(t, tw), [x, w], name, seed);
    });
  }

  const addNormArb = shapeArb(0, 2, 4).chain((rows) =>
    dim(5).chain((C) => fc.tuple(input([...rows, C]), input([...rows, C]), input([C]))),
  );
  // Both outputs feed the loss (their product), so the residual sum's gradient meets the norm's.
  fcTest.prop([addNormArb, seedArb])('addRmsNorm: x + r and its RMSNorm', ([x, r, w], seed) => {
    check((tx, tr, tw) => E.mul(...E.addRmsNorm(tx, tr, tw, 1e-5)), [x, r, w], `addRmsNorm of [${x.shape}]`, seed);
  });

  // Attention's inputs: three projections into heads, q and k rotated at fixed angles (constants).
  const qkvArb = fc.record({ B: dim(2), T: dim(3), nh: dim(2), half: dim(2) }).chain(({ B, T, nh, half }) => {
    const C = nh * 2 * half;
    return fc.tuple(fc.constant({ B, T, nh, half }), input([B, T, C]), input([C, C]), input([C, C]), input([C, C]));
  });
  fcTest.prop([qkvArb, seedArb])(
    'qkvHeads: projections, heads and RoPE',
    ([{ B, T, nh, half }, h, wq, wk, wv], seed) => {
      const angle = Float64Array.from({ length: B * T * half }, (_, i) => 0.7 * i + 0.3);
      const fn = (th: E.Tensor, a: E.Tensor, b: E.Tensor, c: E.Tensor) => {
        const cos = E.tensor(angle.map(Math.cos), [B, T, half]);
        const sin = E.tensor(angle.map(Math.sin), [B, T, half]);
        const [q, k, v] = E.qkvHeads(th, a, b, c, cos, sin, nh);
        return E.cat([q, E.mul(k, 2), E.mul(v, 3)], -1);
      };
      check(fn, [h, wq, wk, wv], `qkvHeads of [${h.shape}], ${nh} heads`, seed);
    },
  );

  // A pre-norm residual block: the tape orders a diamond graph, and a weight is used twice.
  const blockArb = fc.tuple(fc.array(dim(2), { maxLength: 1 }), dim(4), dim(4)).chain(([batch, T, C]) =>
    fc.tuple(
      input([...batch, T, C]),
      input([C]),
      input([C, C]),
      fc
        .array(fc.integer({ min: -1, max: C - 1 }), { minLength: sizeOf(batch) * T, maxLength: sizeOf(batch) * T })
        .map((t) => ({ shape: [...batch, T], t: Int32Array.from(t) })),
    ),
  );
  fcTest.prop([blockArb, seedArb])(
    'composite: residual block with attention and a tied weight',
    ([x, g, w, targets], seed) => {
      const block = (tx: E.Tensor, tg: E.Tensor, tw: E.Tensor) => {
        const h = E.rmsNorm(tx, tg); // (..., T, C)
        const a = E.scaledDotProductAttention(E.matmul(h, tw), h, E.gelu(E.matmul(h, tw))); // (..., T, C)
        const y = E.add(tx, E.layerNorm(a)); // residual
        // tied output head
        return E.crossEntropy(E.matmulT(y, tw, false, true), int32(targets.t, targets.shape), { reduction: 'sum' });
      };
      check(block, [x, g, w], `block(x [${x.shape}])`, seed);
    },
  );
});

// The CPU attention keeps its probabilities for the backward of the same call; a backward given an lse
// it did not produce (a copy) recomputes them from the lse. Both routes must give the same gradients.
describe('CPU attention backward: saved and recomputed probabilities agree', () => {
  const arb = fc.record({
    B: dim(3),
    T: dim(6),
    extra: fc.integer({ min: 0, max: 3 }),
    hs: dim(4),
    masked: fc.boolean(),
  });
  fcTest.prop([arb, seedArb])('attentionBackward', ({ B, T, extra, hs, masked }, seed) => {
    const S = T + extra;
    const g = new E.Generator(seed);
    const view = (shape: number[]) => ({
      handle: E.randn(shape, { generator: g, dtype: 'float64' }).dataSync(),
      shape,
      dtype: 'float64' as const,
    });
    const [q, k, v, dout] = [view([B, T, hs]), view([B, S, hs]), view([B, S, hs]), view([B, T, hs])];
    // keyBias hides the first key of every row; rows with no other visible key exercise the empty case.
    const keyBias = masked
      ? {
          handle: Float64Array.from({ length: B * S }, (_, i) => (i % S === 0 ? -Infinity : 0)),
          shape: [B, S],
          dtype: 'float64' as const,
        }
      : undefined;
    const { out, lse } = cpuFused.attention!(q, k, v, 0.5, keyBias);
    const o = { handle: out, shape: q.shape, dtype: q.dtype };
    const saved = cpuFused.attentionBackward!(
      q,
      k,
      v,
      o,
      { handle: lse, shape: [B, T], dtype: q.dtype },
      dout,
      0.5,
      keyBias,
    );
    const lseCopy = { handle: (lse as Float64Array).slice(), shape: [B, T], dtype: q.dtype };
    const again = cpuFused.attentionBackward!(q, k, v, o, lseCopy, dout, 0.5, keyBias);
    for (const key of ['dq', 'dk', 'dv'] as const) {
      const [a, b] = [saved[key] as Float64Array, again[key] as Float64Array];
      for (let i = 0; i < a.length; i++)
        expect(Math.abs(a[i] - b[i]), `${key}[${i}]`).toBeLessThan(1e-9 * (1 + Math.abs(b[i])));
    }
  });
});
