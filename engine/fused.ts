// Fused ops: log-softmax, target log-prob, cross-entropy, causal attention, LayerNorm and RMSNorm, the
// residual add with RMSNorm, and attention's inputs (projections split into heads, RoPE).
// Each forward and backward is a named fused primitive when the backend has it, and is composed from
// primitive ops here when it does not; the two paths are tested against each other.

import type { FusedKernels, FusedName } from './backend.js';
import { requireFloat, sameDevice } from './checks.js';
import * as ops from './ops.js';
import { fmt, normAxis, sameShape } from './shape.js';
import { fromHandle, full, isGradEnabled, noGrad, record, Tensor, tensor } from './tensor.js';

let fusedEnabled = true;

/** Off: every fused op runs its composed form, even where the backend has a kernel (for testing). */
export function setFusedKernels(enabled: boolean): void {
  fusedEnabled = enabled;
}

/** The backend's kernel for a fused primitive, unless fused kernels are switched off. */
export function fusedKernel<K extends FusedName>(t: Tensor, name: K): FusedKernels[K] | undefined {
  return fusedEnabled ? t.backend.fused[name] : undefined;
}
const kernel = fusedKernel;

// ---------------------------------------------------------------------------------------------------
// Log-softmax and softmax.

/** log(softmax(x)) along dim; the last axis takes the fused path. */
export function logSoftmax(x: Tensor, dim = -1): Tensor {
  requireFloat('logSoftmax', x);
  const d = normAxis('logSoftmax', dim, x.ndim);
  if (d !== x.ndim - 1) return composedLogSoftmax(x, d);
  const k = kernel(x, 'logSoftmax');
  const y = k ? fromHandle('logSoftmax', x.backend, k(x), x.shape, x.dtype) : noGrad(() => composedLogSoftmax(x, -1));
  return record(y, 'logSoftmax', [x], (g) => [logSoftmaxBackward(y, g)]);
}

/**
 * (x - m) - log sum exp(x - m) along d, m the max (0 where not finite): the shift subtracted first, so that
 * huge tied values keep their log(1/n), which x - logsumexp(x) rounds away ([1e30, 1e30] -> [0, 0]).
 */
function composedLogSoftmax(x: Tensor, d: number): Tensor {
  const m = ops.max(x.detach(), d, true);
  const shifted = ops.sub(x, ops.where(ops.isinf(m), 0, m));
  return ops.sub(shifted, ops.log(ops.sum(ops.exp(shifted), d, true)));
}

/** dx = dy - softmax * sum(dy), with softmax = exp(y). */
function logSoftmaxBackward(y: Tensor, dy: Tensor): Tensor {
  const k = kernel(y, 'logSoftmaxBackward');
  if (k) return fromHandle('logSoftmaxBackward', y.backend, k(y, dy), y.shape, y.dtype);
  return ops.sub(dy, ops.mul(ops.exp(y), ops.sum(dy, -1, true)));
}

export function softmax(x: Tensor, dim = -1): Tensor {
  normAxis('softmax', dim, x.ndim);
  return ops.exp(logSoftmax(x, dim));
}

// ---------------------------------------------------------------------------------------------------
// Target log-prob and cross-entropy.

function checkTargets(op: string, logits: Tensor, targets: Tensor): void {
  requireFloat(op, logits);
  sameDevice(op, logits, targets);
  if (targets.dtype !== 'int32') throw new Error(`${op}: targets must be int32, got ${targets.dtype}`);
  if (logits.ndim < 1 || !sameShape(targets.shape, logits.shape.slice(0, -1))) {
    throw new Error(`${op}: targets ${fmt(targets.shape)} must be logits ${fmt(logits.shape)} without its last axis`);
  }
}

/**
 * log softmax(logits)[target] per row, without materialising the [..., V] log-probs on a fused
 * backend. A negative target masks its row: the result there is 0, and so is its gradient.
 */
