// In-place writes on the CPU backend (Backend.writeInto): src copied into a slot range of an existing
// array along one axis, one contiguous run per outer index; cat writes each of its inputs the same way.

import type { View } from '../backend.js';
import type { TypedArray } from '../dtype.js';
import { sizeOf } from '../shape.js';

/** dst[..., start : start + n, ...] = src along `axis` (n = src.shape[axis]), in place. */
export function writeInto(dst: View, src: View, axis: number, start: number): void {
  const D = dst.handle as TypedArray;
  const S = src.handle as TypedArray;
  const inner = sizeOf(src.shape.slice(axis + 1));
  const run = src.shape[axis] * inner; // one outer index's run of src, contiguous in both
  const dstRun = dst.shape[axis] * inner;
  if (run === 0) return;
  for (let so = 0, d = start * inner; so < S.length; so += run, d += dstRun) {
    if (run >= 32) D.set(S.subarray(so, so + run), d);
    else for (let j = 0; j < run; j++) D[d + j] = S[so + j]; // short runs (a keyBias column): set() costs more
  }
}
