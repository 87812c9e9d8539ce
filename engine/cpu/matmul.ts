// CPU matmul: batched over broadcast leading axes, either operand transposed. op(A) is packed into
// panels of 4 rows and op(B) into panels of 8 columns, both k-major, and a 4x8 kernel keeps its 32 sums
// in locals over all of K. Not a BLAS: V8 emits scalar code, so register blocking pays and cache blocking barely does.
// float32 runs the same tiles in WebAssembly SIMD (wasm-gemm.ts) when the runtime has it.

import { arrayFor, type DType, type TypedArray } from '../dtype.js';
import { broadcastStrides, sizeOf, type Shape } from '../shape.js';
import type { View } from '../backend.js';
import { stridedOffsets } from './strided.js';
import { wasmBuffers, wasmGemm, wasmGemmAvailable, wasmPack } from './wasm-gemm.js';

type Floats = Float32Array | Float64Array;

/** Rows of C per micro-tile (rows of an A panel) and columns (columns of a B panel). */
const MR = 4;
const NR = 8;

/**
 * Packs op(X) [R, K], whose element (r, k) sits at off + r*rs + k*ks, into panels of P rows:
 * dst[(r/P)*K*P + k*P + r%P], zero-padded past R, so a kernel reads each panel front to back.
 * When k is not the contiguous axis, k goes in tiles of 32 across all panels, so the source rows
 * touched stay in L1 instead of striding through a page per element.
 */
function packPanels(
  x: Floats,
  off: number,
  R: number,
  K: number,
  rs: number,
  ks: number,
  P: number,
  dst: Floats,
): void {
  const KT = ks === 1 ? K : 32;
  for (let k0 = 0; k0 < K; k0 += KT) {
    const k1 = Math.min(K, k0 + KT);
    for (let r0 = 0, d0 = 0; r0 < R; r0 += P, d0 += K * P) {
      const h = Math.min(P, R - r0);
      for (let k = k0; k < k1; k++) {
        const s = off + r0 * rs + k * ks;
        const d = d0 + k * P;
        let p = 0;
        for (; p < h; p++) dst[d + p] = x[s + p * rs];
        for (; p < P; p++) dst[d + p] = 0;
      }
    }
  }
}

/** C[i0 : i0+MR, j0 : j0+NR] (clipped to M x N) = A panel at pa times B panel at pb, summed over K. */
function kernel4x8(
  Ap: Floats,
  pa: number,
  Bp: Floats,
  pb: number,
  K: number,
  C: Floats,
  cOff: number,
  i0: number,
  j0: number,
  M: number,
  N: number,
): void {
  let c00 = 0,
    c01 = 0,
    c02 = 0,
    c03 = 0,
    c04 = 0,
    c05 = 0,
    c06 = 0,
    c07 = 0;
  let c10 = 0,
    c11 = 0,
    c12 = 0,
    c13 = 0,
    c14 = 0,
    c15 = 0,
    c16 = 0,
    c17 = 0;
  let c20 = 0,
    c21 = 0,
    c22 = 0,
    c23 = 0,
    c24 = 0,
    c25 = 0,
    c26 = 0,
    c27 = 0;
  let c30 = 0,
    c31 = 0,
    c32 = 0,
    c33 = 0,
    c34 = 0,
    c35 = 0,
    c36 = 0,
    c37 = 0;
  for (let k = 0; k < K; k++, pa += MR, pb += NR) {
    const b0 = Bp[pb],
      b1 = Bp[pb + 1],
      b2 = Bp[pb + 2],
      b3 = Bp[pb + 3];
    const b4 = Bp[pb + 4],
      b5 = Bp[pb + 5],
      b6 = Bp[pb + 6],
      b7 = Bp[pb + 7];
    let a = Ap[pa];
    c00 += a * b0;
    c01 += a * b1;
    c02 += a * b2;
    c03 += a * b3;
    c04 += a * b4;
    c05 += a * b5;
    c06 += a * b6;
    c07 += a * b7;
    a = Ap[pa + 1];
    c10 += a * b0;
    c11 += a * b1;
    c12 += a * b2;
    c13 += a * b3;
    c14 += a * b4;
    c15 += a * b5;
    c16 += a * b6;
    c17 += a * b7;
    a = Ap[pa + 2];
    c20 += a * b0;
    c21 += a * b1;
    c22 += a * b2;
    c23 += a * b3;
    c24 += a * b4;
    c25 += a * b5;
    c26 += a * b6;
    c27 += a * b7;
    a = Ap[pa + 3];
    c30 += a * b0;
    c31 += a * b1;
    c32 += a * b2;
    c33 += a * b3;
    c34 += a * b4;
    c35 += a * b5;
    c36 += a * b6;
    c37 += a * b7;
  }
  const rows = Math.min(MR, M - i0);
  const cols = Math.min(NR, N - j0);
  let c = cOff + i0 * N + j0;
  if (rows === MR && cols === NR) {
    C[c] = c00;
    C[c + 1] = c01;
    C[c + 2] = c02;
    C[c + 3] = c03;
    C[c + 4] = c04;
    C[c + 5] = c05;
    C[c + 6] = c06;
    C[c + 7] = c07;
    c += N;
    C[c] = c10;
    C[c + 1] = c11;
    C[c + 2] = c12;
    C[c + 3] = c13;
    C[c + 4] = c14;
    C[c + 5] = c15;
    C[c + 6] = c16;
    C[c + 7] = c17;
    c += N;
    C[c] = c20;
    C[c + 1] = c21;
    C[c + 2] = c22;
    C[c + 3] = c23;
    C[c + 4] = c24;
    C[c + 5] = c25;
    C[c + 6] = c26;
    C[c + 7] = c27;
    c += N;
    C[c] = c30;
    C[c + 1] = c31;
    C[c + 2] = c32;
    C[c + 3] = c33;
    C[c + 4] = c34;
    C[c + 5] = c35;
    C[c + 6] = c36;
    C[c + 7] = c37;
    return;
  }
  // An edge tile: the padded rows and columns of the panels are dropped.
  const tile = [
    c00,
    c01,
    c02,
    c03,
    c04,
    c05,
    c06,
    c07,
    c10,
    c11,
    c12,
    c13,
    c14,
    c15,
    c16,
    c17,
    c20,
    c21,
    c22,
    c23,
    c24,
    c25,
    c26,
    c27,
    c30,
    c31,
    c32,
    c33,
    c34,
    c35,
    c36,
    c37,
  ];
  for (let r = 0; r < rows; r++, c += N) {
    for (let s = 0; s < cols; s++) C[c + s] = tile[r * NR + s];
  }
}

