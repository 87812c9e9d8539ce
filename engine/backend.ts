// The Backend interface: a small primitive set every backend implements, plus named fused primitives
// that a backend may provide (engine/fused.ts composes them from primitives when it does not).
// A backend owns storage and computes; it knows nothing of autodiff, scopes or Tensor.

import type { DType, TypedArray } from './dtype.js';
import type { Shape } from './shape.js';

export type Device = 'cpu' | 'webgpu';

/** What a backend sees of a tensor: its storage handle, shape and dtype (storage is contiguous, row-major). */
export interface View {
  readonly handle: unknown;
  readonly shape: Shape;
  readonly dtype: DType;
}

export type UnaryOp =
  | 'neg'
  | 'exp'
  | 'log'
  | 'sqrt'
  | 'rsqrt'
  | 'tanh'
  | 'sigmoid'
  | 'relu'
  | 'gelu'
  | 'silu'
  /** d gelu / dx and d silu / dx: their backwards in one pass instead of a dozen ops. */
  | 'geluGrad'
  | 'siluGrad'
  | 'abs'
  | 'sign'
  | 'square'
  | 'reciprocal'
  | 'isnan'
  | 'isinf';

export type BinaryOp =
  'add' | 'sub' | 'mul' | 'div' | 'pow' | 'maximum' | 'minimum' | 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge';

export type ReduceOp = 'sum' | 'max' | 'min';

/** Hyper-parameters of one decoupled-weight-decay Adam step (Loshchilov & Hutter). */
export interface AdamWParams {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step count, for bias correction. */
  step: number;
}

/**
 * Fused primitives. Each has a composed fallback in engine/fused.ts written in tensor ops; a backend that
 * provides one must agree with the composed version (tests/algebra.test.ts checks the CPU's).
 * Conventions: the normalised axis is the last one; targets are int32 and a negative target is masked
 * (its log-prob and its gradient are 0); attention is causal with the query rows aligned to the last
 * rows of the keys (query i sits at position S - T + i), which is what a KV cache needs.
 */
export interface FusedKernels {
  logSoftmax(x: View): unknown;
  /** dx = dy - exp(y) * sum(dy) along the last axis, from the forward's output y. */
  logSoftmaxBackward(y: View, dy: View): unknown;
  /** logits [..., V], targets [...] -> log p(target) [...]. */
  targetLogProb(logits: View, targets: View): unknown;
  /** dlogits = (onehot(target) - softmax(logits)) * dout, zero on masked rows (the NLL's is its negative). */
  targetLogProbBackward(logits: View, targets: View, dout: View): unknown;
  /** q [..., T, hs], k and v [..., S, hs] -> out [..., T, hs] and the per-row logsumexp [..., T]. */
  /**
   * keyBias, when given, is [B0, S] with B0 = q.shape[0]: added to every score of keys in batch row b0
   * (0 keeps a key, -Infinity hides it: padding inside a KV cache). A query row that sees no key at
   * all gets output 0 and lse -Infinity, and no gradient.
   */
  /**
   * kvLen, when given (T <= kvLen <= S), attends over only the first kvLen key rows of each batch row of k
   * and v (and of keyBias), read in place from buffers of capacity S: a KV cache written in place. The
   * causal alignment follows kvLen (query i sits at position kvLen - T + i). Forward only: no backward reads it.
   */
  attention(q: View, k: View, v: View, scale: number, keyBias?: View, kvLen?: number): { out: unknown; lse: unknown };
  attentionBackward(
    q: View,
    k: View,
    v: View,
    out: View,
    lse: View,
    dout: View,
    scale: number,
    keyBias?: View,
  ): { dq: unknown; dk: unknown; dv: unknown };
  /** Over the last axis; returns y, the mean and the reciprocal std per row ([...] shaped). */
  layerNorm(x: View, weight: View, bias: View, eps: number): { y: unknown; mean: unknown; rstd: unknown };
  layerNormBackward(
    x: View,
    weight: View,
    mean: View,
    rstd: View,
    dy: View,
  ): { dx: unknown; dweight: unknown; dbias: unknown };
  rmsNorm(x: View, weight: View, eps: number): { y: unknown; rstd: unknown };
  rmsNormBackward(x: View, weight: View, rstd: View, dy: View): { dx: unknown; dweight: unknown };
  // Optional even for a complete backend: they save dispatches on a GPU, and the CPU's composed forms are
  // the decoder's original ops (its numbers stay those of earlier runs).
  /** x + r and RMSNorm of it (the pre-norm residual step) in one pass: sum, y and rstd ([...] shaped). */
  addRmsNorm?(x: View, r: View, weight: View, eps: number): { sum: unknown; y: unknown; rstd: unknown };
  /**
   * Attention's inputs: projections q, k, v (B, T, C) split into nHead heads (B, nh, T, hs), q and k
   * rotated by RoPE; cos and sin (B, T, hs/2) hold each token's angles (half-split form, as engine/fused.ts).
   */
  ropeHeads?(q: View, k: View, v: View, cos: View, sin: View, nHead: number): { q: unknown; k: unknown; v: unknown };
  /** The gradient of a rotated head tensor (B, nh, T, hs) -> that of its projection (B, T, C). */
  ropeHeadsBackward?(g: View, cos: View, sin: View): unknown;
  /** Updates param, m and v in place. */
  adamw(param: View, grad: View, m: View, v: View, hp: AdamWParams): void;
}

