// The CPU's fused kernels: straightforward loops with float64 accumulators, written to be read.
// They are the references for the WGSL kernels, and are themselves tested against the composed ops.
// Float32 RMSNorm and AdamW run the same operations in WebAssembly (fused-wasm.ts), with the same results.

import type { AdamWParams, FusedKernels, View } from '../backend.js';
import { arrayFor, type TypedArray } from '../dtype.js';
import { fmt, sizeOf } from '../shape.js';
import { wasmAdamW, wasmRmsNorm } from './fused-wasm.js';
import { heapFloat32 } from './heap.js';
import { matmulCpu } from './matmul.js';

const arr = (v: View) => v.handle as TypedArray;
const last = (v: View) => v.shape[v.shape.length - 1];
const like = (v: View, n = sizeOf(v.shape)) => arrayFor(v.dtype, n);
const isF32 = (a: TypedArray): a is Float32Array => a instanceof Float32Array;
/** Storage for an output written in full: float32 from the shared memory's pool (heap.ts), no page faults. */
const likeFull = (v: View, n = sizeOf(v.shape)) => (v.dtype === 'float32' ? heapFloat32(n) : like(v, n));

/**
 * Row [base, base + C)'s max m (0 when it is not finite) and log sum exp(x - m): log-softmax is then
 * (x - m) - ls, subtracted in that order so that huge tied values (1e30, 1e30) keep their log(1/n), which
 * x - (m + ls) would round away. A row of -Infinity has ls -Infinity.
 */
function rowStats(x: TypedArray, base: number, C: number): { m: number; ls: number } {
  let m = -Infinity;
  for (let j = 0; j < C; j++) m = Math.max(m, x[base + j]);
  const shift = Number.isFinite(m) ? m : 0;
  let s = 0;
  for (let j = 0; j < C; j++) s += Math.exp(x[base + j] - shift);
  return { m: shift, ls: Math.log(s) };
}

function checkTarget(t: number, V: number): void {
  if (t >= V) throw new Error(`targetLogProb: target ${t} is out of range for ${V} classes`);
}

type Floats = Float32Array | Float64Array;

/** Up to this many query rows per head, attention takes plain loops (attentionFewRows), not the matmul. */
export const FEW_ROWS = 4;

/** The forward's probabilities, keyed by the lse array it returned, with the inputs they belong to. */
const savedProbs = new WeakMap<
  TypedArray,
  { q: TypedArray; k: TypedArray; keyBias: TypedArray | undefined; scale: number; p: Floats }
>();

/** P from the saved logsumexp: p = exp(s * scale + bias - lse), 0 where masked. */
function recomputeProbs(
  q: View,
  k: View,
  lse: View,
  scale: number,
  keyBias: View | undefined,
  sShape: number[],
): Floats {
  const { T, S } = attnDims(q, k);
  const p = matmulCpu(q, k, false, true, sShape) as Floats;
  const L = arr(lse);
  const bias = keyBias && arr(keyBias);
  const perBias = sizeOf(q.shape.slice(0, -2)) / q.shape[0];
  forEachScoreRow(p, T, S, (row, base, i, b) => {
    const lim = L[row] === -Infinity ? -1 : S - T + i;
    const bo = bias ? Math.floor(b / perBias) * S : 0;
    for (let j = 0; j <= lim; j++) p[base + j] = Math.exp(p[base + j] * scale + (bias ? bias[bo + j] : 0) - L[row]);
    p.fill(0, base + lim + 1, base + S);
  });
  return p;
}

/** Calls fn(row, base, i, b) for each (T, S) score row: row = b * T + i, base = row * S. */
function forEachScoreRow(
  s: Floats,
  T: number,
  S: number,
  fn: (row: number, base: number, i: number, b: number) => void,
): void {
  const rows = s.length / S;
  for (let row = 0; row < rows; row++) fn(row, row * S, row % T, Math.floor(row / T));
}

/**
 * Scores -> probabilities in place: scale, add keyBias, hide keys past S - T + i, softmax; writes each
 * row's logsumexp. A row with no visible key becomes all 0 with lse -Infinity.
 */