/** C[M, N] at cOff = op(A) op(B), both already packed by packPanels (A in MR-row, B in NR-column panels). */
function gemmPacked(Ap: Floats, Bp: Floats, C: Floats, cOff: number, M: number, N: number, K: number): void {
  // B panel outermost: its K x NR floats stay in L1 while every A panel streams past it.
  for (let j0 = 0, pb = 0; j0 < N; j0 += NR, pb += K * NR) {
    for (let i0 = 0, pa = 0; i0 < M; i0 += MR, pa += K * MR) kernel4x8(Ap, pa, Bp, pb, K, C, cOff, i0, j0, M, N);
  }
}

/**
 * C[M, N] at cOff for M < MR (a decode step, a vector-matrix product), reading op(A) and op(B) in place
 * (element (i, k) of op(A) at aOff + i*ais + k*aks, (k, j) of op(B) at bOff + k*bks + j*bjs): packing
 * would cost as much as the work.
 */
function gemmThin(
  A: Floats,
  aOff: number,
  ais: number,
  aks: number,
  B: Floats,
  bOff: number,
  bks: number,
  bjs: number,
  C: Floats,
  cOff: number,
  M: number,
  N: number,
  K: number,
): void {
  for (let i = 0; i < M; i++) {
    const a = aOff + i * ais;
    const c = cOff + i * N;
    if (bks !== 1) {
      // Rows of op(B) are contiguous: C[i, :] += A[i, k] * B[k, :].
      C.fill(0, c, c + N);
      for (let k = 0; k < K; k++) {
        const x = A[a + k * aks];
        const b = bOff + k * bks;
        for (let j = 0; j < N; j++) C[c + j] += x * B[b + j * bjs];
      }
    } else {
      // Columns of op(B) are contiguous (B transposed, or N = 1): one dot product per element.
      for (let j = 0; j < N; j++) {
        const b = bOff + j * bjs;
        let s = 0;
        for (let k = 0; k < K; k++) s += A[a + k * aks] * B[b + k];
        C[c + j] = s;
      }
    }
  }
}

/**
 * C[batch, M, N] = op(A) op(B) for every batch entry, op(A)'s entry at aOffs[bi] with strides (ais, aks)
 * and op(B)'s at bOffs[bi] with strides (bks, bjs); the packed panels are of `dtype`.
 */
