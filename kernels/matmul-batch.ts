// The sizes and the batch walk every matmul kernel shares (matmulDims, matmulBatch): broadcast batch dimensions
// as element offsets into A and B, merged where contiguous and padded to a fixed rank so that one pipeline serves
// every batch rank up to it. Not a kernel; matmul.ts, matmul-tiled.ts and matmul-sgmatrix.ts put these in their
// uniform blocks.

import type { View } from '../engine/index.js';
import { broadcastStrides, sizeOf, type Shape } from '../engine/index.js';
import { coalesce } from './program.js';

/** A matmul's sizes: op(A) [M, K] times op(B) [K, N], n output elements over batch dimensions `batch`. */
export function matmulDims(a: View, transA: boolean, outShape: Shape) {
  const r = outShape.length;
  const batch = outShape.slice(0, -2);
  return {
    M: outShape[r - 2],
    N: outShape[r - 1],
    K: transA ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1],
    n: sizeOf(outShape),
    batch,
    nBatch: sizeOf(batch),
  };
}

/** 0..n-1, for unrolling loops in the kernels' WGSL. */
export const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/** Batch ranks (after merging) up to this share a pipeline. */
export const BATCH_RANK = 3;

export interface MatmulBatch {
  /** The padded rank (BATCH_RANK, or more for a batch that does not merge that far). */
  br: number;
  bshape: number[];
  /** Element offsets of one step along each batch dimension in A and in B (0: broadcast). */
  abatch: number[];
  bbatch: number[];
}

export function matmulBatch(a: View, b: View, batch: Shape, M: number, N: number, K: number): MatmulBatch {
  const aBatch = broadcastStrides(a.shape.slice(0, -2), batch).map((s) => s * M * K);
  const bBatch = broadcastStrides(b.shape.slice(0, -2), batch).map((s) => s * K * N);
  const walk = batch.length > 0 ? coalesce(batch, [aBatch, bBatch]) : { shape: [1], strides: [[0], [0]] };
  const br = Math.max(BATCH_RANK, walk.shape.length);
  const pad = br - walk.shape.length;
  const bshape = [...new Array<number>(pad).fill(1), ...walk.shape];
  const [abatch, bbatch] = walk.strides.map((s) => [...new Array<number>(pad).fill(0), ...s]);
  return { br, bshape, abatch, bbatch };
}
