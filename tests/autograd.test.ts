// The tape itself: accumulation, shared subexpressions, noGrad, detach, requiresGrad rules, the gradient
// shape/dtype check, deep graphs, and deterministic memory release with tidy / keep / dispose.

import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';

const read = (t: E.Tensor) => Array.from(t.dataSync());

describe('tape', () => {
  test('a tensor used twice accumulates both paths (d(x*x)/dx = 2x)', () => {
    const x = E.tensor([3, -2], { requiresGrad: true });
    x.mul(x).sum().backward();
    expect(read(x.grad!)).toEqual([6, -4]);
  });

  test('calling backward twice accumulates into .grad; zeroGrad clears', () => {
    const x = E.tensor([1, 2], { requiresGrad: true });
    const opt = new E.SGD([x], { lr: 0 });
    x.mul(3).sum().backward();
    x.mul(3).sum().backward();
    expect(read(x.grad!)).toEqual([6, 6]);
    opt.zeroGrad();
    expect(x.grad).toBeNull();
  });

  test('diamond graph: topological order visits each node once, after all its consumers', () => {
    const x = E.tensor([2], { dtype: 'float64', requiresGrad: true });
    const a = x.exp();
    const b = a.mul(a).add(a.log()); // a^2 + log(a) = e^{2x} + x
    b.sum().backward();
    expect(read(x.grad!)[0]).toBeCloseTo(2 * Math.exp(4) + 1, 9);
  });

  test('noGrad records nothing; detach cuts the tape but shares storage', () => {
    const x = E.tensor([1, 2], { requiresGrad: true });
    const y = E.noGrad(() => x.mul(2));
    expect(y.requiresGrad).toBe(false);
    expect(y.gradFn).toBeNull();
    const d = x.detach();
    expect(d.requiresGrad).toBe(false);
    expect(read(d)).toEqual([1, 2]);
    expect(() => x.mul(2).requiresGrad_()).toThrow(/leaf/);
    expect(() => E.tensor([1], { dtype: 'int32' }).requiresGrad_()).toThrow(/float/);
  });

  test('backward needs a one-element root or an explicit seed of the right shape', () => {
    const x = E.tensor([1, 2], { requiresGrad: true });
    expect(() => x.mul(2).backward()).toThrow(/one-element/);
    expect(() => x.mul(2).backward(E.ones([3]))).toThrow(/\[3\].*\[2\]/);
    x.mul(2).backward(E.tensor([1, 10]));
    expect(read(x.grad!)).toEqual([2, 20]);
    expect(() => E.tensor([1]).backward()).toThrow(/does not require grad/);
  });

  test('the tape rejects a gradient whose shape does not match its input, naming the op and both shapes', () => {
    const x = E.tensor([1, 2, 3], { requiresGrad: true });
    const y = E.record(E.tensor([0]), 'brokenOp', [x], () => [E.ones([2])]);
    expect(() => y.sum().backward()).toThrow(/brokenOp.*\[2\].*\[3\]/);
  });

  test('a 5000-op chain backpropagates without overflowing the stack', () => {
    const x = E.tensor([1], { dtype: 'float64', requiresGrad: true });
    let y = x;
    for (let i = 0; i < 5000; i++) y = y.mul(1.0001);
    y.sum().backward();
    expect(read(x.grad!)[0]).toBeCloseTo(1.0001 ** 5000, 6);
  });

  test('gradients do not flow into int32 indices', () => {
    const w = E.tensor(
      [
        [1, 2],
        [3, 4],
        [5, 6],
      ],
      { requiresGrad: true },
    );
    const ids = E.tensor([2, 0, 2], { dtype: 'int32' });
    E.embedding(ids, w).sum().backward();
    expect(read(w.grad!)).toEqual([1, 1, 0, 0, 2, 2]);
  });
});

describe('memory', () => {
  test('tidy disposes intermediates and keeps what it returns', () => {
    const before = E.memory().liveTensors;
    const x = E.tensor([1, 2, 3]);
    const kept: E.Tensor[] = [];
    const [y, obj] = E.tidy(() => {
      const a = x.mul(2).add(1);
      kept.push(E.keep(a.mul(1)));
      return [a.exp(), { z: a.neg() }];
    });
    expect(read(y).length).toBe(3);
    expect(obj.z.isDisposed).toBe(false);
    expect(kept[0].isDisposed).toBe(false);
    expect(E.memory().liveTensors - before).toBe(4); // x, y, z, kept
    E.dispose([x, y, obj, kept]);
    expect(E.memory().liveTensors).toBe(before);
  });

  test('a training loop inside tidy keeps the number of live tensors flat', () => {
    const g = new E.Generator(1);
    const w = E.randn([4, 3], { generator: g, requiresGrad: true });
    const x = E.randn([8, 4], { generator: g });
    const t = E.tensor(Int32Array.from([0, 1, 2, 0, 1, 2, 0, 1]), [8]);
    const opt = new E.AdamW([w], { lr: 0.01 });
    const counts: number[] = [];
    for (let step = 0; step < 5; step++) {
      E.tidy(() => {
        opt.zeroGrad();
        E.crossEntropy(x.matmul(w), t).backward();
        E.clipGradNorm([w], 1);
        opt.step();
      });
      counts.push(E.memory().liveTensors);
    }
    expect(new Set(counts.slice(1)).size).toBe(1);
  });

  test('reshape shares storage: disposing the view leaves the base readable, and vice versa', () => {
    const x = E.tensor([1, 2, 3, 4]);
    const v = x.reshape([2, 2]);
    v.dispose();
    expect(read(x)).toEqual([1, 2, 3, 4]);
    const v2 = x.reshape([4, 1]);
    x.dispose();
    expect(read(v2)).toEqual([1, 2, 3, 4]);
  });

  test('using a disposed tensor says so; backward after its scope ended says which op', () => {
    const x = E.tensor([1, 2]);
    x.dispose();
    expect(() => x.add(1)).toThrow(/disposed/);
    const w = E.tensor([1, 2], { requiresGrad: true });
    const loss = E.tidy(() => w.exp().mul(w.exp()).sum());
    expect(() => loss.backward()).toThrow(/backward of 'mul'.*disposed/);
  });

  test('tidy rejects an async function', () => {
    expect(() => E.tidy((async () => 1) as unknown as () => number)).toThrow(/Promise/);
  });
});

describe('numerics debug switch', () => {
  test('checkNumerics names the op that produced NaN or Inf', () => {
    E.setDebug({ checkNumerics: true });
    try {
      expect(() => E.tensor([-1, 1]).log()).toThrow(/op 'log' produced NaN at flat index 0/);
      expect(() => E.tensor([0]).reciprocal()).toThrow(/reciprocal.*Infinity/);
    } finally {
      E.setDebug({ checkNumerics: false });
    }
    expect(Number.isNaN(read(E.tensor([-1]).log())[0])).toBe(true);
  });
});
