// The kernel pattern: a program is a small object (name, WGSL source, workgroup size, dispatch, cache key);
// the Dispatcher caches one pipeline per cache key and encodes runs into batched command buffers.
// Not a kernel: kernels live one family per file (elementwise.ts, reduce.ts, ...), and follow the recipe below.
//
// Recipe for a new kernel file (see elementwise.ts for the worked example):
//   1. Decide the shape class: what the WGSL depends on (op, dtypes, rank, flags). That is the cache key;
//      everything else (sizes, strides, offsets) goes in the uniform block, so one pipeline serves every
//      shape of the class. Coalesce dimensions first (coalesce() below) so fewer ranks occur.
//   2. Declare the uniform block with `new Uniforms([...fields])`; the WGSL reads fields through the
//      accessors it generates (u_n(), u_shape(i), ...). Declare storage bindings with declareBindings():
//      binding 0 is the uniform block, then the inputs (read-only), then the outputs (read-write).
//   3. Build the Program: `wgsl` is a function, called only when the cache key misses; dispatch comes from
//      grid1d() (it folds more than 65535 workgroups into y; the WGSL gets its flat index from flatId()).
//   4. Outputs come from backend.alloc() (pooled; poisoned with NaN in tests), then backend.dispatch(program,
//      inputs, outputs, uniforms.pack({...})). Never read back inside an op: the engine is lazy to read.

import type { DType } from '../engine/index.js';
import type { GpuHandle } from './pool.js';

// ---------------------------------------------------------------------------------------------------
// Programs.

export interface Program {
  /** For messages and profiles: the kernel family and op, e.g. 'binary:add'. */
  readonly name: string;
  /** Everything the WGSL depends on; pipelines are cached by it. Two programs with one key must share WGSL. */
  readonly cacheKey: string;
  /** The WGSL source (entry point `main`); called only when cacheKey misses the pipeline cache. */
  readonly wgsl: () => string;
  readonly workgroupSize: readonly [number, number, number];
  /** Workgroups in x, y, z. */
  readonly dispatch: readonly [number, number, number];
}

/** Workgroups per dimension (WebGPU's default maxComputeWorkgroupsPerDimension). */
export const MAX_GROUPS_PER_DIM = 65535;

/**
 * Dispatch size for `n` threads in workgroups of `wg` threads (or `n` workgroups when wg is 1, for
 * one-workgroup-per-row kernels). Up to 65535 workgroups run in x; more fold into y with x fixed at 65535,
 * so the WGSL's flat index (flatId / flatGroup) needs no uniform. The fold overshoots: bounds-check it.
 */
export function grid1d(n: number, wg = 1): [number, number, number] {
  const groups = Math.max(1, Math.ceil(n / wg));
  if (groups <= MAX_GROUPS_PER_DIM) return [groups, 1, 1];
  const y = Math.ceil(groups / MAX_GROUPS_PER_DIM);
  if (y > MAX_GROUPS_PER_DIM)
    throw new Error(`webgpu: ${n} threads need ${groups} workgroups, more than ${MAX_GROUPS_PER_DIM}^2`);
  return [MAX_GROUPS_PER_DIM, y, 1];
}

/**
 * The entry point's builtins, for kernels dispatched with grid1d(). (local_invocation_index and
 * num_workgroups cost lavapipe about twice the time of a trivial kernel; these do not.)
 */
export const FLAT_BUILTINS =
  '@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>, ' +
  '@builtin(local_invocation_id) lid3: vec3<u32>';

/** WGSL expression: the flat workgroup index (a row, for one-workgroup-per-row kernels). */
export const flatGroup = (): string => `(wid.x + wid.y * ${MAX_GROUPS_PER_DIM}u)`;

/** WGSL expression: the flat thread index for a 1-D workgroup of `wg` threads. */
export const flatId = (wg: number): string => `(gid.x + gid.y * ${MAX_GROUPS_PER_DIM * wg}u)`;

/** WGSL expression: the thread's index in its (1-D) workgroup. */
export const localId = (): string => 'lid3.x';

// ---------------------------------------------------------------------------------------------------
// WGSL helpers shared by kernel files.

/** The WGSL element type of a dtype. float64 is refused with an error that names the op. */
export function wgslType(dtype: DType, op: string): 'f32' | 'i32' {
  if (dtype === 'float32') return 'f32';
  if (dtype === 'int32') return 'i32';
  throw new Error(`webgpu: float64 is not supported (WGSL has no f64); use float32 (op '${op}')`);
}

