// Tensor, its reference-counted storage, scopes (tidy / keep / dispose) and the reverse-mode tape.
// Ops live in ops.ts; this file holds only what every op needs: creating outputs and recording backward.

import { getBackend, type Backend, type Device, type View } from './backend.js';
import { arrayFor, checkDType, dtypeOf, isFloat, type DType, type TypedArray } from './dtype.js';
import { checkShape, fmt, sameShape, sizeOf, type Shape } from './shape.js';
import * as fused from './fused.js';
import * as ops from './ops.js';

// ---------------------------------------------------------------------------------------------------
// Storage: several tensors may share one (reshape, detach); the backend frees it when the last goes.

class Storage {
  refs = 1;
  constructor(
    readonly backend: Backend,
    readonly handle: unknown,
    readonly dtype: DType,
  ) {}
  release(): void {
    if (--this.refs === 0) this.backend.free(this.handle, this.dtype);
  }
}

// ---------------------------------------------------------------------------------------------------
// Global engine state: grad mode, scopes, debug switches, memory counters.

let gradEnabled = true;
const scopes: Set<Tensor>[] = [];
let nextId = 0;
let liveTensors = 0;

export interface DebugOptions {
  /** After every op, read its output and throw if it holds NaN or Inf (CPU: synchronous). Slow. */
  checkNumerics: boolean;
}
const debug: DebugOptions = { checkNumerics: false };

export function setDebug(opts: Partial<DebugOptions>): void {
  Object.assign(debug, opts);
}

/** Tensors created and not yet disposed (all devices). A training loop must keep this flat. */
export function memory(): { liveTensors: number } {
  return { liveTensors };
}

export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs fn with gradient recording off, like torch.no_grad(). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** A node of the tape: the op that made a tensor, its inputs, and the backward that maps dOut to dInputs. */
export interface GradNode {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  readonly backward: (dout: Tensor) => readonly (Tensor | null)[];
  /** Set once a backward has run through the node without retainGraph (PyTorch frees the graph then). */
  consumed?: boolean;
}

export interface BackwardOptions {
  /**
   * Keep the graph differentiable after this backward, so that another backward may run through it (and
   * accumulate into .grad again). Off by default: a second backward is refused, as in PyTorch.
   */
  retainGraph?: boolean;
}

export class Tensor implements View {
  readonly id = nextId++;
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly size: number;
  requiresGrad = false;
  grad: Tensor | null = null;
  gradFn: GradNode | null = null;
  /** Exempt from the enclosing tidy() scopes. */
  kept = false;
  private storage: Storage | null;

  /** Internal: use tensor(), zeros() and the ops to make tensors. */
  constructor(storage: Storage, shape: Shape, dtype: DType) {
    this.storage = storage;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = sizeOf(shape);
    liveTensors++;
    if (scopes.length > 0) scopes[scopes.length - 1].add(this);
  }

  get device(): Device {
    return this.live('device').backend.name;
  }
  get backend(): Backend {
    return this.live('backend').backend;
  }
  get handle(): unknown {
    return this.live('handle').handle;
  }
  get ndim(): number {
    return this.shape.length;
  }
  get isDisposed(): boolean {
    return this.storage === null;
  }

  private live(what: string): Storage {
    if (this.storage === null) {
      throw new Error(
        `tensor #${this.id} ${fmt(this.shape)} ${this.dtype} was disposed; cannot read its ${what} (was it created ` +
          `inside a tidy() that has ended?)`,
      );
    }
    return this.storage;
  }

  /** Releases the storage now (shared storage goes when its last tensor does). Idempotent. */
  dispose(): void {
    if (this.storage === null) return;
    this.storage.release();
    this.storage = null;
    liveTensors--;
  }

  /** Reads the values; the only way to wait for a GPU. */
  async data(): Promise<TypedArray> {
    return this.backend.read(this);
  }

