// Algebraic properties of the forward ops on the CPU backend: identities that must hold for any input,
// plus the numerical edge cases (large magnitudes, -Infinity masks, NaN) that a naive kernel gets wrong.

import { fc, test as fcTest } from '@fast-check/vitest';
import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';

const shape = (maxRank = 3, maxDim = 5) =>
  fc.array(fc.integer({ min: 1, max: maxDim }), { minLength: 1, maxLength: maxRank });
const values = (n: number, max = 10) =>
  fc.array(fc.double({ min: -max, max, noNaN: true, noDefaultInfinity: true }), { minLength: n, maxLength: n });
const shapeAndData = (maxRank = 3, maxDim = 5, max = 10) =>
  shape(maxRank, maxDim).chain((s) => fc.tuple(fc.constant(s), values(E.sizeOf(s), max)));

const f64 = (data: number[], s: number[]) => E.tensor(Float64Array.from(data), s);
const read = (t: E.Tensor) => Array.from(t.dataSync());

describe('softmax and logsumexp', () => {
  fcTest.prop([shapeAndData()])('softmax rows sum to 1', ([s, data]) => {
    const sums = read(E.softmax(f64(data, s)).sum(-1));
    for (const v of sums) expect(v).toBeCloseTo(1, 12);
  });

  fcTest.prop([shapeAndData(), fc.double({ min: -50, max: 50, noNaN: true })])(
    'logsumexp(x + c) = logsumexp(x) + c',
    ([s, data], c) => {
      const x = f64(data, s);
      const lhs = read(E.logsumexp(x.add(c), -1));
      const rhs = read(E.logsumexp(x, -1).add(c));
      lhs.forEach((v, i) => expect(v).toBeCloseTo(rhs[i], 9));
    },
  );

  fcTest.prop([shapeAndData(3, 6, 90), fc.boolean()])(
    'large magnitudes (|x| ~ 80) stay finite in float32',
    ([s, data], fused) => {
      E.setFusedKernels(fused);
      try {
        const x = E.tensor(Float32Array.from(data), s);
        for (const v of read(E.logSoftmax(x))) expect(Number.isFinite(v)).toBe(true);
        for (const v of read(E.logsumexp(x, -1))) expect(Number.isFinite(v)).toBe(true);
        for (const v of read(E.softmax(x))) expect(Number.isFinite(v)).toBe(true);
      } finally {
        E.setFusedKernels(true);
      }
    },
  );

  fcTest.prop([fc.boolean()])('a -Infinity mask gives probability 0 and leaves the rest normalised', (fused) => {
    E.setFusedKernels(fused);
    try {
      const x = E.tensor([[1, -Infinity, 2, -Infinity]]);
      const p = read(E.softmax(x));
      expect(p[1]).toBe(0);
      expect(p[3]).toBe(0);
      expect(p[0] + p[2]).toBeCloseTo(1, 6);
      expect(read(E.logSoftmax(x))[1]).toBe(-Infinity);
      expect(read(E.logsumexp(E.tensor([-Infinity, -Infinity]), 0))[0]).toBe(-Infinity);
    } finally {
      E.setFusedKernels(true);
    }
  });

  test('-Infinity in a masked row still gives a finite gradient elsewhere', () => {
    const x = E.tensor(Float64Array.from([0.5, -Infinity, 1.5]), [1, 3], { requiresGrad: true });
    E.logSoftmax(x)
      .mul(E.tensor(Float64Array.from([1, 0, 1]), [1, 3]))
      .sum()
      .backward();
    const g = read(x.grad!);
    expect(Number.isFinite(g[0]) && Number.isFinite(g[2])).toBe(true);
  });

  fcTest.prop([fc.boolean()])('NaN propagates through logSoftmax, logsumexp, max, sum and matmul', (fused) => {
    E.setFusedKernels(fused);
    try {
      const x = E.tensor([[1, NaN, 2]]);
      expect(read(E.logSoftmax(x)).every(Number.isNaN)).toBe(true);
      expect(Number.isNaN(read(E.logsumexp(x, -1))[0])).toBe(true);
      expect(Number.isNaN(read(x.max(-1))[0])).toBe(true);
      expect(Number.isNaN(read(x.sum())[0])).toBe(true);
      expect(read(x.matmul(E.ones([3, 2]))).every(Number.isNaN)).toBe(true);
    } finally {
      E.setFusedKernels(true);
    }
  });
});

