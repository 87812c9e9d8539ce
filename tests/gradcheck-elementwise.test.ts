// Gradient checks of the elementwise ops (unary, broadcasting binary, where) in float64 with random
// cotangents. Not a check of forward values against a reference; only backward against finite differences.

import { describe, expect, test } from 'vitest';
import { fc, test as fcTest } from '@fast-check/vitest';
import * as E from '../engine/index.js';
import {
  awayFromZero,
  broadcastableTo,
  broadcastPair,
  directionalCheck,
  distinct,
  floats,
  gradcheck,
  input,
  int32,
  seedArb,
  shapeArb,
  sizeOf,
  type Values,
} from '../testing/index.js';

const UNARY: [string, (x: E.Tensor) => E.Tensor, Values][] = [
  ['neg', E.neg, floats()],
  ['exp', E.exp, floats()],
  ['log', E.log, floats(0.2, 3)],
  ['sqrt', E.sqrt, floats(0.2, 3)],
  ['rsqrt', E.rsqrt, floats(0.2, 3)],
  ['tanh', E.tanh, floats(-3, 3)],
  ['sigmoid', E.sigmoid, floats(-4, 4)],
  ['relu', E.relu, awayFromZero()],
  ['gelu', E.gelu, floats(-4, 4)],
  ['silu', E.silu, floats(-4, 4)],
  ['abs', E.abs, awayFromZero()],
  ['square', E.square, floats()],
  ['reciprocal', E.reciprocal, awayFromZero(0.3)],
];

describe('gradcheck: unary', () => {
  for (const [name, f, values] of UNARY) {
    fcTest.prop([shapeArb(0, 3).chain((s) => input(s, values)), seedArb])(name, (x, seed) => {
      gradcheck(f, [x], { name, seed });
    });
  }
});

/** Two broadcasting inputs, each with its own value range. */
const pair = (va: Values, vb: Values = va) =>
  broadcastPair().chain(([, sa, sb]) => fc.tuple(input(sa, va), input(sb, vb)));

const BINARY: [string, (a: E.Tensor, b: E.Tensor) => E.Tensor, Values, Values][] = [
  ['add', E.add, floats(), floats()],
  ['sub', E.sub, floats(), floats()],
  ['mul', E.mul, floats(), floats()],
  ['div', E.div, floats(), awayFromZero(0.5)],
  ['pow', E.pow, floats(0.3, 2), floats(-2, 2)], // positive base: the exponent's gradient needs log(a)
  // a = k/100 + 0.005 and b = k'/100 never tie, however they broadcast.
  ['maximum', E.maximum, distinct(0.005), distinct()],
  ['minimum', E.minimum, distinct(0.005), distinct()],
];

describe('gradcheck: binary with broadcasting', () => {
  for (const [name, f, va, vb] of BINARY) {
    fcTest.prop([pair(va, vb), seedArb])(name, ([a, b], seed) => {
      gradcheck(f, [a, b], { name, seed });
    });
  }

  // A number operand (|k| in [0.5, 2]) is lifted to a 0-d constant on either side; only the tensor gets a gradient.
  const WITH_NUMBER: [string, (x: E.Tensor, k: number) => E.Tensor][] = [
    ['x + k', (x, k) => E.add(x, k)],
    ['k - x', (x, k) => E.sub(k, x)],
    ['x - k', (x, k) => E.sub(x, k)],
    ['k * x', (x, k) => E.mul(k, x)],
    ['k / x', (x, k) => E.div(k, x)],
    ['x / k', (x, k) => E.div(x, k)],
    ['x ^ k', (x, k) => E.pow(x, k)],
    ['|k| ^ x', (x, k) => E.pow(Math.abs(k) + 0.5, x)],
    ['maximum(x, k)', (x, k) => E.maximum(x, k + 0.005)],
  ];
  fcTest.prop([
    shapeArb(0, 3).chain((s) => input(s, floats(0.3, 2))),
    fc.tuple(fc.boolean(), fc.integer({ min: 5, max: 20 })).map(([neg, k]) => (neg ? -k : k) / 10),
    fc.constantFrom(...WITH_NUMBER),
    seedArb,
  ])('binary ops with a number operand', (x, k, [name, f], seed) => {
    gradcheck((t) => f(t, k), [x], { name, seed });
  });
});