  /** Synchronous read: CPU only, for tests and scripts, never in a hot path. */
  dataSync(): TypedArray {
    const b = this.backend;
    if (!b.readSync) throw new Error(`dataSync: device '${b.name}' cannot be read synchronously; use await t.data()`);
    return b.readSync(this);
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1)
      throw new Error(`item: tensor has shape ${fmt(this.shape)} (${this.size} elements), expected exactly one`);
    return (await this.data())[0];
  }

  async toArray(): Promise<number[]> {
    return Array.from(await this.data());
  }

  /** Sets requiresGrad (a leaf that will receive .grad). Returns this. */
  requiresGrad_(value = true): this {
    if (value && !isFloat(this.dtype))
      throw new Error(`requiresGrad_: only float tensors can require gradients, got ${this.dtype}`);
    if (this.gradFn)
      throw new Error(
        'requiresGrad_: can only be set on a leaf tensor (one not produced by a recorded op); use detach() first',
      );
    this.requiresGrad = value;
    return this;
  }

  /** The same storage, cut from the tape. */
  detach(): Tensor {
    return this.shareAs(this.shape);
  }

  /** Internal: a new tensor over this one's storage with another shape of the same size (no tape). */
  shareAs(shape: Shape): Tensor {
    const s = this.live('storage');
    s.refs++;
    return new Tensor(s, shape, this.dtype);
  }

  /** Metadata-only reshape sharing storage; -1 infers one dimension. Recorded on the tape. */
  reshape(shape: readonly number[]): Tensor {
    return ops.reshape(this, shape);
  }

  /** Replaces this tensor's values with those of `value` (same shape and dtype), off the tape: optimizer updates. */
  assign(value: Tensor): void {
    if (!sameShape(value.shape, this.shape) || value.dtype !== this.dtype || value.device !== this.device) {
      throw new Error(
        `assign: value ${fmt(value.shape)} ${value.dtype} on ${value.device} does not match tensor ` +
          `${fmt(this.shape)} ${this.dtype} on ${this.device}`,
      );
    }
    const s = value.live('storage');
    s.refs++;
    this.live('storage').release();
    this.storage = s;
  }

  /** Reverse-mode autodiff from this tensor; leaves that require grad accumulate into .grad. */
  backward(grad?: Tensor, opts?: BackwardOptions): void {
    backward(this, grad, opts);
  }

  toString(): string {
    return (
      `Tensor(${fmt(this.shape)}, ${this.dtype}, ` +
      `${this.storage ? this.device : 'disposed'}${this.gradFn ? `, grad_fn=${this.gradFn.op}` : ''})`
    );
  }

  // Sugar: methods that forward to the free functions in ops.ts.
  add(b: Tensor | number): Tensor {
    return ops.add(this, b);
  }
  sub(b: Tensor | number): Tensor {
    return ops.sub(this, b);
  }
  mul(b: Tensor | number): Tensor {
    return ops.mul(this, b);
  }
  div(b: Tensor | number): Tensor {
    return ops.div(this, b);
  }
  pow(b: Tensor | number): Tensor {
    return ops.pow(this, b);
  }
  maximum(b: Tensor | number): Tensor {
    return ops.maximum(this, b);
  }
  minimum(b: Tensor | number): Tensor {
    return ops.minimum(this, b);
  }
  neg(): Tensor {
    return ops.neg(this);
  }
  exp(): Tensor {
    return ops.exp(this);
  }
  log(): Tensor {
    return ops.log(this);
  }
  sqrt(): Tensor {
    return ops.sqrt(this);
  }
  rsqrt(): Tensor {
    return ops.rsqrt(this);
  }
  tanh(): Tensor {
    return ops.tanh(this);
  }
  sigmoid(): Tensor {
    return ops.sigmoid(this);
  }
  relu(): Tensor {
    return ops.relu(this);
  }
  gelu(): Tensor {
    return ops.gelu(this);
  }
  silu(): Tensor {
    return ops.silu(this);
  }
  abs(): Tensor {
    return ops.abs(this);
  }
  square(): Tensor {
    return ops.square(this);
  }
  reciprocal(): Tensor {
    return ops.reciprocal(this);
  }
  sum(axes?: number | number[], keepdim = false): Tensor {
    return ops.sum(this, axes, keepdim);
  }
  mean(axes?: number | number[], keepdim = false): Tensor {
    return ops.mean(this, axes, keepdim);
  }
  max(axes?: number | number[], keepdim = false): Tensor {
    return ops.max(this, axes, keepdim);
  }
  min(axes?: number | number[], keepdim = false): Tensor {
    return ops.min(this, axes, keepdim);
  }
  logsumexp(axes?: number | number[], keepdim = false): Tensor {
    return ops.logsumexp(this, axes, keepdim);
  }
  permute(perm: number[]): Tensor {
    return ops.permute(this, perm);
  }
  transpose(dim0: number, dim1: number): Tensor {
    return ops.transpose(this, dim0, dim1);
  }
  get T(): Tensor {
    return ops.transpose(this, -2, -1);
  }
  slice(begin: number[], size: number[]): Tensor {
    return ops.slice(this, begin, size);
  }
  narrow(dim: number, start: number, length: number): Tensor {
    return ops.narrow(this, dim, start, length);
  }
  expand(shape: number[]): Tensor {
    return ops.expand(this, shape);
  }
  squeeze(dim?: number): Tensor {
    return ops.squeeze(this, dim);
  }
  unsqueeze(dim: number): Tensor {
    return ops.unsqueeze(this, dim);
  }
  flatten(): Tensor {
    return ops.reshape(this, [this.size]);
  }
  gather(dim: number, index: Tensor): Tensor {
    return ops.gather(this, dim, index);
  }
  indexSelect(dim: number, index: Tensor): Tensor {
    return ops.indexSelect(this, dim, index);
  }
  matmul(b: Tensor): Tensor {
    return ops.matmul(this, b);
  }
  softmax(dim = -1): Tensor {
    return fused.softmax(this, dim);
  }
  logSoftmax(dim = -1): Tensor {
    return fused.logSoftmax(this, dim);
  }
  to(dtype: DType): Tensor {
    return ops.cast(this, dtype);
  }
  /** A copy with its own storage (recorded on the tape); detach() shares storage instead. */
  clone(): Tensor {
    return ops.mul(this, 1);
  }
}