export type FusedName = keyof FusedKernels;

export interface Backend {
  readonly name: Device;

  // Storage. Handles are opaque to the engine; `free` is called exactly once per handle.
  upload(data: TypedArray): unknown;
  read(x: View): Promise<TypedArray>;
  /** Synchronous read where the backend can do it cheaply (the CPU); never used in a hot path. */
  readSync?(x: View): TypedArray;
  /**
   * checkNumerics for a backend without readSync: arrange for a non-finite value in `x` to be reported
   * (as an error naming `op`) at the next read. A backend with readSync is checked by the engine itself.
   */
  checkFinite?(op: string, x: View): void;
  free(handle: unknown, dtype: DType): void;
  fill(shape: Shape, dtype: DType, value: number): unknown;

  // Elementwise.
  unary(op: UnaryOp, x: View): unknown;
  /** Broadcasting binary op; comparisons give 1 or 0 in the inputs' dtype. Both inputs share a dtype. */
  binary(op: BinaryOp, a: View, b: View, outShape: Shape): unknown;
  /** cond != 0 ? a : b, all three broadcast to outShape; a and b share the output dtype. */
  where(cond: View, a: View, b: View, outShape: Shape): unknown;
  cast(x: View, dtype: DType): unknown;

  /** Reduction over sorted axes; the result has the keepdim shape. */
  reduce(op: ReduceOp, x: View, axes: readonly number[]): unknown;

  // Movement: each produces new contiguous storage.
  permute(x: View, perm: readonly number[]): unknown;
  slice(x: View, begin: readonly number[], size: readonly number[]): unknown;
  /** Zero padding: `before[i]` and `after[i]` elements on each side of dimension i. */
  pad(x: View, before: readonly number[], after: readonly number[]): unknown;
  expand(x: View, shape: Shape): unknown;
  cat(xs: readonly View[], axis: number): unknown;
  /**
   * In place, the one primitive that mutates an existing handle besides adamw: dst's entries
   * [start, start + src.shape[axis]) along `axis` become src (dst and src agree on every other dimension and
   * the dtype, and are different storage). Not differentiated: a KV cache written at its next free slots.
   */
  writeInto(dst: View, src: View, axis: number, start: number): void;

  /**
   * Gather along `axis`. mode 'select': out = x.shape[:axis] + index.shape + x.shape[axis+1:]
   * (embedding lookup, index_select). mode 'along': index has x's rank, out has index's shape
   * (take-along-axis, torch.gather). An index out of range throws (CPU), or reads 0 and
   * makes the next read throw the same error (GPU).
   */
  gather(x: View, index: View, axis: number, mode: 'select' | 'along'): unknown;
  /** The adjoint of gather: a zero tensor of outShape with src added at the gathered positions. */
  scatterAdd(src: View, index: View, axis: number, mode: 'select' | 'along', outShape: Shape): unknown;

  /**
   * Batched matmul with broadcast batch dims: a [..., M, K] (or [..., K, M] if transA), b [..., K, N] (or [..., N,
   * K]).
   */
  matmul(a: View, b: View, transA: boolean, transB: boolean, outShape: Shape): unknown;

  /** Fused primitives this backend provides. */
  readonly fused: Partial<FusedKernels>;
}

const backends = new Map<Device, Backend>();

export function registerBackend(backend: Backend): void {
  backends.set(backend.name, backend);
}

export function getBackend(device: Device): Backend {
  const b = backends.get(device);
  if (!b) {
    const hint = device === 'webgpu' ? ' (call `await initWebGPU()` from kernels/ first)' : '';
    throw new Error(
      `device '${device}' has no backend registered${hint}; registered: ${[...backends.keys()].join(', ') || 'none'}`,
    );
  }
  return b;
}

export function hasBackend(device: Device): boolean {
  return backends.has(device);
}
