// The WebGPU backend: engine's Backend interface over pooled GPU buffers, each primitive forwarded to
// its kernel file. Not the device setup (device.ts) and not a kernel: the WGSL lives in one file per
// family (elementwise, reduce, movement, gather, matmul) and one file per fused kernel (`fused`).
// float64 is refused (WGSL has no f64); int32 maps to i32.

import type { Backend, BinaryOp, FusedKernels, ReduceOp, UnaryOp, View } from '../engine/index.js';
import { arrayFor, sizeOf, type DType, type Shape, type TypedArray } from '../engine/index.js';
import { adamw } from './adamw.js';
import * as attention from './attention/index.js';
import { DEFAULT_ATTENTION_OPTIONS, type AttentionOptions } from './attention/choose.js';
import type { KernelContext } from './context.js';
import * as elementwise from './elementwise.js';
import * as gather from './gather.js';
import { writeInto } from './inplace.js';
import * as logsoftmax from './logsoftmax.js';
import { MATMUL_KERNELS, matmulAny, type MatmulKernel } from './matmul-family.js';
import * as movement from './movement.js';
import * as norms from './norms.js';
import { BufferPool, sizeClass, type GpuHandle, type MemoryReport } from './pool.js';
import { Dispatcher, emptyStats, wgslType, type GpuStats, type Program } from './program.js';
import { reduce } from './reduce.js';
import * as rope from './rope.js';
import { DeviceStatus, finiteCheck, numericsMessage, STATUS_BYTES } from './status.js';
import * as targetlogprob from './targetlogprob.js';

export interface WebGPUBackendOptions {
  /** Submit every dispatch alone inside error scopes, so an error names its program (env WEBGPU_DEBUG=1). */
  debug: boolean;
  /** Fill every newly allocated output with NaN bits (0x7fc00000, for int32 the value 2143289344) so that
   * elements a kernel forgets to write show up in tests. */
  poisonAllocations: boolean;
  /** Dispatches per submit. */
  batchSize: number;
  /** Which attention kernels run (kernels/attention/choose.ts): by the adapter ('auto') or forced (tests). */
  attention: AttentionOptions;
  /** The matmul kernel family: 'auto' (chooseMatmulKernel in matmul-family.ts) or one forced (tests). */
  matmulKernel: MatmulKernel;
}

/** The 32-bit pattern poisoned outputs start with: a quiet NaN as float32, 2143289344 as int32. */
export const POISON_BITS = 0x7fc00000;

/** What initWebGPU() found: the adapter's identity, and the features and limits of the device. */
export interface AdapterSummary {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Dawn's backend (vulkan, metal, d3d12, ...), as requested. */
  backend: string;
  features: string[];
  limits: Record<string, number>;
}

export class WebGPUBackend implements Backend, KernelContext {
  readonly name = 'webgpu' as const;
  /** Fused kernels, one file each (engine/fused.ts composes any that is missing). */
  readonly fused: Partial<FusedKernels> = {
    logSoftmax: (x) => logsoftmax.logSoftmax(this, x),
    logSoftmaxBackward: (y, dy) => logsoftmax.logSoftmaxBackward(this, y, dy),
    targetLogProb: (logits, targets) => targetlogprob.targetLogProb(this, logits, targets),
    targetLogProbBackward: (logits, targets, dout) => targetlogprob.targetLogProbBackward(this, logits, targets, dout),
    attention: (q, k, v, scale, keyBias, kvLen) => attention.attention(this, q, k, v, scale, keyBias, kvLen),
    attentionBackward: (q, k, v, out, lse, dout, scale, keyBias) =>
      attention.attentionBackward(this, q, k, v, out, lse, dout, scale, keyBias),
    layerNorm: (x, weight, bias, eps) => norms.layerNorm(this, x, weight, bias, eps),
    layerNormBackward: (x, weight, mean, rstd, dy) => norms.layerNormBackward(this, x, weight, mean, rstd, dy),
    rmsNorm: (x, weight, eps) => norms.rmsNorm(this, x, weight, eps),
    rmsNormBackward: (x, weight, rstd, dy) => norms.rmsNormBackward(this, x, weight, rstd, dy),
    addRmsNorm: (x, r, weight, eps) => norms.addRmsNorm(this, x, r, weight, eps),
    ropeHeads: (q, k, v, cos, sin, nHead) => rope.ropeHeads(this, q, k, v, cos, sin, nHead),
    ropeHeadsBackward: (g, cos, sin) => rope.ropeHeadsBackward(this, g, cos, sin),
    adamw: (param, grad, m, v, hp) => adamw(this, param, grad, m, v, hp),
  };
  readonly pool: BufferPool;
  readonly dispatcher: Dispatcher;
  readonly options: WebGPUBackendOptions;
  /** Device features the kernels may use (a subset of shader-f16, subgroups, timestamp-query). */
  readonly features: ReadonlySet<string>;
  /** Rejects when the device is lost (or destroyed); reads race against it so they never hang. */
  private readonly lost: Promise<never>;
  /** Errors kernels find, read back with the next read (status.ts). */
  readonly status: DeviceStatus;
  private destroyed = false;
  /** Counts of dispatches, submits, bind groups, buffers and staging buffers created (tests, profiles). */
  readonly stats: GpuStats = emptyStats();
  /** Mappable buffers for reads, by size class, kept between reads (a decode step reads once). */
  private readonly staging = new Map<number, GPUBuffer[]>();