export function targetLogProb(logits: Tensor, targets: Tensor): Tensor {
  checkTargets('targetLogProb', logits, targets);
  const k = kernel(logits, 'targetLogProb');
  const y = k
    ? fromHandle('targetLogProb', logits.backend, k(logits, targets), targets.shape, logits.dtype)
    : noGrad(() => {
        const valid = ops.ge(targets, 0);
        const idx = ops.unsqueeze(ops.where(valid, targets, 0), -1);
        const lp = ops.squeeze(ops.gather(logSoftmax(logits), -1, idx), -1);
        return ops.where(valid, lp, 0);
      });
  return record(y, 'targetLogProb', [logits], (g) => [targetLogProbBackward(logits, targets, g)]);
}

function targetLogProbBackward(logits: Tensor, targets: Tensor, dout: Tensor): Tensor {
  const k = kernel(logits, 'targetLogProbBackward');
  if (k)
    return fromHandle('targetLogProbBackward', logits.backend, k(logits, targets, dout), logits.shape, logits.dtype);
  const valid = ops.ge(targets, 0);
  const d = ops.unsqueeze(ops.where(valid, dout, 0), -1); // [..., 1]
  const idx = ops.unsqueeze(ops.where(valid, targets, 0), -1);
  const oneHotD = ops.scatterAdd(d, idx, logits.ndim - 1, 'along', logits.shape);
  return ops.sub(oneHotD, ops.mul(softmax(logits), d));
}

export interface CrossEntropyOptions {
  reduction?: 'mean' | 'sum' | 'none';
  /** Targets equal to this are ignored (PyTorch's default, -100). Any negative target is ignored too. */
  ignoreIndex?: number;
}

/** Cross-entropy from logits [..., V] and int32 targets [...]; 'mean' averages over non-ignored targets. */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const { reduction = 'mean', ignoreIndex = -100 } = opts;
  checkTargets('crossEntropy', logits, targets);
  const t = ignoreIndex >= 0 ? ops.where(ops.eq(targets, ignoreIndex), -1, targets) : targets;
  const nll = ops.neg(targetLogProb(logits, t));
  if (reduction === 'none') return nll;
  if (reduction === 'sum') return ops.sum(nll);
  const count = ops.maximum(ops.cast(ops.sum(ops.ge(t, 0)), logits.dtype), 1);
  return ops.div(ops.sum(nll), count);
}

// ---------------------------------------------------------------------------------------------------
// Causal scaled-dot-product attention.

/** [T, S] additive mask: 0 where key j <= S - T + i, else -Infinity. */
function causalMask(T: number, S: number, like: Tensor): Tensor {
  const m = new (like.dtype === 'float64' ? Float64Array : Float32Array)(T * S);
  for (let i = 0; i < T; i++) for (let j = S - T + i + 1; j < S; j++) m[i * S + j] = -Infinity;
  return tensor(m, [T, S], { device: like.device });
}

export interface AttentionOptions {
  /** Defaults to 1 / sqrt(hs). */
  scale?: number;
  /**
   * [B0, S] with B0 = q.shape[0] (q of rank >= 3): added to the scores of every key in batch row b0,
   * shared by the other batch axes (heads). 0 keeps a key, -Infinity hides it (padding in a KV cache).
   * Not differentiated. A query row that sees no key gets 0 from a fused kernel, NaN from the composed form.
   */
  keyBias?: Tensor;
  /**
   * Attend over only the first kvLen of the S key rows (and keyBias columns), T <= kvLen <= S: k and v are
   * buffers of capacity S written in place (a KV cache), the rest unused. Query row i then sits at position
   * kvLen - T + i. A fused kernel reads the used rows where they lie; where gradients are recorded, or
   * without a kernel, the used rows are copied out first (narrow) and attended as usual.
   */
  kvLen?: number;
}