function maskedSoftmax(
  s: Floats,
  T: number,
  S: number,
  scale: number,
  bias: TypedArray | undefined,
  perBias: number,
  lse: TypedArray,
): void {
  forEachScoreRow(s, T, S, (row, base, i, b) => {
    const lim = S - T + i; // keys past it are in the causal future: probability 0, no exp taken
    const bo = bias ? Math.floor(b / perBias) * S : 0;
    let m = -Infinity;
    let nan = false;
    for (let j = 0; j <= lim; j++) {
      const z = s[base + j] * scale + (bias ? bias[bo + j] : 0);
      s[base + j] = z;
      if (z > m) m = z;
      else if (Number.isNaN(z)) nan = true;
    }
    s.fill(0, base + lim + 1, base + S);
    if (nan) {
      // A NaN score (a NaN query or key) makes the row NaN, as the composed softmax does.
      s.fill(NaN, base, base + lim + 1);
      lse[row] = NaN;
      return;
    }
    if (m === -Infinity) {
      s.fill(0, base, base + S);
      lse[row] = -Infinity;
      return;
    }
    let l = 0;
    for (let j = 0; j <= lim; j++) l += s[base + j] = Math.exp(s[base + j] - m);
    for (let j = 0; j <= lim; j++) s[base + j] /= l;
    lse[row] = m + Math.log(l);
  });
}

/**
 * Per (batch, head) matrix views of q [..., T, hs] and k, v [..., cap, hs]: S keys attended, the first S
 * of cap rows (S = cap unless a kvLen says otherwise).
 */
function attnDims(q: View, k: View, kvLen?: number) {
  const r = q.shape.length;
  const T = q.shape[r - 2];
  const hs = q.shape[r - 1];
  const cap = k.shape[r - 2];
  const B = sizeOf(q.shape.slice(0, -2));
  return { B, T, S: kvLen ?? cap, cap, hs };
}

/**
 * Attention for a few query rows (decoding one token on a KV cache): plain loops over each (batch,
 * head), since the matmul route would make two tiny products per head. Same masking and outputs as the
 * general route; p receives the probabilities.
 */
function attentionFewRows(
  q: View,
  k: View,
  v: View,
  scale: number,
  keyBias: View | undefined,
  p: Floats,
  out: Floats,
  lse: TypedArray,
  kvLen?: number,
): void {
  const { B, T, S, cap, hs } = attnDims(q, k, kvLen);
  const [Q, K, Vv] = [arr(q), arr(k), arr(v)];
  const bias = keyBias && arr(keyBias);
  const perBias = B / q.shape[0];
  const acc = new Float64Array(hs);
  for (let bh = 0; bh < B; bh++) {
    const kv = bh * cap * hs;
    const bo = bias ? Math.floor(bh / perBias) * cap : 0;
    for (let i = 0; i < T; i++) {
      const row = bh * T + i;
      const [base, qo, lim] = [row * S, row * hs, S - T + i];
      let m = -Infinity;
      let nan = false;
      for (let j = 0; j <= lim; j++) {
        let dot = 0;
        for (let d = 0, ko = kv + j * hs; d < hs; d++) dot += Q[qo + d] * K[ko + d];
        const z = dot * scale + (bias ? bias[bo + j] : 0);
        p[base + j] = z;
        if (z > m) m = z;
        else if (Number.isNaN(z)) nan = true;
      }
      p.fill(0, base + lim + 1, base + S);
      acc.fill(0);
      if (nan) {
        p.fill(NaN, base, base + lim + 1);
        acc.fill(NaN);
        lse[row] = NaN;
      } else if (m === -Infinity) {
        p.fill(0, base, base + S);
        lse[row] = -Infinity;
      } else {
        let l = 0;
        for (let j = 0; j <= lim; j++) l += p[base + j] = Math.exp(p[base + j] - m);
        for (let j = 0; j <= lim; j++) {
          const pj = (p[base + j] /= l);
          if (pj !== 0) for (let d = 0, vo = kv + j * hs; d < hs; d++) acc[d] += pj * Vv[vo + d];
        }
        lse[row] = m + Math.log(l);
      }
      for (let d = 0; d < hs; d++) out[qo + d] = acc[d];
    }
  }
}

