// The GPU buffer pool: storage buffers in size classes, handed out as tensor handles and taken back
// when the engine frees a handle. Not an allocator of sub-ranges: one tensor owns one whole buffer.
// Buffers are never destroyed on release (the GC plays no part); trim() destroys the pooled ones.

/** A tensor's storage on the GPU: the handle the engine holds (engine/backend.ts View.handle). */
export interface GpuHandle {
  readonly buffer: GPUBuffer;
  /** The size class in bytes (the buffer's size); the tensor uses a prefix of it. */
  readonly byteSize: number;
  /** Set once the engine has freed it; the buffer is then back in the pool or destroyed. */
  released: boolean;
}

export interface MemoryReport {
  /** Bytes of buffers held by live handles (size classes, so a little above what tensors use). */
  bytesLive: number;
  /** The largest bytesLive since the pool was made (or since resetPeak). */
  bytesPeak: number;
  /** Bytes of released buffers kept for reuse. */
  bytesPooled: number;
  buffersLive: number;
}

/** Every pooled buffer can be bound as storage and copied from and to (upload, read, poison fills). */
const USAGE = 0x80 /* STORAGE */ | 0x04 /* COPY_SRC */ | 0x08; /* COPY_DST */

/** The smallest buffer handed out: small tensors (scalars, sizes) share one class, and 0 bytes never binds. */
const MIN_BYTES = 256;
/** Up to here classes are powers of two; above, each octave is split in STEPS (waste below 1/STEPS). */
const POW2_LIMIT = 1 << 20;
const STEPS = 8;

/**
 * The size class for `bytes`: powers of two from MIN_BYTES to 1 MiB, then 8 classes per octave
 * (1, 1.125, 1.25, ... times a power of two), so a large buffer wastes at most 12.5%.
 */
export function sizeClass(bytes: number): number {
  if (bytes <= MIN_BYTES) return MIN_BYTES;
  const p = 2 ** Math.ceil(Math.log2(bytes));
  if (p <= POW2_LIMIT) return p;
  const step = p / 2 / STEPS;
  return Math.ceil(bytes / step) * step;
}

export class BufferPool {
  private readonly free = new Map<number, GPUBuffer[]>();
  private bytesLive = 0;
  private bytesPeak = 0;
  private bytesPooled = 0;
  private buffersLive = 0;

  /** The adapter's limits on one buffer, read once: the largest buffer acquire gives. */
  private readonly maxBufferSize: number;
  private readonly maxBindingSize: number;
  private readonly maxBytes: number;

  constructor(
    private readonly device: GPUDevice,
    /** Counts buffers created (pool misses); the backend passes the dispatcher's stats. */
    private readonly stats: { buffersCreated: number } = { buffersCreated: 0 },
  ) {
    this.maxBufferSize = device.limits.maxBufferSize;
    this.maxBindingSize = device.limits.maxStorageBufferBindingSize;
    this.maxBytes = Math.min(this.maxBufferSize, this.maxBindingSize);
  }

  /**
   * A buffer of at least `bytes` bytes: a pooled one of the same class if any, else a new one. A size the
   * adapter cannot give (its maxBufferSize or maxStorageBufferBindingSize) is refused here, before the
   * device sees it: a failed createBuffer would be an uncaptured error that every later op reports.
   */
  acquire(bytes: number, what = 'a buffer'): GpuHandle {
    const max = this.maxBytes;
    if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes > max)
      throw new Error(
        `webgpu: ${what} of ${bytes} bytes is more than this adapter allows (${max} bytes: maxBufferSize ` +
          `${this.maxBufferSize}, maxStorageBufferBindingSize ${this.maxBindingSize})`,
      );
    const byteSize = Math.min(sizeClass(bytes), max);
    const list = this.free.get(byteSize);
    let buffer = list?.pop();
    if (buffer) this.bytesPooled -= byteSize;
    else {
      buffer = this.device.createBuffer({ size: byteSize, usage: USAGE, label: `pool ${byteSize}` });
      this.stats.buffersCreated++;
    }
    this.bytesLive += byteSize;
    this.buffersLive++;
    if (this.bytesLive > this.bytesPeak) this.bytesPeak = this.bytesLive;
    return { buffer, byteSize, released: false };
  }

  /**
   * Takes a buffer back for reuse. Safe while commands that read it are still pending: every later
   * use is encoded after them in the same queue order (uploads flush first; see program.ts).
   */
  release(h: GpuHandle): void {
    if (h.released)
      throw new Error('webgpu: a buffer handle was freed twice (the engine frees each handle exactly once)');
    h.released = true;
    this.bytesLive -= h.byteSize;
    this.buffersLive--;
    let list = this.free.get(h.byteSize);
    if (!list) this.free.set(h.byteSize, (list = []));
    list.push(h.buffer);
    this.bytesPooled += h.byteSize;
  }

  report(): MemoryReport {
    return {
      bytesLive: this.bytesLive,
      bytesPeak: this.bytesPeak,
      bytesPooled: this.bytesPooled,
      buffersLive: this.buffersLive,
    };
  }

  resetPeak(): void {
    this.bytesPeak = this.bytesLive;
  }

  /** Destroys every pooled (released) buffer; live ones are untouched. */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.bytesPooled = 0;
  }
}