/** A JS number as a WGSL f32 literal (always with a decimal point or exponent). */
export function f32Lit(x: number): string {
  if (!Number.isFinite(x)) throw new Error(`f32Lit: ${x} has no WGSL literal; use f32_bits()`);
  const s = String(Math.fround(x));
  return /[.e]/.test(s) ? s : `${s}.0`;
}

/**
 * Functions any kernel may use. f32_bits() makes Inf and NaN at run time (a constant expression that
 * evaluates to Inf or NaN is a shader-creation error). is_nan / is_inf test the bits: WGSL comparisons
 * with NaN are not reliable (on lavapipe `NaN != NaN` is false), and max/min ignore NaN.
 */
export const WGSL_LIB = /* wgsl */ `
fn f32_bits(b: u32) -> f32 { return bitcast<f32>(b); }
fn is_nan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
fn is_inf(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u; }
fn nan_f32() -> f32 { return f32_bits(0x7fc00000u); }
fn inf_f32() -> f32 { return f32_bits(0x7f800000u); }
// max and min that propagate NaN, as Math.max and Math.min do.
fn max_nan(a: f32, b: f32) -> f32 { return select(max(a, b), a + b, is_nan(a) || is_nan(b)); }
fn min_nan(a: f32, b: f32) -> f32 { return select(min(a, b), a + b, is_nan(a) || is_nan(b)); }
`;

