// The narrow view of the backend that kernel files get: allocate outputs, dispatch programs, free and fill
// buffers, and what the device and options allow. WebGPUBackend implements it; kernels need nothing else.

import type { DType, Shape } from '../engine/index.js';
import type { AdapterSummary, WebGPUBackendOptions } from './backend.js';
import type { GpuHandle } from './pool.js';
import type { DeviceStatus } from './status.js';
import type { Program } from './program.js';

export interface KernelContext {
  /** The adapter's identity (architecture 'software' on lavapipe), features and limits. */
  readonly adapter: AdapterSummary;
  /** Device features the kernels may use (a subset of shader-f16, subgroups, timestamp-query). */
  readonly features: ReadonlySet<string>;
  /** The device, read for its adapter info (subgroup sizes, features.ts); kernels create nothing on it. */
  readonly device: GPUDevice;
  /** Errors kernels find on the device (an index out of range), read back with the next read (status.ts). */
  readonly status: DeviceStatus;
  /** The backend's options (kernel choices such as `attention`). */
  readonly options: Readonly<WebGPUBackendOptions>;
  /** An output buffer for `n` elements of dtype (pooled; poisoned when options.poisonAllocations). */
  alloc(n: number, dtype: DType, op: string): GpuHandle;
  /** Encodes one program run (program.ts). */
  dispatch(program: Program, inputs: readonly GpuHandle[], outputs: readonly GpuHandle[], uniforms: Uint32Array): void;
  /** Returns a buffer (an output or a temporary) to the pool. */
  free(handle: unknown, dtype?: DType): void;
  /** A new buffer of `shape` filled with `value`. */
  fill(shape: Shape, dtype: DType, value: number): unknown;
}