/**
 * The matmul route of attention on the first S rows of k and v [..., cap, hs] (and keyBias [B0, cap]) in
 * place: per (batch, head) the two matmuls on subarray views, and the softmax on a compacted keyBias.
 */
function attentionInCache(
  q: View,
  k: View,
  v: View,
  scale: number,
  keyBias: View | undefined,
  S: number,
): { out: Floats; lse: TypedArray } {
  const { B, T, cap, hs } = attnDims(q, k, S);
  const [Q, K, Vv] = [arr(q), arr(k), arr(v)] as Floats[];
  const p = like(q, B * T * S) as Floats;
  const out = like(q) as Floats;
  const lse = like(q, B * T);
  const head = (x: Floats, off: number, rows: number, cols: number): View => ({
    handle: x.subarray(off, off + rows * cols),
    shape: [rows, cols],
    dtype: q.dtype,
  });
  for (let bh = 0; bh < B; bh++)
    p.set(matmulCpu(head(Q, bh * T * hs, T, hs), head(K, bh * cap * hs, S, hs), false, true, [T, S]), bh * T * S);
  let bias: TypedArray | undefined;
  if (keyBias) {
    const kb = arr(keyBias);
    bias = like(keyBias, q.shape[0] * S);
    for (let b0 = 0; b0 < q.shape[0]; b0++) bias.set(kb.subarray(b0 * cap, b0 * cap + S), b0 * S);
  }
  maskedSoftmax(p, T, S, scale, bias, B / q.shape[0], lse);
  for (let bh = 0; bh < B; bh++)
    out.set(matmulCpu(head(p, bh * T * S, T, S), head(Vv, bh * cap * hs, S, hs), false, false, [T, hs]), bh * T * hs);
  return { out, lse };
}

