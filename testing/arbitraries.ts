// fast-check arbitraries for shapes and tensor data, the ones the project's own property tests use:
// shapes first, data chained from them; grids of floats (not fc.double's denormal-heavy draws), values
// away from kinks, distinct values for ties, index tensors that repeat.

import fc from 'fast-check';
import * as E from '../engine/index.js';
import type { GradInput } from './gradcheck.js';

export const sizeOf = (shape: readonly number[]): number => shape.reduce((p, d) => p * d, 1);

/** Seeds the cotangent and direction; not shrunk (a different cotangent is not a simpler case). */
export const seedArb = fc.noShrink(fc.integer({ min: 0, max: 0x7fffffff }));

export const dim = (max = 5, min = 1): fc.Arbitrary<number> => fc.integer({ min, max });

export const shapeArb = (minRank = 0, maxRank = 3, maxDim = 5): fc.Arbitrary<number[]> =>
  fc.array(dim(maxDim), { minLength: minRank, maxLength: maxRank });

/** A shape that broadcasts to `out`: some leading dimensions dropped, some others set to 1. */
export const broadcastableTo = (out: readonly number[]): fc.Arbitrary<number[]> =>
  fc
    .tuple(
      fc.integer({ min: 0, max: out.length }),
      fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length }),
    )
    .map(([drop, ones]) => out.slice(drop).map((d, i) => (ones[i + drop] ? 1 : d)));

/** [out, a, b]: two shapes that broadcast together to out (equal, size-1 and missing dimensions). */
export const broadcastPair = (maxRank = 3, maxDim = 4): fc.Arbitrary<[number[], number[], number[]]> =>
  shapeArb(0, maxRank, maxDim).chain((out) => fc.tuple(fc.constant(out), broadcastableTo(out), broadcastableTo(out)));

export type Values = (n: number) => fc.Arbitrary<Float64Array>;

/**
 * Floats in [min, max] on a grid of 2e6 steps. Not fc.double: it draws uniformly over representable
 * doubles, so most of its values would be denormal-small and the checks would run near 0.
 */
export const floats =
  (min = -2, max = 2): Values =>
  (n) =>
    fc
      .array(fc.integer({ min: 0, max: 2_000_000 }), { minLength: n, maxLength: n })
      .map((ks) => Float64Array.from(ks, (k) => min + ((max - min) * k) / 2_000_000));

/** Floats with |x| in [gap, gap + span]: away from a kink or pole at 0. */
export const awayFromZero =
  (gap = 0.1, span = 2): Values =>
  (n) =>
    floats(-span, span)(n).map((a) => a.map((v) => (v >= 0 ? v + gap : v - gap)));

/** n distinct values k / 100 + offset: no ties anywhere (for max, min, maximum, minimum). */
export const distinct =
  (offset = 0): Values =>
  (n) =>
    fc
      .uniqueArray(fc.integer({ min: -300, max: 300 }), { minLength: n, maxLength: n })
      .map((ks) => Float64Array.from(ks, (k) => k / 100 + offset));

export const input = (shape: readonly number[], values: Values = floats()): fc.Arbitrary<GradInput> =>
  values(sizeOf(shape)).map((data) => ({ shape: [...shape], data }));

/** n int32 indices in [0, size); with n >= 2 the last repeats the first, so scatter-add must accumulate. */
export const indices = (n: number, size: number): fc.Arbitrary<Int32Array> =>
  fc.array(fc.integer({ min: 0, max: size - 1 }), { minLength: n, maxLength: n }).map((v) => {
    if (v.length >= 2) v[v.length - 1] = v[0];
    return Int32Array.from(v);
  });

export const int32 = (data: Int32Array, shape: readonly number[]): E.Tensor =>
  E.tensor(data, shape, { dtype: 'int32', device: 'cpu' });