  constructor(
    readonly device: GPUDevice,
    readonly adapter: AdapterSummary,
    options: Partial<WebGPUBackendOptions> = {},
  ) {
    this.options = {
      debug: false,
      poisonAllocations: false,
      batchSize: 64,
      attention: { ...DEFAULT_ATTENTION_OPTIONS },
      matmulKernel: 'auto',
      ...options,
    };
    checkMatmulKernel(this.options.matmulKernel);
    this.features = new Set(device.features as unknown as Iterable<string>);
    this.pool = new BufferPool(device, this.stats);
    this.status = new DeviceStatus(device);
    this.dispatcher = new Dispatcher(device, this.options, this.stats);
    this.lost = device.lost.then((info) => {
      const e = new Error(
        this.destroyed ? 'webgpu: the device was destroyed' : `webgpu: device lost (${info.reason}): ${info.message}`,
      );
      this.dispatcher.fail(e);
      throw e;
    });
    this.lost.catch(() => {}); // observed by reads; never an unhandled rejection
    device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      this.dispatcher.fail(new Error(`webgpu: uncaptured ${ev.error.constructor.name}: ${ev.error.message}`));
    };
  }

  /** Changes runtime options (debug, poisoning, batch size, kernel choices); takes effect from the next op. */
  configure(options: Partial<WebGPUBackendOptions>): void {
    this.dispatcher.flush();
    if (options.matmulKernel !== undefined) checkMatmulKernel(options.matmulKernel);
    Object.assign(this.options, options);
  }

  // -------------------------------------------------------------------------------------------------
  // What kernel files use.

  /** An output buffer for `n` elements of dtype (pooled; poisoned when options.poisonAllocations). */
  alloc(n: number, dtype: DType, op: string): GpuHandle {
    wgslType(dtype, op);
    this.dispatcher.check();
    const h = this.pool.acquire(n * 4, `${op}: an output of ${n} ${dtype} elements`);
    if (this.options.poisonAllocations) elementwise.fillBits(this, h, n, POISON_BITS);
    return h;
  }

  /**
   * checkNumerics on this device: a kernel flags the output's first non-finite element, and the next read
   * throws naming `op` (a GPU cannot stop at the op itself; the CPU backend does).
   */
  checkFinite(op: string, x: View): void {
    const n = sizeOf(x.shape);
    if (x.dtype !== 'float32' || n === 0) return;
    const id = this.status.register(numericsMessage(op, x.shape, x.dtype));
    const { program, uniforms } = finiteCheck(n, id);
    this.dispatch(program, [x.handle as GpuHandle], [this.status.handle], uniforms);
  }

  /** Encodes one program run (see program.ts). */
  dispatch(program: Program, inputs: readonly GpuHandle[], outputs: readonly GpuHandle[], uniforms: Uint32Array): void {
    this.dispatcher.run(program, inputs, outputs, uniforms);
  }

  /** Submits everything encoded so far. */
  flush(): void {
    this.dispatcher.flush();
  }

  /**
   * GPU time of what `f` queues (compute passes, from timestamp queries; program.ts's Dispatcher says what
   * counts), in milliseconds, beside f's result; null where the device lacks 'timestamp-query'. Work queued
   * before the call is submitted first and not counted.
   */
  async gpuTime<T>(f: () => Promise<T>): Promise<{ result: T; gpuMs: number | null }> {
    if (!this.dispatcher.startTiming()) return { result: await f(), gpuMs: null };
    const result = await f().catch(async (e: unknown) => {
      await this.dispatcher.stopTiming();
      throw e;
    });
    return { result, gpuMs: await this.dispatcher.stopTiming() };
  }

  memory(): MemoryReport {
    return this.pool.report();
  }

  /** Destroys the pooled (free) buffers, after submitting pending work that may still use them. */
  trim(): void {
    this.dispatcher.flush();
    this.dispatcher.dropBindGroups();
    this.pool.trim();
    for (const list of this.staging.values()) for (const b of list) b.destroy();
    this.staging.clear();
  }

  /** Releases the device; every later op or read throws. */
  destroy(): void {
    if (this.destroyed) return;
    this.dispatcher.flush();
    this.destroyed = true;
    this.dispatcher.fail(new Error('webgpu: the device was destroyed'));
    this.device.destroy();
  }

  // -------------------------------------------------------------------------------------------------
  // Storage.

  upload(data: TypedArray): unknown {
    const dtype: DType = data instanceof Float32Array ? 'float32' : data instanceof Int32Array ? 'int32' : 'float64';
    wgslType(dtype, 'upload');
    this.dispatcher.check();
    const h = this.pool.acquire(data.byteLength, `upload: a tensor of ${data.length} ${dtype} elements`);
    // queue.writeBuffer runs before commands not yet submitted; a recycled buffer may still be read by
    // them, so submit those first.
    this.dispatcher.flush();
    if (data.byteLength > 0) this.device.queue.writeBuffer(h.buffer, 0, data);
    this.stats.uploads++;
    return h;
  }

  /**
   * Reads a tensor back. When kernels ran checks since the last read (targets in range, checkNumerics),
   * their status comes back with the data, and a failed check throws its error here, the first one.
   */
  async read(x: View): Promise<TypedArray> {
    wgslType(x.dtype, 'read');
    this.dispatcher.check();
    const n = sizeOf(x.shape);
    const checked = this.status.pending;
    if (n === 0 && !checked) return arrayFor(x.dtype, 0);
    if ((x.handle as GpuHandle).released)
      throw new Error('webgpu read: the buffer has been freed (a disposed tensor?)');
    const bytes = n * 4;
    const size = sizeClass(bytes + (checked ? STATUS_BYTES : 0));
    const staging = this.staging.get(size)?.pop() ?? this.createStaging(size);
    this.stats.reads++;
    let reusable = false;
    try {
      if (bytes > 0) this.dispatcher.copy((x.handle as GpuHandle).buffer, staging, bytes);
      if (checked) this.dispatcher.copy(this.status.handle.buffer, staging, STATUS_BYTES, bytes);
      this.dispatcher.flush();
      try {
        await Promise.race([staging.mapAsync(0x1 /* GPUMapMode.READ */), this.lost]);
      } catch (e) {
        await this.dispatcher.settle(); // a recorded error explains the failure better
        throw e;
      }
      await this.dispatcher.settle();
      const out = arrayFor(x.dtype, n);
      const range = staging.getMappedRange(0, bytes + (checked ? STATUS_BYTES : 0));
      out.set(x.dtype === 'int32' ? new Int32Array(range, 0, n) : new Float32Array(range, 0, n));
      const words = checked ? new Uint32Array(range.slice(bytes, bytes + STATUS_BYTES)) : null;
      staging.unmap();
      reusable = true;
      if (words) this.status.settle(words);
      return out;
    } finally {
      // Unmapped, it goes back for the next read; after a failure (mapping pending or lost) it is destroyed.
      if (reusable) {
        let list = this.staging.get(size);
        if (!list) this.staging.set(size, (list = []));
        list.push(staging);
      } else staging.destroy();
    }
  }

  private createStaging(size: number): GPUBuffer {
    this.stats.stagingCreated++;
    return this.device.createBuffer({
      size,
      usage: 0x01 /* MAP_READ */ | 0x08 /* COPY_DST */,
      label: `read staging ${size}`,
    });
  }

  free(handle: unknown, _dtype?: DType): void {
    this.pool.release(handle as GpuHandle);
  }

  fill(shape: Shape, dtype: DType, value: number): unknown {
    return elementwise.fill(this, shape, dtype, value);
  }

  // -------------------------------------------------------------------------------------------------
  // The primitives, one kernel file per family.

  unary(op: UnaryOp, x: View): unknown {
    return elementwise.unary(this, op, x);
  }
  binary(op: BinaryOp, a: View, b: View, outShape: Shape): unknown {
    return elementwise.binary(this, op, a, b, outShape);
  }
  where(cond: View, a: View, b: View, outShape: Shape): unknown {
    return elementwise.where(this, cond, a, b, outShape);
  }
  cast(x: View, dtype: DType): unknown {
    return elementwise.cast(this, x, dtype);
  }
  reduce(op: ReduceOp, x: View, axes: readonly number[]): unknown {
    return reduce(this, op, x, axes);
  }
  permute(x: View, perm: readonly number[]): unknown {
    return movement.permute(this, x, perm);
  }
  slice(x: View, begin: readonly number[], size: readonly number[]): unknown {
    return movement.slice(this, x, begin, size);
  }
  pad(x: View, before: readonly number[], after: readonly number[]): unknown {
    return movement.pad(this, x, before, after);
  }
  expand(x: View, shape: Shape): unknown {
    return movement.expand(this, x, shape);
  }
  cat(xs: readonly View[], axis: number): unknown {
    return movement.cat(this, xs, axis);
  }
  writeInto(dst: View, src: View, axis: number, start: number): void {
    writeInto(this, dst, src, axis, start);
  }
  gather(x: View, index: View, axis: number, mode: 'select' | 'along'): unknown {
    return gather.gather(this, x, index, axis, mode);
  }
  scatterAdd(src: View, index: View, axis: number, mode: 'select' | 'along', outShape: Shape): unknown {
    return gather.scatterAdd(this, src, index, axis, mode, outShape);
  }
  matmul(a: View, b: View, transA: boolean, transB: boolean, outShape: Shape): unknown {
    return matmulAny(this, a, b, transA, transB, outShape);
  }
}

function checkMatmulKernel(k: string): void {
  if (!(MATMUL_KERNELS as readonly string[]).includes(k))
    throw new Error(`webgpu: option matmulKernel is '${k}'; expected one of ${MATMUL_KERNELS.join(', ')}`);
}