describe('movement round trips', () => {
  fcTest.prop([shapeAndData(4, 4)])('reshape to flat and back is the identity', ([s, data]) => {
    const x = f64(data, s);
    expect(read(x.reshape([-1]).reshape(s))).toEqual(data);
  });

  fcTest.prop([
    shapeAndData(4, 4).chain(([s, d]) =>
      fc.tuple(fc.constant(s), fc.constant(d), fc.shuffledSubarray([...s.keys()], { minLength: s.length })),
    ),
  ])('permute then inverse permute is the identity, and permute matches index arithmetic', ([s, data, perm]) => {
    const x = f64(data, s);
    const inv = new Array<number>(perm.length);
    perm.forEach((p, i) => (inv[p] = i));
    const y = x.permute(perm);
    expect(y.shape).toEqual(perm.map((p) => s[p]));
    expect(read(y.permute(inv))).toEqual(data);
    // y[j] = x[i] where i is j's multi-index mapped back through perm.
    const ys = E.stridesOf(y.shape);
    const xs = E.stridesOf(s);
    const yd = read(y);
    for (let j = 0; j < yd.length; j++) {
      let rem = j;
      let src = 0;
      for (let k = 0; k < ys.length; k++) {
        const ik = Math.floor(rem / ys[k]);
        rem -= ik * ys[k];
        src += ik * xs[perm[k]];
      }
      expect(yd[j]).toBe(data[src]);
    }
  });

  fcTest.prop([
    shapeAndData(3, 5).chain(([s, d]) =>
      fc.tuple(fc.constant(s), fc.constant(d), fc.integer({ min: 0, max: s.length - 1 })),
    ),
  ])('splitting along an axis with narrow and concatenating back is the identity', ([s, data, axis]) => {
    const x = f64(data, s);
    const cut = Math.floor(s[axis] / 2);
    const parts = [x.narrow(axis, 0, cut), x.narrow(axis, cut, s[axis] - cut)];
    expect(read(E.cat(parts, axis))).toEqual(data);
  });

  test('pad then slice is the identity; expand repeats', () => {
    const x = E.tensor([
      [1, 2],
      [3, 4],
    ]);
    const p = E.pad(x, [1, 0], [0, 2]);
    expect(p.shape).toEqual([3, 4]);
    expect(read(p)).toEqual([0, 0, 0, 0, 1, 2, 0, 0, 3, 4, 0, 0]);
    expect(read(p.slice([1, 0], [2, 2]))).toEqual([1, 2, 3, 4]);
    expect(read(E.tensor([1, 2]).expand([2, -1]))).toEqual([1, 2, 1, 2]);
  });
});

describe('matmul and reductions against naive references', () => {
  const dims = fc.integer({ min: 1, max: 9 });
  fcTest.prop([dims, dims, dims, fc.boolean(), fc.boolean(), fc.integer()])(
    'matmulT equals a naive triple loop for every transpose flag',
    (M, K, N, tA, tB, seed) => {
      const g = new E.Generator(seed);
      const a = E.randn(tA ? [K, M] : [M, K], { dtype: 'float64', generator: g });
      const b = E.randn(tB ? [N, K] : [K, N], { dtype: 'float64', generator: g });
      const A = read(a);
      const B = read(b);
      const out = read(E.matmulT(a, b, tA, tB));
      for (let i = 0; i < M; i++) {
        for (let j = 0; j < N; j++) {
          let s = 0;
          for (let k = 0; k < K; k++) s += (tA ? A[k * M + i] : A[i * K + k]) * (tB ? B[j * K + k] : B[k * N + j]);
          expect(out[i * N + j]).toBeCloseTo(s, 10);
        }
      }
    },
  );

  test('batched matmul broadcasts batch dimensions', () => {
    const a = E.randn([2, 1, 3, 4], { dtype: 'float64' });
    const b = E.randn([5, 4, 2], { dtype: 'float64' });
    const y = E.matmul(a, b);
    expect(y.shape).toEqual([2, 5, 3, 2]);
    const ref = E.matmul(a.narrow(0, 1, 1).reshape([3, 4]), b.narrow(0, 3, 1).reshape([4, 2]));
    expect(read(y.narrow(0, 1, 1).narrow(1, 3, 1))).toEqual(read(ref));
  });

  fcTest.prop([shapeAndData(4, 4)])('sum over all axes equals the sum of sums over each axis in turn', ([s, data]) => {
    const x = f64(data, s);
    let y = x;
    for (let a = s.length - 1; a >= 0; a--) y = y.sum(a);
    expect(read(y)[0]).toBeCloseTo(read(x.sum())[0], 9);
    expect(read(x.mean())[0]).toBeCloseTo(data.reduce((p, v) => p + v, 0) / data.length, 9);
  });

  test('max keeps dims on request and matches Math.max', () => {
    const x = E.tensor([
      [1, 5, 3],
      [7, 2, 0],
    ]);
    expect(read(x.max(1))).toEqual([5, 7]);
    expect(x.max(1, true).shape).toEqual([2, 1]);
    expect(read(x.max(0))).toEqual([7, 5, 3]);
    expect(read(x.min())).toEqual([0]);
  });
});

