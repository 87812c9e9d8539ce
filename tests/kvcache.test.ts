// The KV cache written in place, on the CPU: E.writeInto, attention over the first kvLen slots of a larger
// buffer (bit for bit what attention over exactly those slots gives, unused slots poisoned with NaN), and
// GPT's cache that grows by doubling, is written in place and rolls back by its length.

import { fc, test as fcTest } from '@fast-check/vitest';
import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';
import { GPT, type GPTConfig } from '../model/gpt.js';
import { disposeCache } from '../model/kvcache.js';
import { BatchDecoder } from '../model/sample.js';

const bits = (t: E.Tensor) => Array.from(new Uint32Array(Float64Array.from(t.dataSync()).buffer));

describe('E.writeInto', () => {
  fcTest.prop([
    fc.array(fc.constantFrom(1, 2, 3, 5), { minLength: 1, maxLength: 4 }),
    fc.nat(),
    fc.integer({ min: 0, max: 4 }),
    fc.nat(),
    fc.constantFrom<E.DType>('float32', 'float64', 'int32'),
  ])('writes src over dst.narrow(dim, start, n) and leaves the rest as it was', (shape, axisSeed, extra, at, dtype) => {
    const axis = axisSeed % shape.length;
    const n = shape[axis];
    const dstShape = shape.map((d, i) => (i === axis ? d + extra : d));
    const start = at % (extra + 1);
    const g = new E.Generator(at);
    const make = (s: number[]) => E.randint(-50, 50, s, { generator: g }).to(dtype);
    const dst = make(dstShape);
    const src = make(shape);
    const before = E.narrow(dst, axis, 0, start);
    const after = E.narrow(dst, axis, start + n, extra - start);
    const want = E.cat([before, src, after], axis).dataSync();
    E.noGrad(() => E.writeInto(dst, src, axis, start));
    expect(Array.from(dst.dataSync())).toEqual(Array.from(want));
  });

  test('bad input: one line naming the op, the shapes and the range', () => {
    const dst = E.zeros([2, 3, 8]);
    expect(() => E.writeInto(dst, E.zeros([2, 3, 4]), 2, 5)).toThrow(
      new RegExp(
        '^writeInto: src \\[2, 3, 4\\] float32 must equal dst \\[2, 3, 8\\] float32 except along dimension 2, ' +
          'and fit it from start 5$',
      ),
    );
    expect(() => E.writeInto(dst, E.zeros([2, 4, 1]), 2, 0)).toThrow(/except along dimension 2/);
    expect(() => E.writeInto(dst, E.zeros([2, 3, 1], { dtype: 'float64' }), 2, 0)).toThrow(/float64 must equal/);
    expect(() => E.writeInto(dst, E.zeros([2, 3, 1]), 2, 1.5)).toThrow(/from start 1.5/);
    expect(() => E.writeInto(dst, E.zeros([2, 3, 1]), 3, 0)).toThrow(/writeInto: axis 3 is out of range/);
    expect(() => E.writeInto(dst, dst.reshape([2, 3, 8]), 2, 0)).toThrow(/share storage/);
    const w = E.zeros([2, 3, 1], { requiresGrad: true });
    expect(() => E.writeInto(dst, w, 2, 0)).toThrow(/not differentiated; run them under noGrad/);
    E.noGrad(() => E.writeInto(dst, w, 2, 0)); // allowed: nothing is recorded
  });
});