/**
 * Causal attention softmax(q k^T * scale + mask) v. q [..., T, hs], k and v [..., S, hs], T <= S;
 * query row i sits at position S - T + i, so T = 1 decodes one token against a cache of S keys.
 * Fused backends never hold the T x S matrix; the composed form does.
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  requireFloat('attention', q);
  const T = q.shape[q.ndim - 2];
  const S = k.shape[k.ndim - 2];
  const hs = q.shape[q.ndim - 1];
  if (
    q.ndim < 2 ||
    !sameShape(k.shape, v.shape) ||
    k.ndim !== q.ndim ||
    k.shape[k.ndim - 1] !== hs ||
    !sameShape(q.shape.slice(0, -2), k.shape.slice(0, -2)) ||
    T > S
  ) {
    throw new Error(
      `attention: expected q [..., T, hs] and k, v [..., S, hs] with T <= S, got q ${fmt(q.shape)} k ${fmt(k.shape)} ` +
        `v ${fmt(v.shape)}`,
    );
  }
  sameDevice('attention', q, k, v, ...(opts.keyBias ? [opts.keyBias] : []));
  for (const t of [k, v])
    if (t.dtype !== q.dtype)
      throw new Error(`attention: q, k, v must share a dtype, got ${q.dtype}, ${k.dtype}, ${v.dtype}`);
  const scale = opts.scale ?? 1 / Math.sqrt(hs);
  const keyBias = opts.keyBias;
  if (keyBias && (q.ndim < 3 || !sameShape(keyBias.shape, [q.shape[0], S]) || keyBias.dtype !== q.dtype)) {
    throw new Error(
      `attention: keyBias must be [${q.shape[0]}, ${S}] ${q.dtype} for q ${fmt(q.shape)} and ${S} keys (q of rank >= ` +
        `3), got ${fmt(keyBias.shape)} ${keyBias.dtype}`,
    );
  }
  const kf = kernel(q, 'attention');
  const kvLen = opts.kvLen ?? S;
  if (!Number.isInteger(kvLen) || kvLen < T || kvLen > S)
    throw new Error(
      `attention: kvLen ${opts.kvLen} must be an integer in [${T}, ${S}] for q ${fmt(q.shape)} k ${fmt(k.shape)}`,
    );
  if (kvLen < S) {
    const recorded = isGradEnabled() && [q, k, v].some((t) => t.requiresGrad);
    if (kf && !recorded) {
      const r = kf(q, k, v, scale, keyBias, kvLen);
      q.backend.free(r.lse, q.dtype); // no backward will read it
      return fromHandle('attention', q.backend, r.out, q.shape, q.dtype);
    }
    const used = (t: Tensor) => ops.narrow(t, -2, 0, kvLen);
    return scaledDotProductAttention(q, used(k), used(v), {
      scale,
      ...(keyBias ? { keyBias: ops.narrow(keyBias, 1, 0, kvLen) } : {}),
    });
  }
  let out: Tensor;
  let lse: Tensor;
  const lseShape = q.shape.slice(0, -1);
  if (kf) {
    const r = kf(q, k, v, scale, keyBias);
    out = fromHandle('attention', q.backend, r.out, q.shape, q.dtype);
    lse = fromHandle('attention', q.backend, r.lse, lseShape, q.dtype);
  } else {
    [out, lse] = noGrad(() => {
      const s = scores(q, k, scale, keyBias); // (..., T, S)
      const l = ops.logsumexp(s, -1, true);
      return [ops.matmul(ops.exp(ops.sub(s, l)), v), ops.reshape(l, lseShape)];
    });
  }
  return record(out, 'attention', [q, k, v], (g) => {
    const r = attentionBackward(q, k, v, out, lse, g, scale, keyBias);
    return [r.dq, r.dk, r.dv];
  });
}

/** The masked, scaled scores q k^T * scale + causal mask (+ keyBias): (..., T, S). Composed path only. */
function scores(q: Tensor, k: Tensor, scale: number, keyBias: Tensor | undefined): Tensor {
  const T = q.shape[q.ndim - 2];
  const S = k.shape[k.ndim - 2];
  const s = ops.add(ops.mul(ops.matmulT(q, k, false, true), scale), causalMask(T, S, q));
  if (!keyBias) return s;
  const b = ops.reshape(keyBias, [q.shape[0], ...new Array<number>(q.ndim - 2).fill(1), S]);
  return ops.add(s, b);
}

function attentionBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  out: Tensor,
  lse: Tensor,
  dout: Tensor,
  scale: number,
  keyBias: Tensor | undefined,
): { dq: Tensor; dk: Tensor; dv: Tensor } {
  const kb = kernel(q, 'attentionBackward');
  if (kb) {
    const r = kb(q, k, v, out, lse, dout, scale, keyBias);
    const wrap = (h: unknown, like: Tensor) => fromHandle('attentionBackward', q.backend, h, like.shape, like.dtype);
    return { dq: wrap(r.dq, q), dk: wrap(r.dk, k), dv: wrap(r.dv, v) };
  }
  // P is recomputed from the saved logsumexp, as a flash kernel would: P = exp(s - lse).
  const s = scores(q, k, scale, keyBias);
  const p = ops.exp(ops.sub(s, ops.unsqueeze(lse, -1))); // (..., T, S)
  const dv = ops.matmulT(p, dout, true, false); // P^T dO
  const dp = ops.matmulT(dout, v, false, true); // dO V^T
  const D = ops.sum(ops.mul(dout, out), -1, true); // rowsum(dO * O)
  const ds = ops.mul(ops.mul(p, ops.sub(dp, D)), scale);
  return { dq: ops.matmul(ds, k), dk: ops.matmulT(ds, q, true, false), dv };
}

// ---------------------------------------------------------------------------------------------------
// Norms over the last axis.

function normParams(
  op: string,
  x: Tensor,
  weight: Tensor | undefined,
  bias: Tensor | undefined,
  hasBias: boolean,
): [Tensor, Tensor | undefined] {
  requireFloat(op, x);
  sameDevice(op, x, ...(weight ? [weight] : []), ...(bias ? [bias] : []));
  const C = x.shape[x.ndim - 1];
  const w = weight ?? full([C], 1, { dtype: x.dtype, device: x.device });
  // RMSNorm has no bias: a zero one would cost a fill kernel per call on a GPU.
  const b = hasBias ? (bias ?? full([C], 0, { dtype: x.dtype, device: x.device })) : undefined;
  for (const [name, p] of [
    ['weight', w],
    ['bias', b],
  ] as const) {
    if (p && (!sameShape(p.shape, [C]) || p.dtype !== x.dtype))
      throw new Error(`${op}: ${name} ${fmt(p.shape)} ${p.dtype} must be [${C}] ${x.dtype} for input ${fmt(x.shape)}`);
  }
  return [w, b];
}

/** LayerNorm over the last axis: (x - mean) * rstd * weight + bias (weight and bias optional). */
export function layerNorm(x: Tensor, weight?: Tensor, bias?: Tensor, eps = 1e-5): Tensor {
  const [w, maybeBias] = normParams('layerNorm', x, weight, bias, true);
  const b = maybeBias!;
  const rows = x.shape.slice(0, -1);
  const kf = kernel(x, 'layerNorm');
  let y: Tensor, mean: Tensor, rstd: Tensor;
  if (kf) {
    const r = kf(x, w, b, eps);
    y = fromHandle('layerNorm', x.backend, r.y, x.shape, x.dtype);
    mean = fromHandle('layerNorm', x.backend, r.mean, rows, x.dtype);
    rstd = fromHandle('layerNorm', x.backend, r.rstd, rows, x.dtype);
  } else {
    [y, mean, rstd] = noGrad(() => {
      const mu = ops.mean(x, -1, true);
      const xc = ops.sub(x, mu);
      const rs = ops.rsqrt(ops.add(ops.mean(ops.mul(xc, xc), -1, true), eps));
      return [ops.add(ops.mul(ops.mul(xc, rs), w), b), ops.reshape(mu, rows), ops.reshape(rs, rows)];
    });
  }
  return record(y, 'layerNorm', [x, w, b], (g) => {
    const kb = kernel(x, 'layerNormBackward');
    if (kb) {
      const r = kb(x, w, mean, rstd, g);
      return [
        fromHandle('layerNormBackward', x.backend, r.dx, x.shape, x.dtype),
        fromHandle('layerNormBackward', x.backend, r.dweight, w.shape, x.dtype),
        fromHandle('layerNormBackward', x.backend, r.dbias, w.shape, x.dtype),
      ];
    }
    const rs = ops.unsqueeze(rstd, -1);
    const xhat = ops.mul(ops.sub(x, ops.unsqueeze(mean, -1)), rs);
    const dxhat = ops.mul(g, w);
    const dx = ops.mul(
      rs,
      ops.sub(ops.sub(dxhat, ops.mean(dxhat, -1, true)), ops.mul(xhat, ops.mean(ops.mul(dxhat, xhat), -1, true))),
    );
    return [dx, ops.sumTo(ops.mul(g, xhat), w.shape), ops.sumTo(g, w.shape)];
  });
}