// ---------------------------------------------------------------------------------------------------
// Making tensors.

/** Wraps a handle a backend just produced. Ops call this for every output. */
export function fromHandle(op: string, backend: Backend, handle: unknown, shape: Shape, dtype: DType): Tensor {
  const t = new Tensor(new Storage(backend, handle, dtype), shape, dtype);
  if (debug.checkNumerics && isFloat(dtype)) checkFinite(op, t);
  return t;
}

function checkFinite(op: string, t: Tensor): void {
  const b = t.backend;
  if (!b.readSync) return b.checkFinite?.(op, t); // a GPU reports it at the next read
  const data = b.readSync(t);
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new Error(
        `checkNumerics: op '${op}' produced ${data[i]} at flat index ${i} of its output ${fmt(t.shape)} ${t.dtype}`,
      );
    }
  }
}

export interface TensorOptions {
  dtype?: DType;
  device?: Device;
  requiresGrad?: boolean;
}

let defaultDevice: Device = 'cpu';
export function setDefaultDevice(device: Device): void {
  getBackend(device); // throws if not registered
  defaultDevice = device;
}
export function getDefaultDevice(): Device {
  return defaultDevice;
}

type Nested = number | boolean | Nested[];

function inferShape(data: Nested): number[] {
  const shape: number[] = [];
  let d: Nested = data;
  while (Array.isArray(d)) {
    shape.push(d.length);
    d = d[0];
  }
  return shape;
}

/**
 * A tensor from values: a typed array (with a shape), a number, or nested arrays. The default dtype is
 * float32, or the typed array's own; the default device is getDefaultDevice().
 */
