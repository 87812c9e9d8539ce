// Index arithmetic for the CPU backend: the flat source offset of every element of a strided walk.
// permute, slice, expand, pad, cat and gather are one call to stridedOffsets; broadcasting binary ops and
// reductions walk stridedRows, which keeps the offset tables to one entry per row.

import type { Shape } from '../shape.js';

/**
 * offsets[i] = base + sum_k idx_k * strides[k], for the i-th row-major multi-index idx of `shape`.
 * The innermost dimension is a plain loop; outer dimensions advance an odometer.
 */
export function stridedOffsets(shape: Shape, strides: readonly number[], base = 0): Int32Array {
  let n = 1;
  for (const d of shape) n *= d;
  const out = new Int32Array(n);
  if (n === 0) return out;
  const rank = shape.length;
  if (rank === 0) {
    out[0] = base;
    return out;
  }
  const inner = shape[rank - 1];
  const innerStride = strides[rank - 1];
  const idx = new Array<number>(rank).fill(0);
  let off = base;
  for (let i = 0; i < n; i += inner) {
    for (let j = 0; j < inner; j++) out[i + j] = off + j * innerStride;
    // Advance the odometer over dimensions rank-2 .. 0.
    for (let k = rank - 2; k >= 0; k--) {
      idx[k]++;
      off += strides[k];
      if (idx[k] < shape[k]) break;
      off -= idx[k] * strides[k];
      idx[k] = 0;
    }
  }
  return out;
}

/**
 * A walk of `shape` by several operands at once (operand k steps by strides[k]), as rows: the offsets
 * where each operand's row starts, and how far it steps along the row. Dimensions of size 1 are dropped
 * and neighbours merged wherever every operand steps through them as one, so [B, T, C] + [C] is B*T rows
 * of C, and [B, T, C] * [B, T, 1] the same rows with the second operand's step 0.
 */
export interface Rows {
  /** Row length. */
  length: number;
  /** Per operand: its step along a row. */
  steps: number[];
  /** Per operand: where each row starts. */
  starts: Int32Array[];
}

export function stridedRows(shape: Shape, strides: readonly (readonly number[])[]): Rows {
  const dims: number[] = [];
  const st: number[][] = strides.map(() => []);
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] === 1) continue;
    const at = dims.length - 1;
    if (at >= 0 && strides.every((s, k) => st[k][at] === s[i] * shape[i])) {
      dims[at] *= shape[i];
      for (let k = 0; k < st.length; k++) st[k][at] = strides[k][i];
    } else {
      dims.push(shape[i]);
      for (let k = 0; k < st.length; k++) st[k].push(strides[k][i]);
    }
  }
  if (dims.length === 0) return { length: 1, steps: st.map(() => 0), starts: st.map(() => new Int32Array(1)) };
  const outer = dims.slice(0, -1);
  return {
    length: dims[dims.length - 1],
    steps: st.map((s) => s[s.length - 1]),
    starts: st.map((s) => stridedOffsets(outer, s.slice(0, -1))),
  };
}