/** RMSNorm over the last axis: x * rsqrt(mean(x^2) + eps) * weight (weight optional). */
export function rmsNorm(x: Tensor, weight?: Tensor, eps = 1e-6): Tensor {
  const [w] = normParams('rmsNorm', x, weight, undefined, false);
  const rows = x.shape.slice(0, -1);
  const kf = kernel(x, 'rmsNorm');
  let y: Tensor, rstd: Tensor;
  if (kf) {
    const r = kf(x, w, eps);
    y = fromHandle('rmsNorm', x.backend, r.y, x.shape, x.dtype);
    rstd = fromHandle('rmsNorm', x.backend, r.rstd, rows, x.dtype);
  } else {
    [y, rstd] = noGrad(() => {
      const rs = ops.rsqrt(ops.add(ops.mean(ops.mul(x, x), -1, true), eps));
      return [ops.mul(ops.mul(x, rs), w), ops.reshape(rs, rows)];
    });
  }
  return recordRmsNorm(y, x, w, rstd);
}

/** Puts y = rmsNorm(x, w) on the tape: its backward from the saved rstd (fused where the backend has it). */
function recordRmsNorm(y: Tensor, x: Tensor, w: Tensor, rstd: Tensor): Tensor {
  return record(y, 'rmsNorm', [x, w], (g) => {
    const kb = kernel(x, 'rmsNormBackward');
    if (kb) {
      const r = kb(x, w, rstd, g);
      return [
        fromHandle('rmsNormBackward', x.backend, r.dx, x.shape, x.dtype),
        fromHandle('rmsNormBackward', x.backend, r.dweight, w.shape, x.dtype),
      ];
    }
    const rs = ops.unsqueeze(rstd, -1);
    const xhat = ops.mul(x, rs);
    const dxhat = ops.mul(g, w);
    const dx = ops.mul(rs, ops.sub(dxhat, ops.mul(xhat, ops.mean(ops.mul(dxhat, xhat), -1, true))));
    return [dx, ops.sumTo(ops.mul(g, xhat), w.shape)];
  });
}

/**
 * The pre-norm residual step: sum = x + r and rmsNorm(sum, weight), in one kernel where the backend has
 * it. The tape sees the two ops it replaces (an add and an RMSNorm), so gradients are theirs; without the
 * kernel it is exactly those two ops.
 */
export function addRmsNorm(x: Tensor, r: Tensor, weight: Tensor, eps = 1e-6): [sum: Tensor, y: Tensor] {
  const kf = kernel(x, 'addRmsNorm');
  if (!kf) {
    const sum = ops.add(x, r);
    return [sum, rmsNorm(sum, weight, eps)];
  }
  const [w] = normParams('addRmsNorm', x, weight, undefined, false);
  sameDevice('addRmsNorm', x, r);
  if (!sameShape(x.shape, r.shape) || r.dtype !== x.dtype)
    throw new Error(`addRmsNorm: r ${fmt(r.shape)} ${r.dtype} must match x ${fmt(x.shape)} ${x.dtype}`);
  const out = kf(x, r, w, eps);
  const sum = record(fromHandle('addRmsNorm', x.backend, out.sum, x.shape, x.dtype), 'add', [x, r], (g) => [g, g]);
  const y = fromHandle('addRmsNorm', x.backend, out.y, x.shape, x.dtype);
  const rstd = fromHandle('addRmsNorm', x.backend, out.rstd, x.shape.slice(0, -1), x.dtype);
  return [sum, recordRmsNorm(y, sum, w, rstd)];
}

// ---------------------------------------------------------------------------------------------------
// Attention's inputs.

/**
 * q, k, v for attention: h (B, T, C) times wq, wk, wv (C, C), split into nHead heads (B, nh, T, hs), q and
 * k rotated by RoPE (half-split: x1 cos - x2 sin, x1 sin + x2 cos) with each token's angles in cos and
 * sin (B, T, hs/2), which are constants (no gradient reaches them). The projections are matmuls on every
 * backend; the split and both rotations are one kernel where the backend has ropeHeads.
 */