describe('attention over the first kvLen slots of a buffer', () => {
  // T up to 17 takes both CPU routes (plain loops up to FEW_ROWS query rows, then the matmuls).
  fcTest.prop(
    [
      fc.constantFrom(1, 2, 4, 5, 17),
      fc.integer({ min: 0, max: 9 }),
      fc.integer({ min: 1, max: 20 }),
      fc.constantFrom<'float32' | 'float64'>('float32', 'float64'),
      fc.boolean(),
      fc.integer(),
    ],
    { numRuns: 40 },
  )(
    'equals attention on exactly those slots, bit for bit, with NaN in every unused one',
    (T, past, spare, dtype, withBias, seed) => {
      const [B0, H, hs] = [2, 3, 5];
      const S = T + past;
      const cap = S + spare;
      const g = new E.Generator(seed);
      const o = { dtype, generator: g };
      const q = E.randn([B0, H, T, hs], o);
      const used = [E.randn([B0, H, S, hs], o), E.randn([B0, H, S, hs], o)];
      const bias = withBias ? E.where(E.lt(E.rand([B0, S], o), 0.2), -Infinity, 0).to(dtype) : undefined;
      const poisoned = (t: E.Tensor, dim: number) => {
        const shape = t.shape.map((d, i) => (i === dim ? cap : d));
        const buf = E.full(shape, NaN, { dtype });
        E.writeInto(buf, t, dim, 0);
        return buf;
      };
      const [kc, vc] = used.map((t) => poisoned(t, 2));
      const want = E.scaledDotProductAttention(q, used[0], used[1], { keyBias: bias });
      const got = E.scaledDotProductAttention(q, kc, vc, {
        keyBias: bias && poisoned(bias, 1),
        kvLen: S,
      });
      expect(bits(got)).toEqual(bits(want));
    },
  );

  test('with gradients recorded, or without the fused kernel, the used slots are copied out: same values', () => {
    const g = new E.Generator(1);
    const [T, S, cap] = [6, 9, 16];
    const q = E.randn([1, 2, T, 4], { dtype: 'float64', generator: g, requiresGrad: true });
    const k = E.randn([1, 2, cap, 4], { dtype: 'float64', generator: g, requiresGrad: true });
    const v = E.randn([1, 2, cap, 4], { dtype: 'float64', generator: g, requiresGrad: true });
    const weights = E.arange(4, { dtype: 'float64' }).add(1); // a cotangent that is not all ones
    const narrowed = () =>
      E.scaledDotProductAttention(q, E.narrow(k, 2, 0, S), E.narrow(v, 2, 0, S))
        .mul(weights)
        .sum();
    const viaKvLen = () => E.scaledDotProductAttention(q, k, v, { kvLen: S }).mul(weights).sum();
    const grads = (f: () => E.Tensor) => {
      for (const t of [q, k, v]) t.grad = null;
      const y = f();
      y.backward();
      return [y, q.grad!, k.grad!, v.grad!].map((t) => Array.from(t.dataSync()));
    };
    const want = grads(narrowed);
    expect(grads(viaKvLen)).toEqual(want);
    expect(want[2].slice(2 * S * 4 - 4 * 4)).not.toEqual(new Array(16).fill(0)); // the used rows do get gradients
    E.setFusedKernels(false);
    try {
      expect(grads(viaKvLen)).toEqual(grads(narrowed));
    } finally {
      E.setFusedKernels(true);
    }
  });

  test('bad kvLen: one line naming it and the range', () => {
    const q = E.zeros([1, 1, 3, 4]);
    const k = E.zeros([1, 1, 8, 4]);
    expect(() => E.scaledDotProductAttention(q, k, k, { kvLen: 2 })).toThrow(
      /^attention: kvLen 2 must be an integer in \[3, 8\] for q \[1, 1, 3, 4\] k \[1, 1, 8, 4\]$/,
    );
    expect(() => E.scaledDotProductAttention(q, k, k, { kvLen: 9 })).toThrow(/kvLen 9 must be an integer in \[3, 8\]/);
    expect(() => E.scaledDotProductAttention(q, k, k, { kvLen: 3.5 })).toThrow(/kvLen 3.5/);
  });
});

describe("GPT's KV cache", () => {
  const tiny: GPTConfig = {
    vocabSize: 23,
    blockSize: 128,
    nLayer: 2,
    nHead: 2,
    nEmbd: 8,
    ropeBase: 10000,
    normEps: 1e-5,
  };

  test('is written in place, doubles its capacity when full, and rolls back by its length', () => {
    const model = new GPT(tiny, { generator: new E.Generator(2) });
    const ids = (T: number) => E.randint(0, tiny.vocabSize, [2, T], { generator: new E.Generator(T) });
    const { cache } = E.noGrad(() => model.forward(ids(5), { returnCache: true }));
    const c = cache!;
    const capacity = () => c.keyBias.shape[1];
    expect([c.length, capacity(), c.k[0].shape]).toEqual([5, 16, [2, 2, 16, 4]]);
    const k0 = c.k[0];
    for (let t = 6; t <= 16; t++) {
      const r = E.noGrad(() => model.forward(ids(1), { cache: c }));
      expect(r.cache).toBe(c);
      expect(c.length).toBe(t);
    }
    expect(c.k[0]).toBe(k0); // 16 slots used of 16: never copied
    E.noGrad(() => model.forward(ids(1), { cache: c }));
    expect([c.length, capacity(), c.k[1].shape[2], c.v[1].shape[2]]).toEqual([17, 32, 32, 32]);
    expect(k0.isDisposed).toBe(true);
    E.noGrad(() => model.forward(ids(40), { cache: c })); // a long chunk: straight to the power of two that holds it
    expect([c.length, capacity()]).toEqual([57, 64]);
    expect(c.k.concat(c.v, [c.keyBias]).every((t) => t.kept)).toBe(true);
    disposeCache(c);
    model.dispose();
  });

  test('decoding on a cache while recording gradients is refused', () => {
    const model = new GPT(tiny);
    const { cache } = model.forward(E.zeros([1, 3], { dtype: 'int32' }), { returnCache: true });
    expect(() => model.forward(E.zeros([1, 1], { dtype: 'int32' }), { cache })).toThrow(
      /^GPT.forward: decoding on a KV cache is inference only .* run it under E.noGrad$/,
    );
    disposeCache(cache);
  });

  test("BatchDecoder's score leaves the cache's length and capacity as they were, and frees nothing live", async () => {
    const model = new GPT(tiny, { generator: new E.Generator(3) });
    const live = E.memory().liveTensors;
    const dec = new BatchDecoder(model, [[1, 2, 3], [4]]);
    await dec.generate({ maxTokens: 10, generator: new E.Generator(4) });
    const slots = dec.slots;
    expect(slots).toBe(13);
    const before = await dec.score([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [5]]);
    expect(dec.slots).toBe(slots);
    // The same score again reads the same slots: the rolled-back writes are overwritten, not appended to.
    expect(await dec.score([[5, 6, 7, 8, 9, 10, 11, 12, 13, 14], [5]])).toEqual(before);
    dec.dispose();
    expect(E.memory().liveTensors).toBe(live);
    model.dispose();
  });
});
