// Which matmul kernel family runs a matmul: a documented function of the adapter, the shape and the
// backend option `matmulKernel`, and the entry the backend calls. Not a kernel: the families live in
// matmul.ts (register-blocked, for lavapipe), matmul-tiled.ts (workgroup-memory tiles, f32 and f16) and
// matmul-sgmatrix.ts (subgroup matrices).

import type { View } from '../engine/index.js';
import type { Shape } from '../engine/index.js';
import type { KernelContext } from './context.js';
import { matmul } from './matmul.js';
import { matmulDims } from './matmul-batch.js';
import { canUseSubgroupMatrix, matmulSubgroupMatrix } from './matmul-sgmatrix.js';
import { canUseTiled, matmulTiled } from './matmul-tiled.js';
import type { GpuHandle } from './pool.js';

/**
 * 'auto': choose by adapter and shape (chooseMatmulKernel); 'blocked': matmul.ts; 'tiled': the f32
 * workgroup-memory kernel; 'f16': the same with f16 staging (rounds float32 inputs to f16); 'subgroup-matrix':
 * subgroup matrices (f16 inputs, f32 sums). int32 matmuls under 'f16' or 'subgroup-matrix' take 'tiled',
 * since neither has an integer form.
 */
export type MatmulKernel = 'auto' | 'blocked' | 'tiled' | 'f16' | 'subgroup-matrix';
export const MATMUL_KERNELS: readonly MatmulKernel[] = ['auto', 'blocked', 'tiled', 'f16', 'subgroup-matrix'];

/** Below this many rows (or columns), the blocked kernel's skinny layout and split-K win over 64-row tiles. */
const TILED_MIN_SIDE = 32;

/**
 * The family 'auto' picks: on a software adapter (lavapipe: workgroup memory costs what a storage load
 * does there, matmul.ts measured 10x faster) always 'blocked'; on a hardware adapter 'tiled' wherever the
 * device allows 256-invocation workgroups with the tiles' workgroup memory and M and N are both at least
 * TILED_MIN_SIDE, else 'blocked'. Never 'f16' or 'subgroup-matrix': both round float32 inputs to f16, which
 * the engine's float32 contract does not allow unasked.
 */
export function chooseMatmulKernel(
  backend: KernelContext,
  M: number,
  N: number,
  _K: number,
  _batch: number,
): Exclude<MatmulKernel, 'auto'> {
  if (backend.adapter.architecture === 'software') return 'blocked';
  if (!canUseTiled(backend)) return 'blocked';
  return M >= TILED_MIN_SIDE && N >= TILED_MIN_SIDE ? 'tiled' : 'blocked';
}

/** The backend's matmul: the family forced by options.matmulKernel, or the one chooseMatmulKernel picks. */
export function matmulAny(
  backend: KernelContext,
  a: View,
  b: View,
  transA: boolean,
  transB: boolean,
  outShape: Shape,
): GpuHandle {
  const { M, N, K, nBatch } = matmulDims(a, transA, outShape);
  const forced = backend.options.matmulKernel;
  let family = forced === 'auto' ? chooseMatmulKernel(backend, M, N, K, nBatch) : forced;
  if ((family === 'f16' || family === 'subgroup-matrix') && a.dtype === 'int32') family = 'tiled';
  switch (family) {
    case 'blocked':
      return matmul(backend, a, b, transA, transB, outShape);
    case 'tiled':
      return matmulTiled(backend, a, b, transA, transB, outShape);
    case 'f16':
      return matmulTiled(backend, a, b, transA, transB, outShape, { f16: true });
    case 'subgroup-matrix':
      if (!canUseSubgroupMatrix(backend))
        throw new Error(
          "matmul: matmulKernel 'subgroup-matrix' needs the adapter feature " +
            "'chromium-experimental-subgroup-matrix' with an f16 x f16 -> f32 configuration, which this device lacks",
        );
      return matmulSubgroupMatrix(backend, a, b, transA, transB, outShape);
  }
}