describe('fused kernels agree with their composed forms (CPU)', () => {
  const both = <T>(fn: () => T): [T, T] => {
    const a = fn();
    E.setFusedKernels(false);
    try {
      return [a, fn()];
    } finally {
      E.setFusedKernels(true);
    }
  };
  const close = (a: number[], b: number[], tol = 1e-10) =>
    a.forEach((v, i) => expect(Math.abs(v - b[i])).toBeLessThanOrEqual(tol * (1 + Math.abs(b[i]))));

  fcTest.prop([
    fc.integer({ min: 1, max: 4 }),
    fc.integer({ min: 1, max: 7 }),
    fc.integer({ min: 0, max: 4 }),
    fc.integer({ min: 1, max: 5 }),
    fc.integer(),
  ])('attention: outputs and q/k/v gradients, T <= S', (B, T, extra, hs, seed) => {
    const S = T + extra;
    const g = new E.Generator(seed);
    const mk = (s: number[]) => E.randn(s, { dtype: 'float64', generator: g });
    const [q0, k0, v0, c] = [mk([B, T, hs]), mk([B, S, hs]), mk([B, S, hs]), mk([B, T, hs])];
    const [fusedR, composedR] = both(() => {
      const [q, k, v] = [q0, k0, v0].map((t) => t.detach().requiresGrad_());
      const out = E.scaledDotProductAttention(q, k, v);
      out.mul(c).sum().backward();
      return [out, q.grad!, k.grad!, v.grad!].map(read);
    });
    fusedR.forEach((r, i) => close(r, composedR[i]));
  });

  fcTest.prop([fc.integer({ min: 1, max: 6 }), fc.integer({ min: 1, max: 9 }), fc.integer()])(
    'targetLogProb with masked rows; layerNorm; rmsNorm',
    (R, V, seed) => {
      const g = new E.Generator(seed);
      const logits0 = E.randn([R, V], { dtype: 'float64', generator: g });
      const targets = E.tensor(
        Int32Array.from({ length: R }, (_, i) => (i % 3 === 2 ? -1 : g.int(V))),
        [R],
      );
      const w0 = E.randn([V], { dtype: 'float64', generator: g });
      const b0 = E.randn([V], { dtype: 'float64', generator: g });
      const [f, c] = both(() => {
        const [x, w, b] = [logits0, w0, b0].map((t) => t.detach().requiresGrad_());
        const lp = E.targetLogProb(x, targets);
        const ln = E.layerNorm(x, w, b);
        const rn = E.rmsNorm(x, w);
        lp.sum().add(ln.mul(ln).sum()).add(rn.mul(rn).sum()).backward();
        return [lp, ln, rn, x.grad!, w.grad!, b.grad!].map(read);
      });
      f.forEach((r, i) => close(r, c[i]));
      const lp = read(E.targetLogProb(logits0, targets));
      lp.forEach((v, i) => (i % 3 === 2 ? expect(v).toBe(0) : expect(v).toBeLessThanOrEqual(0)));
    },
  );
});

describe('attention keyBias (padding inside a KV cache)', () => {
  fcTest.prop([
    fc.integer({ min: 1, max: 5 }),
    fc.array(fc.boolean(), { minLength: 1, maxLength: 6 }),
    fc.integer({ min: 1, max: 4 }),
    fc.boolean(),
    fc.integer(),
  ])(
    'hiding keys with -Infinity equals attending over the sequence with those keys removed',
    (T0, holes, hs, fused, seed) => {
      E.setFusedKernels(fused);
      try {
        // A real prefix of T0 keys + queries at the end; `holes` inserts masked slots after the first key.
        const g = new E.Generator(seed);
        const real = T0 + 1;
        const S = real + holes.filter(Boolean).length;
        const slots: number[] = [0]; // slot -> real index, -1 for a hole
        for (let i = 1; i < real; i++) {
          if (holes[i % holes.length]) slots.push(-1);
          slots.push(i);
        }
        while (slots.length < S) slots.push(-1);
        slots.length = S;
        const realSlots = slots.map((r, s) => (r >= 0 ? s : -1)).filter((s) => s >= 0);
        const k = E.randn([1, 2, S, hs], { dtype: 'float64', generator: g });
        const v = E.randn([1, 2, S, hs], { dtype: 'float64', generator: g });
        const q = E.randn([1, 2, 1, hs], { dtype: 'float64', generator: g });
        const bias = E.tensor(Float64Array.from(slots.map((r) => (r >= 0 ? 0 : -Infinity))), [1, S]);
        // The last slot must be real for the query to sit at the end of both sequences.
        if (slots[S - 1] < 0) return;
        const withHoles = read(E.scaledDotProductAttention(q, k, v, { keyBias: bias }));
        const idx = E.tensor(Int32Array.from(realSlots), [realSlots.length]);
        const compact = read(E.scaledDotProductAttention(q, E.indexSelect(k, 2, idx), E.indexSelect(v, 2, idx)));
        withHoles.forEach((x, i) => expect(x).toBeCloseTo(compact[i], 10));
      } finally {
        E.setFusedKernels(true);
      }
    },
  );
});
