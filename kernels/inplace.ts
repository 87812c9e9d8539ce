// In-place writes on WebGPU (Backend.writeInto): src copied into a slot range of an existing buffer along
// one axis, as the strided-copy kernel (movement.ts) with the destination's strides and a base offset.
// Not a movement op: nothing is allocated, and the write lands in queue order before any later reader.

import type { View } from '../engine/index.js';
import { stridesOf } from '../engine/index.js';
import type { KernelContext } from './context.js';
import { stridedCopy } from './movement.js';
import type { GpuHandle } from './pool.js';
import { wgslType } from './program.js';

/** dst[..., start : start + n, ...] = src along `axis` (n = src.shape[axis]), in place. */
export function writeInto(backend: KernelContext, dst: View, src: View, axis: number, start: number): void {
  wgslType(dst.dtype, 'writeInto');
  const ds = stridesOf(dst.shape);
  stridedCopy(
    backend,
    src.handle as GpuHandle,
    dst.handle as GpuHandle,
    src.shape,
    stridesOf(src.shape),
    ds,
    0,
    start * ds[axis],
  );
}