describe('gradcheck: where', () => {
  // cond, a and b all broadcast to one shape; cond is int32 or float; b may be a number.
  const arb = shapeArb(0, 3, 4).chain((out) =>
    fc
      .record({
        condShape: broadcastableTo(out),
        a: broadcastableTo(out).chain((s) => input(s)),
        b: broadcastableTo(out).chain((s) => input(s)),
        bIsNumber: fc.boolean(),
        floatCond: fc.boolean(),
      })
      .chain((r) =>
        fc.record({
          r: fc.constant(r),
          cond: fc.array(fc.boolean(), { minLength: sizeOf(r.condShape), maxLength: sizeOf(r.condShape) }),
        }),
      ),
  );
  fcTest.prop([arb, seedArb])('where', ({ r, cond }, seed) => {
    const makeCond = () =>
      r.floatCond
        ? E.tensor(
            Float64Array.from(cond, (c) => (c ? 0.5 : 0)),
            r.condShape,
            { dtype: 'float64' },
          )
        : int32(Int32Array.from(cond, Number), r.condShape);
    if (r.bIsNumber) gradcheck((a) => E.where(makeCond(), a, 1.5), [r.a], { name: 'where(cond, a, number)', seed });
    else gradcheck((a, b) => E.where(makeCond(), a, b), [r.a, r.b], { name: 'where', seed });
  });
});

describe('gradcheck: an input used more than once', () => {
  // The tape must add the gradients of every use of a leaf (and of a shared intermediate).
  const SHARED: [string, (x: E.Tensor) => E.Tensor][] = [
    ['x * x', (x) => E.mul(x, x)],
    ['x / (x^2 + 1)', (x) => E.div(x, E.add(E.square(x), 1))],
    ['x @ x^T', (x) => E.matmulT(x, x, false, true)],
    ['cat([x, x, x], -1)', (x) => E.cat([x, x, x], -1)],
    [
      'tanh(x) * sigmoid(tanh(x)) + exp(x).sum(-1, keepdim)',
      (x) => {
        const t = E.tanh(x);
        return E.add(E.mul(t, E.sigmoid(t)), E.sum(E.exp(x), -1, true));
      },
    ],
  ];
  fcTest.prop([shapeArb(2, 3, 4).chain((s) => input(s)), fc.constantFrom(...SHARED), seedArb])(
    'shared inputs accumulate',
    (x, [name, f], seed) => {
      gradcheck(f, [x], { name: `${name} with x [${x.shape}]`, seed });
    },
  );
});

describe('gradcheck: the oracle itself', () => {
  // A "transpose" whose backward forgets to transpose: with an all-ones cotangent its gradient would be
  // all ones either way; a random cotangent exposes it, and the message names the op, input and element.
  const badTranspose = (x: E.Tensor) =>
    E.record(
      E.noGrad(() => E.transpose(x, 0, 1)),
      'badTranspose',
      [x],
      (g) => [g],
    );
  const square = { shape: [3, 3], data: Float64Array.from({ length: 9 }, (_, i) => i / 4 - 1) };

  test('gradcheck catches a transposition bug and names input and element', () => {
    expect(() => gradcheck(badTranspose, [square], { name: 'badTranspose', seed: 7 })).toThrow(
      new RegExp(
        String.raw`gradcheck badTranspose: \d+ gradient element\(s\) differ[\s\S]*` +
          String.raw`input 0 \[3, 3\] element \d+ \[\d, \d\].*analytic .* vs numeric`,
      ),
    );
  });

  test('an all-ones cotangent would have hidden it', () => {
    const ones = E.tidy(() => {
      const x = E.tensor(Float64Array.from(square.data), square.shape, { dtype: 'float64', requiresGrad: true });
      E.sum(badTranspose(x)).backward();
      const g = Array.from(x.grad!.dataSync());
      x.grad!.dispose();
      return g;
    });
    expect(ones).toEqual(new Array(9).fill(1));
  });

  test('directionalCheck catches it too and names the input', () => {
    expect(() => directionalCheck(badTranspose, [square], { name: 'badTranspose', seed: 7 })).toThrow(
      /directionalCheck badTranspose[\s\S]*input 0 \[3, 3\].*<-- differs/,
    );
  });
});