export function tensor(
  data: Nested | TypedArray,
  shapeOrOpts?: readonly number[] | TensorOptions,
  maybeOpts: TensorOptions = {},
): Tensor {
  const opts = Array.isArray(shapeOrOpts) || shapeOrOpts === undefined ? maybeOpts : (shapeOrOpts as TensorOptions);
  let shape = Array.isArray(shapeOrOpts) ? checkShape('tensor', shapeOrOpts as number[]) : undefined;
  const isTyped = ArrayBuffer.isView(data);
  const dtype = checkDType('tensor', opts.dtype ?? (isTyped ? dtypeOf(data as TypedArray) : 'float32'));
  let flat: ArrayLike<number>;
  if (isTyped) {
    flat = data as TypedArray;
    shape ??= [flat.length];
  } else {
    const inferred = inferShape(data as Nested);
    flat = (Array.isArray(data) ? (data as unknown[]).flat(Infinity as 1) : [data]).map(Number);
    if (flat.length !== sizeOf(inferred))
      throw new Error(
        `tensor: nested array is ragged (shape ${fmt(inferred)} implies ${sizeOf(inferred)} values, got ` +
          `${flat.length})`,
      );
    shape ??= inferred;
  }
  if (sizeOf(shape) !== flat.length)
    throw new Error(`tensor: ${flat.length} values do not fill shape ${fmt(shape)} (${sizeOf(shape)} elements)`);
  const arr = arrayFor(dtype, flat.length);
  arr.set(flat);
  const backend = getBackend(opts.device ?? defaultDevice);
  const t = fromHandle('tensor', backend, backend.upload(arr), shape, dtype);
  if (opts.requiresGrad) t.requiresGrad_();
  return t;
}

export function full(shape: readonly number[], value: number, opts: TensorOptions = {}): Tensor {
  const s = checkShape('full', shape);
  const dtype = checkDType('full', opts.dtype ?? 'float32');
  const backend = getBackend(opts.device ?? defaultDevice);
  const t = fromHandle('full', backend, backend.fill(s, dtype, value), s, dtype);
  if (opts.requiresGrad) t.requiresGrad_();
  return t;
}
export const zeros = (shape: readonly number[], opts?: TensorOptions): Tensor => full(shape, 0, opts);
export const ones = (shape: readonly number[], opts?: TensorOptions): Tensor => full(shape, 1, opts);
export const zerosLike = (t: Tensor): Tensor => full(t.shape, 0, { dtype: t.dtype, device: t.device });
export const onesLike = (t: Tensor): Tensor => full(t.shape, 1, { dtype: t.dtype, device: t.device });
export const scalar = (value: number, opts?: TensorOptions): Tensor => full([], value, opts);

export function arange(n: number, opts: TensorOptions = {}): Tensor {
  const dtype = opts.dtype ?? 'int32';
  const arr = arrayFor(dtype, n);
  for (let i = 0; i < n; i++) arr[i] = i;
  return tensor(arr, [n], { ...opts, dtype });
}

// ---------------------------------------------------------------------------------------------------
// Scopes: deterministic release without the garbage collector (tfjs's tidy is the model).

type Kept = Tensor | Kept[] | { [k: string]: Kept } | unknown;

function collect(value: Kept, out: Set<Tensor>): void {
  if (value instanceof Tensor) out.add(value);
  else if (Array.isArray(value)) for (const v of value) collect(v, out);
  else if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const v of Object.values(value as Record<string, unknown>)) collect(v, out);
  }
}

/**
 * Runs fn and disposes every tensor created inside it, except those it returns (found in arrays and plain
 * objects) and those marked with keep(). Returned tensors move to the enclosing scope. fn must be
 * synchronous: across an await, other work would land in this scope.
 */
export function tidy<T>(fn: () => T): T {
  scopes.push(new Set());
  let result: T;
  try {
    result = fn();
  } catch (e) {
    endScope(undefined);
    throw e;
  }
  if (result instanceof Promise) {
    endScope(undefined);
    throw new Error(
      'tidy: fn returned a Promise; scopes cannot span an await (use keep() and dispose() around async code)',
    );
  }
  endScope(result);
  return result;
}

function endScope(result: unknown): void {
  const scope = scopes.pop()!;
  const keepSet = new Set<Tensor>();
  collect(result, keepSet);
  const parent = scopes[scopes.length - 1];
  for (const t of scope) {
    if (keepSet.has(t)) parent?.add(t);
    else if (!t.kept) t.dispose();
  }
}

/** Exempts a tensor from the enclosing scopes (dispose it yourself). Returns it. */
export function keep<T extends Tensor>(t: T): T {
  t.kept = true;
  return t;
}

