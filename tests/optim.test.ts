// Optimizers and clipping against hand-written scalar references, the fused AdamW step against its
// composed form, and the seeded generator's reproducibility and moments.

import { fc, test as fcTest } from '@fast-check/vitest';
import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';

const read = (t: E.Tensor) => Array.from(t.dataSync());

/** One AdamW step on plain numbers, as in Loshchilov & Hutter (2019), Algorithm 2 with PyTorch's form. */
function adamwRef(
  p: number,
  g: number,
  m: number,
  v: number,
  t: number,
  lr: number,
  b1: number,
  b2: number,
  eps: number,
  wd: number,
) {
  m = b1 * m + (1 - b1) * g;
  v = b2 * v + (1 - b2) * g * g;
  p = p * (1 - lr * wd) - (lr * (m / (1 - b1 ** t))) / (Math.sqrt(v / (1 - b2 ** t)) + eps);
  return { p, m, v };
}

describe('AdamW', () => {
  fcTest.prop([fc.boolean(), fc.integer()])(
    'three steps match the scalar reference (fused and composed)',
    (fused, seed) => {
      E.setFusedKernels(fused);
      try {
        const g = new E.Generator(seed);
        const p0 = Array.from({ length: 5 }, () => g.normal());
        const grads = [0, 1, 2].map(() => Array.from({ length: 5 }, () => g.normal()));
        const w = E.tensor(Float64Array.from(p0), [5], { requiresGrad: true });
        const opt = new E.AdamW([w], { lr: 0.1, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.1 });
        const ref = p0.map((p) => ({ p, m: 0, v: 0 }));
        for (let t = 1; t <= 3; t++) {
          opt.zeroGrad();
          w.mul(E.tensor(Float64Array.from(grads[t - 1])))
            .sum()
            .backward();
          opt.step();
          ref.forEach((r, i) =>
            Object.assign(r, adamwRef(r.p, grads[t - 1][i], r.m, r.v, t, 0.1, 0.9, 0.99, 1e-8, 0.1)),
          );
        }
        read(w).forEach((v, i) => expect(v).toBeCloseTo(ref[i].p, 12));
      } finally {
        E.setFusedKernels(true);
      }
    },
  );

  test('parameters without a gradient are left alone; bad parameters are refused', () => {
    const a = E.tensor([1], { requiresGrad: true });
    const b = E.tensor([2], { requiresGrad: true });
    const opt = new E.AdamW([a, b], { lr: 0.5 });
    a.mul(2).sum().backward();
    opt.step();
    expect(read(b)).toEqual([2]);
    expect(read(a)[0]).not.toBe(1);
    expect(() => new E.AdamW([E.tensor([1])])).toThrow(/requiresGrad/);
    expect(() => new E.AdamW([])).toThrow(/no parameters/);
  });

  test('fits a linear regression', () => {
    const g = new E.Generator(3);
    const x = E.randn([64, 3], { generator: g });
    const wTrue = E.tensor([[1.5], [-2], [0.5]]);
    const y = x.matmul(wTrue);
    const w = E.zeros([3, 1], { requiresGrad: true });
    const opt = new E.AdamW([w], { lr: 0.05, weightDecay: 0 });
    for (let i = 0; i < 300; i++) {
      E.tidy(() => {
        opt.zeroGrad();
        x.matmul(w).sub(y).square().mean().backward();
        opt.step();
      });
    }
    read(w).forEach((v, i) => expect(v).toBeCloseTo([1.5, -2, 0.5][i], 2));
  });
});

describe('SGD and clipping', () => {
  test('SGD with momentum matches the PyTorch recurrence', () => {
    const w = E.tensor(Float64Array.from([1]), [1], { requiresGrad: true });
    const opt = new E.SGD([w], { lr: 0.1, momentum: 0.9 });
    let p = 1;
    let buf = 0;
    for (let i = 0; i < 3; i++) {
      opt.zeroGrad();
      w.square().sum().backward(); // grad 2p
      opt.step();
      buf = i === 0 ? 2 * p : 0.9 * buf + 2 * p;
      p -= 0.1 * buf;
    }
    expect(read(w)[0]).toBeCloseTo(p, 12);
  });

  fcTest.prop([fc.double({ min: 0.01, max: 10, noNaN: true }), fc.integer()])(
    'clipGradNorm returns the norm and caps it at maxNorm',
    (maxNorm, seed) => {
      const g = new E.Generator(seed);
      const a = E.randn([3, 2], { dtype: 'float64', generator: g, requiresGrad: true });
      const b = E.randn([4], { dtype: 'float64', generator: g, requiresGrad: true });
      a.mul(E.randn([3, 2], { dtype: 'float64', generator: g }))
        .sum()
        .add(b.square().sum())
        .backward();
      const norm = (ts: E.Tensor[]) => Math.sqrt(ts.flatMap(read).reduce((s, v) => s + v * v, 0));
      const before = norm([a.grad!, b.grad!]);
      const total = read(E.clipGradNorm([a, b], maxNorm))[0];
      expect(total).toBeCloseTo(before, 10);
      expect(norm([a.grad!, b.grad!])).toBeCloseTo(Math.min(before, maxNorm * (before / (before + 1e-6))), 8);
    },
  );
});

describe('Generator', () => {
  test('a seed reproduces the same draws; different seeds differ', () => {
    const a = E.randn([100], { generator: new E.Generator(42) });
    const b = E.randn([100], { generator: new E.Generator(42) });
    const c = E.randn([100], { generator: new E.Generator(43) });
    expect(read(a)).toEqual(read(b));
    expect(read(a)).not.toEqual(read(c));
    E.manualSeed(7);
    const d = read(E.rand([10]));
    E.manualSeed(7);
    expect(read(E.rand([10]))).toEqual(d);
  });

  test('moments: normal has mean ~0, var ~1; uniform in [0, 1); randint covers its range', () => {
    const g = new E.Generator(1);
    const n = 20000;
    const xs = Array.from({ length: n }, () => g.normal());
    const mean = xs.reduce((s, v) => s + v, 0) / n;
    const variance = xs.reduce((s, v) => s + (v - mean) ** 2, 0) / n;
    expect(Math.abs(mean)).toBeLessThan(0.05); // 5 standard errors is 0.035
    expect(Math.abs(variance - 1)).toBeLessThan(0.05);
    const us = Array.from({ length: n }, () => g.random());
    expect(Math.min(...us)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...us)).toBeLessThan(1);
    const ints = read(E.randint(3, 7, [1000], { generator: g }));
    expect(new Set(ints)).toEqual(new Set([3, 4, 5, 6]));
  });
});