export function qkvHeads(
  h: Tensor,
  wq: Tensor,
  wk: Tensor,
  wv: Tensor,
  cos: Tensor,
  sin: Tensor,
  nHead: number,
): [q: Tensor, k: Tensor, v: Tensor] {
  requireFloat('qkvHeads', h);
  sameDevice('qkvHeads', h, wq, wk, wv, cos, sin);
  const [B, T, C] = h.shape;
  const hs = C / nHead;
  if (h.ndim !== 3 || !Number.isInteger(hs) || hs % 2 !== 0)
    throw new Error(`qkvHeads: h ${fmt(h.shape)} must be (B, T, C) with C = ${nHead} heads of an even size`);
  for (const t of [cos, sin])
    if (!sameShape(t.shape, [B, T, hs / 2]) || t.dtype !== h.dtype)
      throw new Error(
        `qkvHeads: cos and sin must be [${B}, ${T}, ${hs / 2}] ${h.dtype}, got ${fmt(t.shape)} ${t.dtype}`,
      );
  const kf = kernel(h, 'ropeHeads');
  const kb = kernel(h, 'ropeHeadsBackward');
  if (!kf || !kb) return composedQkvHeads(h, wq, wk, wv, cos, sin, nHead);
  const ql = ops.matmul(h, wq); // (B, T, C)
  const kl = ops.matmul(h, wk);
  const vl = ops.matmul(h, wv);
  const r = kf(ql, kl, vl, cos, sin, nHead);
  const shape = [B, nHead, T, hs];
  const wrap = (handle: unknown) => fromHandle('ropeHeads', h.backend, handle, shape, h.dtype);
  const unrotate = (g: Tensor) => [fromHandle('ropeHeadsBackward', h.backend, kb(g, cos, sin), [B, T, C], h.dtype)];
  return [
    record(wrap(r.q), 'ropeHeads', [ql], unrotate),
    record(wrap(r.k), 'ropeHeads', [kl], unrotate),
    record(wrap(r.v), 'ropeHeads', [vl], (g) => [ops.reshape(ops.transpose(g, 1, 2), [B, T, C])]),
  ];
}

/** qkvHeads in primitive ops: the decoder's original lines, whose sums a backend without the kernel keeps. */
function composedQkvHeads(
  h: Tensor,
  wq: Tensor,
  wk: Tensor,
  wv: Tensor,
  cos: Tensor,
  sin: Tensor,
  nHead: number,
): [Tensor, Tensor, Tensor] {
  const [B, T, C] = h.shape;
  const hs = C / nHead;
  const heads = (w: Tensor) => ops.transpose(ops.reshape(ops.matmul(h, w), [B, T, nHead, hs]), 1, 2); // (B, nh, T, hs)
  return [rope(heads(wq), cos, sin), rope(heads(wk), cos, sin), heads(wv)];
}

/**
 * RoPE on heads x (B, H, T, hs) with each token's angles in cos and sin (B, T, hs/2), half-split as
 * qkvHeads rotates: x1 cos - x2 sin, x1 sin + x2 cos (Hugging Face's rotate_half form). In primitive ops,
 * for heads qkvHeads does not make (grouped-query attention's fewer key heads, projections with biases).
 */
export function rope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
  const [B, , T, hs] = x.shape;
  const half = hs / 2;
  if (x.ndim !== 4 || hs % 2 !== 0 || !sameShape(cos.shape, [B, T, half]) || !sameShape(sin.shape, [B, T, half]))
    throw new Error(
      `rope: x ${fmt(x.shape)} must be (B, H, T, hs) with hs even, cos and sin (B, T, hs/2); got ` +
        `${fmt(cos.shape)}, ${fmt(sin.shape)}`,
    );
  const c = ops.reshape(cos, [B, 1, T, half]);
  const s = ops.reshape(sin, [B, 1, T, half]);
  const x1 = ops.narrow(x, -1, 0, half);
  const x2 = ops.narrow(x, -1, half, half);
  return ops.cat([ops.sub(ops.mul(x1, c), ops.mul(x2, s)), ops.add(ops.mul(x1, s), ops.mul(x2, c))], -1);
}