/** Disposes tensors in any nesting of arrays and plain objects. */
export function dispose(value: unknown): void {
  const set = new Set<Tensor>();
  collect(value, set);
  for (const t of set) t.dispose();
}

// ---------------------------------------------------------------------------------------------------
// The tape.

/** Attaches a backward to an op's output when grad mode is on and any input requires grad. */
export function record(out: Tensor, op: string, inputs: readonly Tensor[], backward: GradNode['backward']): Tensor {
  if (gradEnabled && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.gradFn = { op, inputs, backward };
  }
  return out;
}

function topoOrder(root: Tensor): Tensor[] {
  // Iterative post-order DFS: deep graphs (long RL rollouts) must not overflow the JS stack.
  const order: Tensor[] = [];
  const seen = new Set<Tensor>([root]);
  const stack: [Tensor, number][] = [[root, 0]];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const inputs = top[0].gradFn?.inputs ?? [];
    if (top[1] < inputs.length) {
      const next = inputs[top[1]++];
      if (next.requiresGrad && !seen.has(next)) {
        seen.add(next);
        stack.push([next, 0]);
      }
    } else {
      order.push(top[0]);
      stack.pop();
    }
  }
  return order.reverse();
}

/**
 * Reverse-mode autodiff: seeds dRoot (ones for a one-element root), walks the tape in reverse
 * topological order, checks every gradient's shape and dtype against its input, and accumulates
 * into the .grad of leaves that require grad. Intermediate gradients are freed before returning.
 */
export function backward(root: Tensor, seed?: Tensor, opts: BackwardOptions = {}): void {
  if (!root.requiresGrad)
    throw new Error(
      `backward: ${root} does not require grad (no input of its graph has requiresGrad set, or it was ` +
        `made under noGrad)`,
    );
  if (!seed && root.size !== 1)
    throw new Error(
      `backward: a gradient can be implied only for a one-element output; got ${fmt(root.shape)}, pass the seed ` +
        `gradient explicitly`,
    );
  if (seed) checkGrad('backward', 'seed', seed, root);
  const order = topoOrder(root);
  const used = order.find((t) => t.gradFn?.consumed);
  if (used)
    throw new Error(
      `backward: the graph through '${used.gradFn!.op}' was already differentiated; pass { retainGraph: true } to ` +
        `the earlier backward to run another one through it (its gradients would accumulate twice)`,
    );
  tidy(() =>
    noGrad(() => {
      const grads = new Map<Tensor, Tensor>();
      grads.set(root, seed ?? ops.onesLikeOf(root));
      for (const t of order) {
        const g = grads.get(t);
        if (!g) continue;
        const node = t.gradFn;
        if (!node) {
          // A leaf: accumulate into .grad, kept beyond this scope. detach() gives the leaf its own
          // Tensor object over shared storage, so two leaves handed the same gradient never alias.
          const acc = t.grad ? ops.add(t.grad, g) : g.detach();
          t.grad?.dispose();
          t.grad = keep(acc);
          continue;
        }
        let dins: readonly (Tensor | null)[];
        try {
          dins = node.backward(g);
        } catch (e) {
          throw new Error(`backward of '${node.op}' failed: ${(e as Error).message}`, { cause: e });
        }
        node.inputs.forEach((input, i) => {
          const d = dins[i];
          if (!input.requiresGrad || !d) return;
          checkGrad(node.op, `input ${i}`, d, input);
          const prev = grads.get(input);
          grads.set(input, prev ? ops.add(prev, d) : d);
        });
      }
    }),
  );
  if (!opts.retainGraph) for (const t of order) if (t.gradFn) t.gradFn.consumed = true;
}

function checkGrad(op: string, which: string, g: Tensor, input: Tensor): void {
  if (!sameShape(g.shape, input.shape) || g.dtype !== input.dtype) {
    throw new Error(
      `backward of '${op}': gradient for ${which} is ${fmt(g.shape)} ${g.dtype} but the input is ${fmt(input.shape)} ` +
        `${input.dtype}`,
    );
  }
}
