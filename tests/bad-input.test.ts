// Bad input refused, on the CPU: ops that name themselves when given what they cannot use, a second
// backward through a spent graph, a negative narrow, checkNumerics at the op that makes a NaN or an Inf;
// and the numerical cases a naive kernel gets wrong (huge tied logits, a NaN row through attention).

import { afterEach, describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';

afterEach(() => {
  E.setDebug({ checkNumerics: false });
  E.setFusedKernels(true);
});

describe('the tape', () => {
  test('a second backward through the same graph is refused, unless the first retained it', () => {
    const w = E.tensor([1, 2, 3], [3], { requiresGrad: true });
    const loss = w.mul(w).sum();
    loss.backward();
    expect(Array.from(w.grad!.dataSync())).toEqual([2, 4, 6]);
    expect(() => loss.backward()).toThrow(
      /backward: the graph through '\w+' was already differentiated; pass \{ retainGraph: true \}/,
    );
    expect(Array.from(w.grad!.dataSync())).toEqual([2, 4, 6]); // not doubled

    const v = E.tensor([1, 2, 3], [3], { requiresGrad: true });
    const l2 = v.mul(v).sum();
    l2.backward(undefined, { retainGraph: true });
    l2.backward();
    expect(Array.from(v.grad!.dataSync())).toEqual([4, 8, 12]); // asked for: accumulated twice
    // A new graph from the same leaves is fine.
    w.mul(2).sum().backward();
    expect(Array.from(w.grad!.dataSync())).toEqual([4, 6, 8]);
  });

  test('narrow refuses negative or out-of-range starts and lengths', () => {
    const x = E.zeros([2, 5]);
    expect(() => x.narrow(1, 0, -1)).toThrow(
      /narrow: start 0 and length -1 must be non-negative integers within dimension 1 \(size 5\) of \[2, 5\]/,
    );
    expect(() => x.narrow(1, 3, 3)).toThrow(/narrow: start 3 and length 3/);
    expect(() => x.narrow(1, -1, 1)).toThrow(/narrow: start -1/);
    expect(x.narrow(1, 1, 3).shape).toEqual([2, 3]);
    expect(x.narrow(1, 5, 0).shape).toEqual([2, 0]);
  });

  test('fused ops check dtypes with their names', () => {
    const x = E.zeros([2, 4]);
    expect(() => E.rmsNorm(x, E.ones([4], { dtype: 'float64' }))).toThrow(
      /rmsNorm: weight \[4\] float64 must be \[4\] float32/,
    );
    expect(() => E.targetLogProb(x, E.zeros([2]))).toThrow(/targetLogProb: targets must be int32, got float32/);
    const q = E.zeros([1, 2, 3, 4]);
    expect(() => E.scaledDotProductAttention(q, q, E.zeros([1, 2, 3, 4], { dtype: 'float64' }))).toThrow(
      /attention: q, k, v must share a dtype/,
    );
  });
});

describe('numerics', () => {
  for (const fused of [true, false]) {
    test(`softmax of huge tied values is uniform, not all ones (${fused ? 'fused kernel' : 'composed form'})`, () => {
      E.setFusedKernels(fused);
      for (const dtype of ['float32', 'float64'] as const) {
        const x = E.tensor(
          [
            [1e30, 1e30, 1e30, 1e30],
            [-1e30, -1e30, 5, 5],
          ],
          [2, 4],
          { dtype },
        );
        expect(Array.from(E.softmax(x).dataSync())).toEqual([0.25, 0.25, 0.25, 0.25, 0, 0, 0.5, 0.5]);
        const lp = Array.from(E.logSoftmax(x).dataSync());
        for (const i of [0, 1, 2, 3]) expect(lp[i]).toBeCloseTo(-Math.log(4), 6);
        const t = E.targetLogProb(x, E.tensor(Int32Array.from([2, 3]), [2]));
        expect(Array.from(t.dataSync()).map((v) => Math.round(v * 1e6) / 1e6)).toEqual([-1.386294, -0.693147]);
      }
    });

    test(`a NaN query row gives a NaN attention row, the others stay finite (${fused ? 'fused' : 'composed'})`, () => {
      E.setFusedKernels(fused);
      for (const T of [1, 6]) {
        const gen = new E.Generator(T);
        const q = E.randn([1, 2, T, 4], { generator: gen });
        const data = Float32Array.from(q.dataSync());
        data[4 * (T - 1)] = NaN; // the last query row of head 0
        const k = E.randn([1, 2, T + 2, 4], { generator: gen });
        const v = E.randn([1, 2, T + 2, 4], { generator: gen });
        const y = Array.from(E.scaledDotProductAttention(E.tensor(data, q.shape), k, v).dataSync());
        const row = (h: number, i: number) => y.slice((h * T + i) * 4, (h * T + i + 1) * 4);
        expect(row(0, T - 1).every(Number.isNaN)).toBe(true);
        for (let i = 0; i < T - 1; i++) expect(row(0, i).every(Number.isFinite)).toBe(true);
        for (let i = 0; i < T; i++) expect(row(1, i).every(Number.isFinite)).toBe(true);
      }
    });
  }

  test('checkNumerics stops at the op that makes a NaN or an Inf, naming it', () => {
    E.setDebug({ checkNumerics: true });
    const cases: [string, () => E.Tensor][] = [
      ['log', () => E.tensor([1, -1]).log()],
      ['div', () => E.div(E.tensor([1, 0]), E.tensor([1, 0]))],
      ['sqrt', () => E.tensor([4, -4]).sqrt()],
      ['exp', () => E.tensor([1, 100]).exp()],
      ['mul', () => E.mul(E.tensor([1, 1e30]), E.tensor([1, 1e30]))],
      ['rsqrt', () => E.tensor([1, 0]).rsqrt()],
    ];
    for (const [op, make] of cases)
      expect(make, op).toThrow(new RegExp(`checkNumerics: op '${op}' produced (NaN|Infinity) at flat index 1`));
    E.setDebug({ checkNumerics: false });
    expect(Number.isNaN(E.tensor([-1]).log().dataSync()[0])).toBe(true);
  });
});

describe('allocation', () => {
  test('an allocation the process cannot make is refused in one line, and the next op runs', () => {
    for (const shape of [[1e12], [1e5, 1e5]])
      expect(() => E.zeros(shape)).toThrow(/^cpu: cannot allocate \d+ float32 elements \(\d+ bytes\): /);
    expect(Array.from(E.add(E.ones([2]), E.ones([2])).dataSync())).toEqual([2, 2]);
  });
});
