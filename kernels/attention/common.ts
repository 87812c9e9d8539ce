// What every attention kernel shares: the size limits and tile sizes, the uniforms, the shape checks
// (dimsOf), the loop bounds (constant or uniform) and the WGSL header and bindings. No program here.
//
//
// Conventions as engine/backend.ts: q [..., T, hs], k and v [..., S, hs], query i at key position
// S - T + i; keyBias [B0, S] is added to the scores of batch row b0 = b / (B / B0); a query row that sees
// no key gets out 0 and lse -Infinity, and no gradient. With kvLen (forward only), k, v and keyBias are
// buffers of capacity cap per batch row and only their first S = kvLen rows are read (a KV cache written
// in place): the uniform `cap` is the row stride, S the keys attended. The shape class (cache key) is the
// head size hs, a compile-time constant (rows are vec4s when hs is a multiple of 4), the tile sizes it
// implies, keyBias or not, and whether loops have constant bounds (see choose.ts).

import type { View } from '../../engine/index.js';
import { sizeOf } from '../../engine/index.js';
import type { GpuHandle } from '../pool.js';
import { declareBindings, Uniforms, WGSL_LIB, wgslType } from '../program.js';

/** Threads per workgroup in the tiled kernels: one per query row (forward, dQ) or key row (dK/dV). */
export const ROWS = 64;
/** Up to this many query rows per (batch, head), the forward takes the decode kernel. */
export const DECODE_MAX_T = 16;
/** The largest head size: one row per thread is held in registers, and a tile row must fit workgroup memory. */
export const MAX_HS = 1024;
/** Workgroup memory a kernel may use: WebGPU's guaranteed minimum, so any adapter runs it. */
export const WG_MEM_BYTES = 16384;

/** Rows of the other dimension per workgroup-memory tile: two [tile, hs] float32 arrays (+ `extra` floats per row). */
export const tileRows = (hs: number, extra = 0) =>
  Math.max(1, Math.min(64, Math.floor(WG_MEM_BYTES / (4 * (2 * hs + extra)))));
/** Threads of the decode kernel: their partial outputs [threads, hs] fit in workgroup memory (a power of two). */
export const decodeThreads = (hs: number) =>
  2 ** Math.floor(Math.log2(Math.max(1, Math.min(64, Math.floor(WG_MEM_BYTES / (4 * (hs + 2)))))));

export const uniforms = new Uniforms([
  ['B', 'u32'],
  ['T', 'u32'],
  ['S', 'u32'],
  // Rows per batch row of k, v and keyBias: S, or a KV cache's capacity when only its first S are used
  // (kvLen, forward only).
  ['cap', 'u32'],
  ['tiles', 'u32'],
  ['per_bias', 'u32'],
  ['scale', 'f32'],
  ['hsv', 'u32'],
  ['bk', 'u32'],
  ['bq', 'u32'],
  ['wgd', 'u32'],
]);

export interface Dims {
  /** Batch rows: the product of every axis before the last two (batch x heads). */
  B: number;
  T: number;
  S: number;
  /** Rows of k, v (and keyBias columns) per batch row, of which the first S are attended. */
  cap: number;
  hs: number;
  /** B / B0: consecutive batch rows that share one keyBias row. */
  perBias: number;
}

export function dimsOf(op: string, q: View, k: View, v: View, keyBias: View | undefined, kvLen?: number): Dims {
  for (const [name, t] of [
    ['q', q],
    ['k', k],
    ['v', v],
  ] as const)
    wgslType(t.dtype, `${op} (${name})`);
  const r = q.shape.length;
  const [T, hs, cap] = [q.shape[r - 2], q.shape[r - 1], k.shape[r - 2]];
  const S = kvLen ?? cap;
  const B = sizeOf(q.shape.slice(0, -2));
  if ((hs === 0 || hs > MAX_HS) && B * T > 0)
    throw new Error(`${op}: head size ${hs} is not supported on webgpu (1 to ${MAX_HS})`);
  if (T > S || S > cap)
    throw new Error(`${op}: ${T} query rows for ${S} of ${cap} keys; the causal convention needs T <= S <= ${cap}`);
  if (sizeOf(k.shape) !== B * cap * hs || sizeOf(v.shape) !== B * cap * hs)
    throw new Error(`${op}: k [${k.shape}] and v [${v.shape}] do not match q [${q.shape}]`);
  let perBias = 1;
  if (keyBias) {
    wgslType(keyBias.dtype, `${op} (keyBias)`);
    const B0 = q.shape[0];
    if (r < 3 || sizeOf(keyBias.shape) !== B0 * cap)
      throw new Error(`${op}: keyBias [${keyBias.shape}] must be [${B0}, ${cap}] for q [${q.shape}]`);
    perBias = B / B0;
  }
  return { B, T, S, cap, hs, perBias };
}