/** Storage binding declarations: inputs read-only from binding 1, then outputs read-write. */
export function declareBindings(
  inputs: readonly (readonly [string, string])[],
  outputs: readonly (readonly [string, string])[],
): string {
  const lines: string[] = [];
  let b = 1;
  for (const [name, type] of inputs)
    lines.push(`@group(0) @binding(${b++}) var<storage, read> ${name}: array<${type}>;`);
  for (const [name, type] of outputs)
    lines.push(`@group(0) @binding(${b++}) var<storage, read_write> ${name}: array<${type}>;`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------------
// Uniform blocks.

export type UniformType = 'u32' | 'i32' | 'f32';
/** [name, type] for a scalar, [name, type, length] for an array (length may be 0). */
export type UniformField = readonly [name: string, type: UniformType, length?: number];

/**
 * A uniform block of 32-bit words, declared as `array<vec4<u32>, W>` at binding 0 (which sidesteps WGSL's
 * 16-byte array stride for uniforms). For every field it generates an accessor: `u_name()` for a scalar,
 * `u_name(i)` for an array, returning the field's type.
 */
export class Uniforms {
  readonly words: number;
  private readonly fields: readonly UniformField[];
  private readonly offsets = new Map<string, { at: number; type: UniformType; length?: number }>();

  constructor(fields: readonly UniformField[]) {
    this.fields = fields;
    let at = 0;
    for (const [name, type, length] of fields) {
      this.offsets.set(name, { at, type, length });
      at += length ?? 1;
    }
    this.words = at;
  }

  /** The declaration and accessors (built on demand: only a pipeline-cache miss needs them). */
  get wgsl(): string {
    const fns = this.fields.map(([name, type, length]) => {
      const at = this.offsets.get(name)!.at;
      const word = length === undefined ? `params_word(${at}u)` : `params_word(${at}u + i)`;
      const value = type === 'u32' ? word : `bitcast<${type}>(${word})`;
      return length === undefined
        ? `fn u_${name}() -> ${type} { return ${value}; }`
        : `fn u_${name}(i: u32) -> ${type} { return ${value}; }`;
    });
    return [
      `struct Params { v: array<vec4<u32>, ${Math.max(1, Math.ceil(this.words / 4))}> }`,
      '@group(0) @binding(0) var<uniform> params: Params;',
      'fn params_word(i: u32) -> u32 { return params.v[i / 4u][i % 4u]; }',
      ...fns,
    ].join('\n');
  }

  /** The block's words; every field must be given (arrays with exactly their length). */
  pack(values: Readonly<Record<string, number | readonly number[]>>): Uint32Array {
    const u = new Uint32Array(Math.max(4, Math.ceil(this.words / 4) * 4));
    const f = new Float32Array(u.buffer);
    const i = new Int32Array(u.buffer);
    for (const [name, { at, type, length }] of this.offsets) {
      const v = values[name];
      if (v === undefined) throw new Error(`Uniforms.pack: missing field '${name}'`);
      const list = typeof v === 'number' ? [v] : v;
      if (list.length !== (length ?? 1))
        throw new Error(`Uniforms.pack: field '${name}' needs ${length ?? 1} values, got ${list.length}`);
      const dst = type === 'f32' ? f : type === 'i32' ? i : u;
      for (let k = 0; k < list.length; k++) dst[at + k] = list[k];
    }
    return u;
  }
}

// ---------------------------------------------------------------------------------------------------
// Shape classes.

/**
 * Merges adjacent dimensions that every stride set walks contiguously (strides[k] == strides[k+1] *
 * shape[k+1]) and drops dimensions of size 1, so [B, T, C] with contiguous strides becomes [B*T*C]
 * and one pipeline per rank serves many shapes. Returns the new shape and stride sets (rank >= 1).
 */
export function coalesce(
  shape: readonly number[],
  strideSets: readonly (readonly number[])[],
): { shape: number[]; strides: number[][] } {
  const dims: number[] = [];
  for (let k = 0; k < shape.length; k++) if (shape[k] !== 1) dims.push(k);
  const outShape: number[] = [];
  const outStrides: number[][] = strideSets.map(() => []);
  for (const k of dims) {
    const last = outShape.length - 1;
    if (last >= 0 && strideSets.every((s, j) => outStrides[j][last] === s[k] * shape[k])) {
      outShape[last] *= shape[k];
      strideSets.forEach((s, j) => (outStrides[j][last] = s[k]));
    } else {
      outShape.push(shape[k]);
      strideSets.forEach((s, j) => outStrides[j].push(s[k]));
    }
  }
  if (outShape.length === 0) return { shape: [1], strides: strideSets.map(() => [0]) };
  return { shape: outShape, strides: outStrides };
}

/**
 * WGSL statements that decompose a flat row-major index `idx` over the uniform array `shape` of rank
 * `rank` and accumulate, for each named uniform stride array, the offset `off_<name>` (declared here,
 * starting at `bases[name]`, a WGSL expression, when given; else at 0).
 */
export function stridedOffsetsWGSL(
  rank: number,
  idx: string,
  shape: string,
  strides: readonly string[],
  bases: Readonly<Record<string, string>> = {},
): string {
  const decl = strides.map((s) => `var off_${s} = ${bases[s] ?? '0u'};`).join(' ');
  const acc = strides.map((s) => `off_${s} += c * u_${s}(k);`).join(' ');
  return `${decl}
  { var rem = ${idx};
    for (var d = ${rank}u; d > 0u; d--) {
      let k = d - 1u; let n = u_${shape}(k); let c = rem % n; rem = rem / n; ${acc}
    } }`;
}

// ---------------------------------------------------------------------------------------------------
// The dispatcher: pipelines, batching, error scopes.

export interface DispatcherOptions {
  /** One submit per dispatch, each inside its own error scopes: the first error names its program. */
  debug: boolean;
  /** Dispatches per command buffer before a submit (a read or the end of the current task submits too). */
  batchSize: number;
}

/** Uniform slots per batch; a full arena submits the batch. */
const ARENA_SLOTS = 512;
const SLOT_BYTES = 256;
/** Bind groups kept for reuse; a full cache starts over (a training step touches a few thousand). */
const BIND_GROUP_CACHE = 8192;
/** Compute passes a batch times (two timestamps each) before it is submitted. */
const TIMED_PASSES = 128;

/**
 * What the backend has done so far, for tests and profiles: on lavapipe each dispatch, bind group and
 * buffer creation costs CPU time on the host, so a decode step's cost is mostly these counts.
 */
export interface GpuStats {
  dispatches: number;
  submits: number;
  /** Pipelines compiled (cache misses). */
  pipelines: number;
  /** Bind groups created (misses of the bind-group cache). */
  bindGroups: number;
  /** Storage buffers created (misses of the buffer pool). */
  buffersCreated: number;
  /** Staging buffers created for reads (misses of the staging pool). */
  stagingCreated: number;
  /** Uploads (queue writes of tensor data). */
  uploads: number;
  reads: number;
}

export const emptyStats = (): GpuStats => ({
  dispatches: 0,
  submits: 0,
  pipelines: 0,
  bindGroups: 0,
  buffersCreated: 0,
  stagingCreated: 0,
  uploads: 0,
  reads: 0,
});

/**
 * Owns the command encoder. Every run is encoded into one open compute pass; the batch is submitted when
 * it holds batchSize dispatches, when its uniform arena is full, on a read, and at the end of the current
 * JS task (a microtask), so work never waits unsubmitted behind an await. Uniforms of a batch live in one
 * arena buffer written just before the submit (queue order makes reusing it for the next batch safe).
 * The arena is bound with a dynamic offset, so a bind group depends only on the storage buffers: pooled
 * buffers recur (a decode step reuses the last step's), and their bind groups are cached.
 *
 * Errors: each batch runs inside validation / out-of-memory / internal error scopes; device loss and
 * uncaptured errors are recorded too. A recorded error is thrown by the next op (synchronously) or read.
 */
export class Dispatcher {
  private readonly pipelines = new Map<string, GPUComputePipeline>();
  private readonly layouts = new Map<string, { bgl: GPUBindGroupLayout; pl: GPUPipelineLayout }>();
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private batchNames: string[] = [];
  private readonly arena: GPUBuffer;
  private readonly arenaCpu = new Uint32Array((ARENA_SLOTS * SLOT_BYTES) / 4);
  private slots = 0;
  private readonly pending = new Set<Promise<void>>();
  private failure: Error | null = null;
  private readonly bindGroups = new Map<string, GPUBindGroup>();
  private readonly bufferIds = new WeakMap<GPUBuffer, number>();
  private nextBufferId = 0;
  /** GPU timing (startTiming): the pass time summed so far and the reads of batches still in flight. */
  private timing: { ns: number; reads: Promise<void>[] } | null = null;
  /** The open batch's timestamp queries, while timing. */
  private batchQueries: { set: GPUQuerySet; passes: number } | null = null;

  constructor(
    readonly device: GPUDevice,
    readonly options: DispatcherOptions,
    /** Counts for tests and profiles (the backend shares it with its pools). */
    readonly stats: GpuStats = emptyStats(),
  ) {
    const align = device.limits.minUniformBufferOffsetAlignment;
    if (SLOT_BYTES % align !== 0)
      throw new Error(`webgpu: minUniformBufferOffsetAlignment ${align} does not divide ${SLOT_BYTES}`);
    this.arena = device.createBuffer({
      size: ARENA_SLOTS * SLOT_BYTES,
      usage: 0x40 /* UNIFORM */ | 0x08 /* COPY_DST */,
      label: 'uniform arena',
    });
  }

  /** Records an error (the first one wins); ops and reads throw it from now on. */
  fail(error: Error): void {
    this.failure ??= error;
  }

  /** Throws the recorded error, if any. Every op calls this first. */
  check(): void {
    if (this.failure) throw this.failure;
  }

  /** Forgets a recorded error (after a test that provoked one on purpose). */
  clearError(): void {
    this.failure = null;
  }

  /** Waits for every error scope still being resolved, then throws the recorded error, if any. */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
    this.check();
  }

  run(program: Program, inputs: readonly GpuHandle[], outputs: readonly GpuHandle[], uniforms: Uint32Array): void {
    this.check();
    for (const h of [...inputs, ...outputs]) {
      if (h.released)
        throw new Error(
          `webgpu: program '${program.name}' was given a buffer that has been freed (a disposed tensor?)`,
        );
    }
    if (uniforms.byteLength > SLOT_BYTES)
      throw new Error(
        `webgpu: program '${program.name}' has ${uniforms.byteLength} bytes of uniforms, more than ${SLOT_BYTES}`,
      );
    const [x, y, z] = program.dispatch;
    const max = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (x > max || y > max || z > max)
      throw new Error(
        `webgpu: program '${program.name}' dispatches [${x}, ${y}, ${z}] workgroups; at most ${max} per ` +
          `dimension (use grid1d)`,
      );
    const pipeline = this.pipeline(program, inputs.length, outputs.length);
    if (this.slots === ARENA_SLOTS) this.flush();
    const pass = this.openPass();
    const slot = this.slots++;
    this.arenaCpu.set(uniforms, (slot * SLOT_BYTES) / 4);
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, this.bindGroup(inputs, outputs), [slot * SLOT_BYTES]);
    pass.dispatchWorkgroups(x, y, z);
    this.batchNames.push(program.name);
    this.stats.dispatches++;
    if (this.options.debug || this.batchNames.length >= this.options.batchSize) this.flush();
  }

  /** Forgets cached bind groups (before buffers they name are destroyed). */
  dropBindGroups(): void {
    this.bindGroups.clear();
  }

  private bindGroup(inputs: readonly GpuHandle[], outputs: readonly GpuHandle[]): GPUBindGroup {
    let key = `${inputs.length}:${outputs.length}`;
    for (const h of inputs) key += `,${this.bufferId(h.buffer)}`;
    for (const h of outputs) key += `,${this.bufferId(h.buffer)}`;
    let bg = this.bindGroups.get(key);
    if (!bg) {
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: this.arena, size: SLOT_BYTES } }];
      let b = 1;
      for (const h of inputs) entries.push({ binding: b++, resource: { buffer: h.buffer } });
      for (const h of outputs) entries.push({ binding: b++, resource: { buffer: h.buffer } });
      bg = this.device.createBindGroup({ layout: this.layout(inputs.length, outputs.length).bgl, entries });
      if (this.bindGroups.size >= BIND_GROUP_CACHE) this.bindGroups.clear();
      this.bindGroups.set(key, bg);
      this.stats.bindGroups++;
    }
    return bg;
  }

  private bufferId(buffer: GPUBuffer): number {
    let id = this.bufferIds.get(buffer);
    if (id === undefined) this.bufferIds.set(buffer, (id = this.nextBufferId++));
    return id;
  }

  /** Encodes a buffer-to-buffer copy in stream order (ends the open compute pass). */
  copy(src: GPUBuffer, dst: GPUBuffer, bytes: number, dstOffset = 0): void {
    this.check();
    this.openEncoder();
    this.endPass();
    this.encoder!.copyBufferToBuffer(src, 0, dst, dstOffset, bytes);
    this.batchNames.push('copy');
  }

  /**
   * Starts summing the GPU time of compute passes from timestamp queries written at each pass's start and
   * end (idle time between passes, and buffer copies, are not counted). False, and nothing starts, where the
   * device lacks 'timestamp-query'.
   */
  startTiming(): boolean {
    if (!this.device.features.has('timestamp-query')) return false;
    this.flush();
    this.timing = { ns: 0, reads: [] };
    return true;
  }

  /** Ends timing (submitting what is queued) and resolves to the GPU milliseconds since startTiming. */
  async stopTiming(): Promise<number> {
    if (!this.timing) throw new Error('webgpu: stopTiming without startTiming (or no timestamp-query)');
    this.flush();
    const timing = this.timing;
    this.timing = null;
    await Promise.all(timing.reads);
    return timing.ns / 1e6;
  }

  /** True when commands are encoded and not yet submitted. */
  get hasPending(): boolean {
    return this.encoder !== null;
  }

  /** Submits the open batch, if any. */
  flush(): void {
    if (!this.encoder) return;
    this.endPass();
    const queue = this.device.queue;
    const readTimes = this.resolveQueries(this.encoder);
    if (this.slots > 0) queue.writeBuffer(this.arena, 0, this.arenaCpu, 0, (this.slots * SLOT_BYTES) / 4);
    queue.submit([this.encoder.finish()]);
    readTimes?.();
    this.stats.submits++;
    this.encoder = null;
    this.slots = 0;
    const names = this.batchNames;
    this.batchNames = [];
    const where =
      names.length === 1
        ? `program '${names[0]}'`
        : `a batch of ${names.length} commands (${summarise(names)}); set WEBGPU_DEBUG=1 to find the one`;
    this.popScopes(where);
  }

  private openEncoder(): GPUCommandEncoder {
    if (!this.encoder) {
      this.pushScopes();
      this.encoder = this.device.createCommandEncoder();
      if (this.timing)
        this.batchQueries = {
          set: this.device.createQuerySet({ type: 'timestamp', count: 2 * TIMED_PASSES }),
          passes: 0,
        };
      if (!this.options.debug) queueMicrotask(() => this.flush());
    }
    return this.encoder;
  }

  private openPass(): GPUComputePassEncoder {
    if (!this.pass && this.batchQueries?.passes === TIMED_PASSES) this.flush();
    const encoder = this.openEncoder();
    if (!this.pass) {
      const q = this.batchQueries;
      this.pass = q
        ? encoder.beginComputePass({
            timestampWrites: {
              querySet: q.set,
              beginningOfPassWriteIndex: 2 * q.passes,
              endOfPassWriteIndex: 2 * q.passes++ + 1,
            },
          })
        : encoder.beginComputePass();
    }
    return this.pass;
  }

  /**
   * Encodes the copy of the batch's timestamps to a mappable buffer; the function it returns, called after
   * the submit, maps that buffer and adds the batch's pass time to the running sum.
   */
  private resolveQueries(encoder: GPUCommandEncoder): (() => void) | null {
    const q = this.batchQueries;
    this.batchQueries = null;
    const timing = this.timing;
    if (!q || !timing || q.passes === 0) {
      q?.set.destroy();
      return null;
    }
    const bytes = 16 * q.passes;
    const resolved = this.device.createBuffer({ size: bytes, usage: 0x200 /* QUERY_RESOLVE */ | 0x04 /* COPY_SRC */ });
    const readable = this.device.createBuffer({ size: bytes, usage: 0x01 /* MAP_READ */ | 0x08 /* COPY_DST */ });
    encoder.resolveQuerySet(q.set, 0, 2 * q.passes, resolved, 0);
    encoder.copyBufferToBuffer(resolved, 0, readable, 0, bytes);
    return () => {
      const read = readable.mapAsync(0x01 /* READ */).then(() => {
        const t = new BigUint64Array(readable.getMappedRange());
        // Timestamps may be quantised, or (on some drivers) out of order: a negative span counts as 0.
        for (let i = 0; i < t.length; i += 2) timing.ns += Math.max(0, Number(t[i + 1] - t[i]));
        readable.unmap();
        for (const b of [readable, resolved]) b.destroy();
        q.set.destroy();
      });
      timing.reads.push(read);
    };
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }

  private pushScopes(): void {
    this.device.pushErrorScope('internal');
    this.device.pushErrorScope('out-of-memory');
    this.device.pushErrorScope('validation');
  }

  private popScopes(where: string): void {
    for (const kind of ['validation', 'out of memory', 'internal'])
      this.track(this.device.popErrorScope(), `${kind} error in ${where}`);
  }

  private track(scope: Promise<GPUError | null>, what: string): void {
    const p = scope.then(
      (e) => {
        if (e) this.fail(new Error(`webgpu: ${what}: ${e.message}`));
      },
      (e: unknown) => this.fail(new Error(`webgpu: ${what}: ${(e as Error).message ?? e}`)),
    );
    const done = p.finally(() => this.pending.delete(done));
    this.pending.add(done);
  }

  private layout(nIn: number, nOut: number): { bgl: GPUBindGroupLayout; pl: GPUPipelineLayout } {
    const key = `${nIn}:${nOut}`;
    let l = this.layouts.get(key);
    if (!l) {
      const COMPUTE = 0x4;
      const entries: GPUBindGroupLayoutEntry[] = [
        { binding: 0, visibility: COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true } },
      ];
      for (let i = 0; i < nIn; i++)
        entries.push({ binding: 1 + i, visibility: COMPUTE, buffer: { type: 'read-only-storage' } });
      for (let i = 0; i < nOut; i++)
        entries.push({ binding: 1 + nIn + i, visibility: COMPUTE, buffer: { type: 'storage' } });
      const bgl = this.device.createBindGroupLayout({ entries, label: `layout ${key}` });
      l = { bgl, pl: this.device.createPipelineLayout({ bindGroupLayouts: [bgl] }) };
      this.layouts.set(key, l);
    }
    return l;
  }

  private pipeline(program: Program, nIn: number, nOut: number): GPUComputePipeline {
    let p = this.pipelines.get(program.cacheKey);
    if (!p) {
      const code = program.wgsl();
      this.device.pushErrorScope('validation');
      const module = this.device.createShaderModule({ code, label: program.cacheKey });
      p = this.device.createComputePipeline({
        layout: this.layout(nIn, nOut).pl,
        compute: { module, entryPoint: 'main' },
        label: program.cacheKey,
      });
      this.track(
        this.device.popErrorScope(),
        `program '${program.name}' (cache key ${program.cacheKey}) failed to build`,
      );
      this.pipelines.set(program.cacheKey, p);
      this.stats.pipelines++;
    }
    return p;
  }
}

function summarise(names: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const n of names) counts.set(n, (counts.get(n) ?? 0) + 1);
  return [...counts].map(([n, c]) => (c > 1 ? `${n} x${c}` : n)).join(', ');
}