export const cpuFused: FusedKernels = {
  logSoftmax(x) {
    const src = arr(x);
    const C = last(x);
    const out = likeFull(x);
    for (let base = 0; base < src.length; base += C) {
      const { m, ls } = rowStats(src, base, C);
      for (let j = 0; j < C; j++) out[base + j] = src[base + j] - m - ls;
    }
    return out;
  },

  logSoftmaxBackward(y, dy) {
    const Y = arr(y);
    const D = arr(dy);
    const C = last(y);
    const out = likeFull(y);
    for (let base = 0; base < Y.length; base += C) {
      let s = 0;
      for (let j = 0; j < C; j++) s += D[base + j];
      for (let j = 0; j < C; j++) out[base + j] = D[base + j] - Math.exp(Y[base + j]) * s;
    }
    return out;
  },

  targetLogProb(logits, targets) {
    const X = arr(logits);
    const t = arr(targets);
    const V = last(logits);
    const out = like(logits, t.length);
    for (let r = 0; r < t.length; r++) {
      if (t[r] < 0) continue;
      checkTarget(t[r], V);
      const { m, ls } = rowStats(X, r * V, V);
      out[r] = X[r * V + t[r]] - m - ls;
    }
    return out;
  },

  targetLogProbBackward(logits, targets, dout) {
    const X = arr(logits);
    const t = arr(targets);
    const d = arr(dout);
    const V = last(logits);
    const out = like(logits);
    for (let r = 0; r < t.length; r++) {
      if (t[r] < 0) continue;
      checkTarget(t[r], V);
      const base = r * V;
      const { m, ls } = rowStats(X, base, V);
      // d log p(t) / d logit_j = onehot_j - softmax_j
      for (let j = 0; j < V; j++) out[base + j] = -Math.exp(X[base + j] - m - ls) * d[r];
      out[base + t[r]] += d[r];
    }
    return out;
  },

  // Attention materialises the (T, S) score matrix of each batch row and leans on the CPU matmul: on
  // a CPU memory is plentiful and the matmul is the fast path. The WebGPU kernel is the flash-style one.
  // The probabilities stay attached to the returned lse (savedProbs), so that the backward of the same
  // call skips recomputing them; the garbage collector drops them with the lse.
  // With kvLen (keys in a KV cache of larger capacity, forward only), few rows read the cache in place and
  // more rows run the same matmuls per (batch, head) on views of the used rows: the same sums in the same
  // order as on a cache holding exactly those rows.
  attention(q, k, v, scale, keyBias, kvLen) {
    const { T, S, cap } = attnDims(q, k, kvLen);
    const sShape = [...q.shape.slice(0, -1), S];
    let p: Floats;
    let out: Floats;
    let lse: TypedArray;
    if (T <= FEW_ROWS) {
      [p, out] = [like(q, sizeOf(sShape)) as Floats, like(q) as Floats];
      lse = like(q, p.length / S);
      attentionFewRows(q, k, v, scale, keyBias, p, out, lse, kvLen);
      if (S < cap) return { out, lse };
    } else if (S < cap) {
      return attentionInCache(q, k, v, scale, keyBias, S);
    } else {
      p = matmulCpu(q, k, false, true, sShape) as Floats; // (..., T, S) scores, then probabilities
      lse = like(q, p.length / S);
      maskedSoftmax(p, T, S, scale, keyBias && arr(keyBias), sizeOf(q.shape.slice(0, -2)) / q.shape[0], lse);
      out = matmulCpu({ handle: p, shape: sShape, dtype: q.dtype }, v, false, false, q.shape) as Floats;
    }
    savedProbs.set(lse, { q: arr(q), k: arr(k), keyBias: keyBias && arr(keyBias), scale, p });
    return { out, lse };
  },

  attentionBackward(q, k, v, o, lse, dout, scale, keyBias) {
    const { T, S, hs } = attnDims(q, k);
    const sShape = [...q.shape.slice(0, -1), S];
    const saved = savedProbs.get(arr(lse));
    const p =
      saved &&
      saved.q === arr(q) &&
      saved.k === arr(k) &&
      saved.keyBias === (keyBias && arr(keyBias)) &&
      saved.scale === scale
        ? saved.p
        : recomputeProbs(q, k, lse, scale, keyBias, sShape);
    const P = { handle: p, shape: sShape, dtype: q.dtype };
    const dv = matmulCpu(P, dout, true, false, v.shape); // P^T dO
    const ds = matmulCpu(dout, v, false, true, sShape) as Floats; // dP = dO V^T, turned into dS in place
    const [O, dO] = [arr(o), arr(dout)];
    forEachScoreRow(ds, T, S, (row, base) => {
      let D = 0; // rowsum(dO * O)
      for (let d = 0; d < hs; d++) D += dO[row * hs + d] * O[row * hs + d];
      for (let j = 0; j < S; j++) ds[base + j] = p[base + j] === 0 ? 0 : p[base + j] * (ds[base + j] - D) * scale;
    });
    const dS = { handle: ds, shape: sShape, dtype: q.dtype };
    return { dq: matmulCpu(dS, k, false, false, q.shape), dk: matmulCpu(dS, q, true, false, k.shape), dv };
  },

  layerNorm(x, weight, bias, eps) {
    const [X, W, Bb] = [arr(x), arr(weight), arr(bias)];
    const C = last(x);
    const rows = X.length / C;
    const y = like(x);
    const mean = like(x, rows);
    const rstd = like(x, rows);
    for (let r = 0; r < rows; r++) {
      const base = r * C;
      let mu = 0;
      for (let j = 0; j < C; j++) mu += X[base + j];
      mu /= C;
      let varr = 0;
      for (let j = 0; j < C; j++) varr += (X[base + j] - mu) ** 2;
      const rs = 1 / Math.sqrt(varr / C + eps);
      for (let j = 0; j < C; j++) y[base + j] = (X[base + j] - mu) * rs * W[j] + Bb[j];
      mean[r] = mu;
      rstd[r] = rs;
    }
    return { y, mean, rstd };
  },

  layerNormBackward(x, weight, mean, rstd, dy) {
    const [X, W, M, R, D] = [arr(x), arr(weight), arr(mean), arr(rstd), arr(dy)];
    const C = last(x);
    const rows = X.length / C;
    const dx = like(x);
    const dw = new Float64Array(C);
    const db = new Float64Array(C);
    for (let r = 0; r < rows; r++) {
      const base = r * C;
      let m1 = 0;
      let m2 = 0;
      for (let j = 0; j < C; j++) {
        const xhat = (X[base + j] - M[r]) * R[r];
        const dxhat = D[base + j] * W[j];
        m1 += dxhat;
        m2 += dxhat * xhat;
        dw[j] += D[base + j] * xhat;
        db[j] += D[base + j];
      }
      m1 /= C;
      m2 /= C;
      for (let j = 0; j < C; j++) {
        const xhat = (X[base + j] - M[r]) * R[r];
        dx[base + j] = R[r] * (D[base + j] * W[j] - m1 - xhat * m2);
      }
    }
    const dweight = like(weight);
    const dbias = like(weight);
    dweight.set(dw);
    dbias.set(db);
    return { dx, dweight, dbias };
  },

  rmsNorm(x, weight, eps) {
    const [X, W] = [arr(x), arr(weight)];
    const C = last(x);
    const fast = isF32(X) && isF32(W) && wasmRmsNorm(X, W, C, eps);
    if (fast) return fast;
    const rows = X.length / C;
    const y = like(x);
    const rstd = like(x, rows);
    for (let r = 0; r < rows; r++) {
      const base = r * C;
      let ms = 0;
      for (let j = 0; j < C; j++) ms += X[base + j] * X[base + j];
      const rs = 1 / Math.sqrt(ms / C + eps);
      for (let j = 0; j < C; j++) y[base + j] = X[base + j] * rs * W[j];
      rstd[r] = rs;
    }
    return { y, rstd };
  },

  rmsNormBackward(x, weight, rstd, dy) {
    const [X, W, R, D] = [arr(x), arr(weight), arr(rstd), arr(dy)];
    const C = last(x);
    const rows = X.length / C;
    const dx = like(x);
    const dw = new Float64Array(C);
    for (let r = 0; r < rows; r++) {
      const base = r * C;
      let m2 = 0;
      for (let j = 0; j < C; j++) {
        const xhat = X[base + j] * R[r];
        m2 += D[base + j] * W[j] * xhat;
        dw[j] += D[base + j] * xhat;
      }
      m2 /= C;
      for (let j = 0; j < C; j++) dx[base + j] = R[r] * (D[base + j] * W[j] - X[base + j] * R[r] * m2);
    }
    const dweight = like(weight);
    dweight.set(dw);
    return { dx, dweight };
  },

  adamw(param, grad, m, v, hp: AdamWParams) {
    const [P, G, Mm, Vv] = [arr(param), arr(grad), arr(m), arr(v)];
    if (P.length !== G.length)
      throw new Error(`adamw: grad ${fmt(grad.shape)} does not match param ${fmt(param.shape)}`);
    const { lr, beta1, beta2, eps, weightDecay, step } = hp;
    const bc1 = 1 - beta1 ** step;
    const bc2 = 1 - beta2 ** step;
    const wasmHp = { ...hp, decay: 1 - lr * weightDecay, bc1, bc2 };
    if (isF32(P) && isF32(G) && isF32(Mm) && isF32(Vv) && wasmAdamW(P, G, Mm, Vv, wasmHp)) return;
    for (let i = 0; i < P.length; i++) {
      const g = G[i];
      Mm[i] = beta1 * Mm[i] + (1 - beta1) * g;
      Vv[i] = beta2 * Vv[i] + (1 - beta2) * g * g;
      const p = P[i] * (1 - lr * weightDecay);
      P[i] = p - (lr * (Mm[i] / bc1)) / (Math.sqrt(Vv[i] / bc2) + eps);
    }
  },
};