export const NEG_INF = 'f32_bits(0xff800000u)';
/** Elements per vector in head rows: 4 (vec4) when hs is a multiple of 4. */
export const vecWidth = (hs: number) => (hs % 4 === 0 ? 4 : 1);

/** The sizes a kernel's loops run to, as uniforms (read as constants when the loops are constant). */
export const sizes = (d: Dims) => ({
  hsv: d.hs / vecWidth(d.hs),
  bk: tileRows(d.hs),
  bq: tileRows(d.hs, 1),
  wgd: decodeThreads(d.hs),
});

const BOUNDS = {
  hs: ['hsn', 'HS', 'u_hsv()'],
  bk: ['bkn', 'BK', 'u_bk()'],
  bq: ['bqn', 'BQ', 'u_bq()'],
  wgd: ['wgn', 'WGD', 'u_wgd()'],
} as const;

/** WGSL lets for a kernel's loop bounds (hsn, bkn, bqn, wgn): its constants (unrolled) or the uniforms. */
export function loopBounds(constant: boolean, names: readonly (keyof typeof BOUNDS)[]): string {
  return names.map((n) => `let ${BOUNDS[n][0]} = ${constant ? BOUNDS[n][1] : BOUNDS[n][2]};`).join(' ');
}

/** What every attention kernel starts with: the library, constants, uniforms and bindings. */
export function header(hs: number, inputs: [string, string][], outputs: [string, string][]): string {
  const w = vecWidth(hs);
  return `${WGSL_LIB}
fn is_neg_inf(x: f32) -> bool { return bitcast<u32>(x) == 0xff800000u; }
// A NaN or +Inf score (from a NaN or Inf in q, k or the bias) makes its row NaN, as on the CPU.
fn bad_score(x: f32) -> bool { return is_nan(x) || bitcast<u32>(x) == 0x7f800000u; }
// A head row is HS elements of type VT (vec4 when hs is a multiple of 4, else f32).
alias VT = ${w === 4 ? 'vec4<f32>' : 'f32'};
// A row's output and log-sum-exp: NaN when a score was bad, 0 and -Inf when it saw no key.
fn rowOut(x: VT, seen: bool, bad: bool) -> VT { return select(select(VT(0.0), x, seen), VT(nan_f32()), bad); }
fn rowLse(x: f32, seen: bool, bad: bool) -> f32 { return select(select(${NEG_INF}, x, seen), nan_f32(), bad); }
fn vdot(a: VT, b: VT) -> f32 { return ${w === 4 ? 'dot(a, b)' : 'a * b'}; }
const HS: u32 = ${hs / w}u;
const ROWS: u32 = ${ROWS}u;
${uniforms.wgsl}
${declareBindings(inputs, outputs)}`;
}

/** Bindings: head rows (q, k, v, dout, ...) as VT, per-row scalars (lse, D) and keyBias as f32. */
export const bind = (rows: string[], scalars: string[] = []): [string, string][] => [
  ...rows.map((n): [string, string] => [n, 'VT']),
  ...scalars.map((n): [string, string] => [n, 'f32']),
];
export const bindIn = (hasBias: boolean, rows: string[], scalars: string[] = []) =>
  bind(rows, [...scalars, ...(hasBias ? ['bias'] : [])]);
export const handle = (v: View) => v.handle as GpuHandle;