function gemmBatched(
  dtype: DType,
  A: Floats,
  aOffs: Int32Array,
  ais: number,
  aks: number,
  B: Floats,
  bOffs: Int32Array,
  bks: number,
  bjs: number,
  C: Floats,
  M: number,
  N: number,
  K: number,
): void {
  if (M < MR) {
    for (let bi = 0; bi < aOffs.length; bi++)
      gemmThin(A, aOffs[bi], ais, aks, B, bOffs[bi], bks, bjs, C, bi * M * N, M, N, K);
    return;
  }
  const mp = Math.ceil(M / MR) * MR;
  const np = Math.ceil(N / NR) * NR;
  if (dtype === 'float32' && wasmGemmAvailable) {
    // The same panels in the WebAssembly kernel's memory: each operand copied in whole (a memcpy) and packed
    // there by the module's own loop, several times faster than packPanels' JavaScript; C comes back padded.
    const { Ap, Bp, Cp, S } = wasmBuffers(mp * K, np * K, mp * np, Math.max(M, N) * K);
    let lastA = -1;
    let lastB = -1;
    for (let bi = 0; bi < aOffs.length; bi++) {
      if (aOffs[bi] !== lastA) {
        S.set(A.subarray((lastA = aOffs[bi]), lastA + M * K));
        wasmPack(S, M, K, ais, aks, MR, Ap);
      }
      if (bOffs[bi] !== lastB) {
        S.set(B.subarray((lastB = bOffs[bi]), lastB + K * N));
        wasmPack(S, N, K, bjs, bks, NR, Bp);
      }
      wasmGemm(Ap, Bp, Cp, mp, np, K);
      const cOff = bi * M * N;
      if (np === N) C.set(Cp.subarray(0, M * N), cOff);
      else for (let r = 0; r < M; r++) C.set(Cp.subarray(r * np, r * np + N), cOff + r * N);
    }
    return;
  }
  const Ap = arrayFor(dtype, mp * K) as Floats;
  const Bp = arrayFor(dtype, np * K) as Floats;
  let lastA = -1;
  let lastB = -1;
  for (let bi = 0; bi < aOffs.length; bi++) {
    // Broadcast batches reuse the packed operand.
    if (aOffs[bi] !== lastA) packPanels(A, (lastA = aOffs[bi]), M, K, ais, aks, MR, Ap);
    if (bOffs[bi] !== lastB) packPanels(B, (lastB = bOffs[bi]), N, K, bjs, bks, NR, Bp);
    gemmPacked(Ap, Bp, C, bi * M * N, M, N, K);
  }
}

export function matmulCpu(a: View, b: View, transA: boolean, transB: boolean, outShape: Shape): TypedArray {
  const A = a.handle as Floats;
  const B = b.handle as Floats;
  const r = outShape.length;
  const M = outShape[r - 2];
  const N = outShape[r - 1];
  const K = transA ? a.shape[a.shape.length - 2] : a.shape[a.shape.length - 1];
  const batch = outShape.slice(0, -2);
  const out = arrayFor(a.dtype, sizeOf(outShape)) as Floats;
  if (out.length === 0) return out;
  // An empty sum: zeros (the array may be recycled memory, and the kernels write nothing when K = 0).
  if (K === 0) return out.fill(0);
  const aOffs = stridedOffsets(
    batch,
    broadcastStrides(a.shape.slice(0, -2), batch).map((s) => s * M * K),
  );
  const bOffs = stridedOffsets(
    batch,
    broadcastStrides(b.shape.slice(0, -2), batch).map((s) => s * K * N),
  );
  // Strides of op(A) [M, K] and op(B) [K, N] within one batch entry.
  const [ais, aks] = transA ? [1, M] : [K, 1];
  const [bks, bjs] = transB ? [1, K] : [N, 1];
  if (N >= NR || N >= M) {
    gemmBatched(a.dtype, A, aOffs, ais, aks, B, bOffs, bks, bjs, out, M, N, K);
    return out;
  }
  // Tall and narrow (a matrix-vector product): C^T = op(B)^T op(A)^T puts the short side along the
  // kernel's rows (or the thin path's), where a narrow B panel would be mostly padding.
  const ct = arrayFor(a.dtype, out.length) as Floats;
  gemmBatched(a.dtype, B, bOffs, bjs, bks, A, aOffs, aks, ais, ct, N, M, K);
  for (let o = 0; o < out.length; o += M * N) {
    for (let i = 0; i < M; i++) for (let j = 0; j < N; j++) out[o + i * N + j] = ct[o + j * M + i];
  }
  return out;
}
