// Causal scaled-dot-product attention, flash style (FusedKernels.attention, attentionBackward), as WGSL
// kernels that never hold a T x S matrix: memory is O(T * hs) per head. Not the composed form
// (engine/fused.ts) and not multi-head plumbing (the model reshapes heads into the batch axes).
//
// Conventions as engine/backend.ts: q [..., T, hs], k and v [..., S, hs], query i at key position
// S - T + i; keyBias [B0, S] is added to the scores of batch row b0 = b / (B / B0); a query row that sees
// no key gets out 0 and lse -Infinity, and no gradient. With kvLen (forward only), k, v and keyBias are
// buffers of capacity cap per batch row and only their first S = kvLen rows are read (a KV cache written
// in place): the uniform `cap` is the row stride, S the keys attended. The shape class (cache key) is the
// head size hs, a compile-time constant (rows are vec4s when hs is a multiple of 4), the tile sizes it
// implies, keyBias or not, and whether loops have constant bounds (see attentionTuning).
//
// Forward, tiled: a workgroup of ROWS = 64 threads owns 64 query rows of one (batch, head), one thread per
// row (its q row and output accumulator private to the thread); it walks the key tiles up to the causal limit,
// loading BK keys and values into workgroup memory per step, and keeps an online softmax (running max and
// sum, rescaling the accumulator once per tile). It writes out and the row's logsumexp.
// Forward, decode (T <= DECODE_MAX_T, e.g. one new token against a KV cache; without the subgroup kernels):
// one workgroup per query row, its threads split the S keys, each with its own online softmax; the partial
// states merge in workgroup memory (one barrier), deterministically.
// Backward (P recomputed from q, k and lse, never stored): D = rowsum(dO * O) (one thread per row); dQ with
// one thread per query row walking key tiles; dK and dV with one thread per key row walking query tiles
// (Q, dO, lse and D tiles in workgroup memory), from the first query that sees the tile's keys.
// On software adapters with subgroups (lavapipe), the forward (decoding too), dQ and dK/dV take the subgroup kernels
// at the end of the file instead: a workgroup is one subgroup of 8 rows, and the other side's rows are
// shared by subgroupBroadcast rather than workgroup memory (on lavapipe at B*H = 8, T = 256, hs = 64: about
// 6x faster, forward and backward).

import type { View } from '../engine/index.js';
import { sizeOf } from '../engine/index.js';
import type { WebGPUBackend } from './backend.js';
import { canUseSubgroups } from './matmul.js';
import type { GpuHandle } from './pool.js';
import {
  declareBindings,
  FLAT_BUILTINS,
  flatGroup,
  flatId,
  grid1d,
  localId,
  Uniforms,
  WGSL_LIB,
  wgslType,
  type Program,
} from './program.js';

/** Threads per workgroup in the tiled kernels: one per query row (forward, dQ) or key row (dK/dV). */
const ROWS = 64;
/** Up to this many query rows per (batch, head), the forward takes the decode kernel. */
export const DECODE_MAX_T = 16;
/** The largest head size: one row per thread is held in registers, and a tile row must fit workgroup memory. */
const MAX_HS = 1024;
/** Workgroup memory a kernel may use: WebGPU's guaranteed minimum, so any adapter runs it. */
const WG_MEM_BYTES = 16384;

/** Rows of the other dimension per workgroup-memory tile: two [tile, hs] float32 arrays (+ `extra` floats per row). */
const tileRows = (hs: number, extra = 0) =>
  Math.max(1, Math.min(64, Math.floor(WG_MEM_BYTES / (4 * (2 * hs + extra)))));
/** Threads of the decode kernel: their partial outputs [threads, hs] fit in workgroup memory (a power of two). */
const decodeThreads = (hs: number) =>
  2 ** Math.floor(Math.log2(Math.max(1, Math.min(64, Math.floor(WG_MEM_BYTES / (4 * (hs + 2)))))));

const uniforms = new Uniforms([
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

interface Dims {
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

function dimsOf(op: string, q: View, k: View, v: View, keyBias: View | undefined, kvLen?: number): Dims {
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

const NEG_INF = 'f32_bits(0xff800000u)';
/** Elements per vector in head rows: 4 (vec4) when hs is a multiple of 4. */
const vecWidth = (hs: number) => (hs % 4 === 0 ? 4 : 1);

/**
 * Loop bounds over the head size and the tiles: compile-time constants on hardware adapters (the compiler
 * unrolls the loops and keeps each thread's rows in registers); uniforms on software adapters, where
 * lavapipe takes minutes to compile the unrolled kernels (hs = 64: over 300 s for the forward alone) and
 * about a second with the loops kept. 'auto' decides by the adapter; tests force either.
 */
export const attentionTuning: { constantLoops: 'auto' | boolean; subgroups: 'auto' | boolean } = {
  constantLoops: 'auto',
  subgroups: 'auto',
};

const constantLoops = (backend: WebGPUBackend) =>
  attentionTuning.constantLoops === 'auto'
    ? backend.adapter.architecture !== 'software'
    : attentionTuning.constantLoops;

/**
 * Whether the tiled forward and the backward take the subgroup kernels (section "Subgroup kernels" below):
 * 'auto' on software adapters with the 'subgroups' feature, where they were measured; tests force either.
 */
export function useSubgroupKernels(backend: WebGPUBackend): boolean {
  const want =
    attentionTuning.subgroups === 'auto'
      ? backend.adapter.architecture === 'software' && canUseSubgroups(backend)
      : attentionTuning.subgroups;
  if (want && !canUseSubgroups(backend))
    throw new Error(
      "attention: the subgroup kernels need the adapter feature 'subgroups' with subgroups of at least 8 lanes",
    );
  return want;
}

/** The sizes a kernel's loops run to, as uniforms (read as constants when the loops are constant). */
const sizes = (d: Dims) => ({
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
function loopBounds(constant: boolean, names: readonly (keyof typeof BOUNDS)[]): string {
  return names.map((n) => `let ${BOUNDS[n][0]} = ${constant ? BOUNDS[n][1] : BOUNDS[n][2]};`).join(' ');
}

/** What every attention kernel starts with: the library, constants, uniforms and bindings. */
function header(hs: number, inputs: [string, string][], outputs: [string, string][]): string {
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
const bind = (rows: string[], scalars: string[] = []): [string, string][] => [
  ...rows.map((n): [string, string] => [n, 'VT']),
  ...scalars.map((n): [string, string] => [n, 'f32']),
];
const bindIn = (hasBias: boolean, rows: string[], scalars: string[] = []) =>
  bind(rows, [...scalars, ...(hasBias ? ['bias'] : [])]);
const handle = (v: View) => v.handle as GpuHandle;

// ---------------------------------------------------------------------------------------------------
// Forward.

export function attention(
  backend: WebGPUBackend,
  q: View,
  k: View,
  v: View,
  scale: number,
  keyBias?: View,
  kvLen?: number,
): { out: GpuHandle; lse: GpuHandle } {
  const d = dimsOf('attention', q, k, v, keyBias, kvLen);
  const out = backend.alloc(d.B * d.T * d.hs, q.dtype, 'attention');
  const lse = backend.alloc(d.B * d.T, q.dtype, 'attention');
  if (d.B * d.T === 0) return { out, lse };
  // With subgroups (lavapipe) the subgroup kernel serves decoding too: at B*H = 32, hs = 16, T = 1 it ran
  // 2-2.5x faster than the decode kernel's barrier and workgroup-memory merge (S = 80 to 512), 6-25x at T = 4-16.
  const sg = useSubgroupKernels(backend);
  const decode = d.T <= DECODE_MAX_T && !sg;
  const constant = constantLoops(backend);
  const program = decode
    ? decodeProgram(d, !!keyBias, constant)
    : sg
      ? sgForwardProgram(d, !!keyBias)
      : forwardProgram(d, !!keyBias, constant);
  const tiles = Math.ceil(d.T / (sg ? SG_ROWS : ROWS));
  const inputs = [q, k, v, ...(keyBias ? [keyBias] : [])].map(handle);
  backend.dispatch(
    program,
    inputs,
    [out, lse],
    uniforms.pack({ B: d.B, T: d.T, S: d.S, cap: d.cap, tiles, per_bias: d.perBias, scale, ...sizes(d) }),
  );
  return { out, lse };
}

function forwardProgram(d: Dims, hasBias: boolean, constant: boolean): Program {
  const BK = tileRows(d.hs);
  const bias = hasBias ? 'bias[bbase + j]' : '0.0';
  return {
    name: 'attention',
    cacheKey: `attention|fwd|f32|hs${d.hs}|bk${BK}|${hasBias ? 'bias' : 'nobias'}|${constant ? 'const' : 'unif'}`,
    workgroupSize: [ROWS, 1, 1],
    dispatch: grid1d(d.B * Math.ceil(d.T / ROWS), 1),
    wgsl: () => `${header(d.hs, bindIn(hasBias, ['q', 'k', 'v']), bind(['out'], ['lse']))}
const BK: u32 = ${BK}u;
var<workgroup> ks: array<VT, BK * HS>;
var<workgroup> vs: array<VT, BK * HS>;
@compute @workgroup_size(${ROWS})
fn main(${FLAT_BUILTINS}) {
  ${loopBounds(constant, ['hs', 'bk'])}
  let g = ${flatGroup()};
  if (g >= u_B() * u_tiles()) { return; }  // uniform
  let T = u_T();
  let S = u_S();
  let scale = u_scale();
  let lid = ${localId()};
  let b = g / u_tiles();
  let i0 = (g % u_tiles()) * ROWS;
  let i = i0 + lid;
  let inside = i < T;
  let lim = S - T + i;                  // the last key row i sees
  let kend = S - T + min(i0 + ROWS, T); // keys any row of the tile sees: [0, kend)
  let kvbase = b * u_cap() * HS;
  let bbase = (b / u_per_bias()) * u_cap();
  var qr: array<VT, HS>;
  var o: array<VT, HS>;
  if (inside) { for (var c = 0u; c < hsn; c++) { qr[c] = q[(b * T + i) * HS + c]; } }
  var m = ${NEG_INF};
  var l = 0.0;
  var bad = false;
  for (var j0 = 0u; j0 < kend; j0 += BK) {
    for (var e = lid; e < BK * HS; e += ROWS) {
      var kx = VT(0.0);
      var vx = VT(0.0);
      if (j0 + e / HS < S) { kx = k[kvbase + j0 * HS + e]; vx = v[kvbase + j0 * HS + e]; }
      ks[e] = kx;
      vs[e] = vx;
    }
    workgroupBarrier();
    if (inside) {
      var sc: array<f32, BK>;
      var mt = m;
      for (var jj = 0u; jj < bkn; jj++) {
        let j = j0 + jj;
        var s = ${NEG_INF};
        if (j <= lim) {
          var sdot = 0.0;
          for (var c = 0u; c < hsn; c++) { sdot += vdot(qr[c], ks[jj * HS + c]); }
          s = sdot * scale + ${bias};
          bad = bad || bad_score(s);
        }
        sc[jj] = s;
        mt = max(mt, s);
      }
      if (!is_neg_inf(mt)) {
        // Rescale the running state to the new max once per tile (exp(-Inf) = 0 when it was empty).
        let alpha = exp(m - mt);
        l *= alpha;
        for (var c = 0u; c < hsn; c++) { o[c] *= alpha; }
        for (var jj = 0u; jj < bkn; jj++) {
          if (!is_neg_inf(sc[jj])) {
            let p = exp(sc[jj] - mt);
            l += p;
            for (var c = 0u; c < hsn; c++) { o[c] += p * vs[jj * HS + c]; }
          }
        }
        m = mt;
      }
    }
    workgroupBarrier();
  }
  if (inside) {
    let row = b * T + i;
    let seen = l > 0.0;
    for (var c = 0u; c < hsn; c++) { out[row * HS + c] = rowOut(o[c] / l, seen, bad); }
    lse[row] = rowLse(m + log(l), seen, bad);
  }
}`,
  };
}

function decodeProgram(d: Dims, hasBias: boolean, constant: boolean): Program {
  const WGD = decodeThreads(d.hs);
  const bias = hasBias ? 'bias[bbase + j]' : '0.0';
  return {
    name: 'attention:decode',
    cacheKey: `attention|decode|f32|hs${d.hs}|wg${WGD}|${hasBias ? 'bias' : 'nobias'}|${constant ? 'const' : 'unif'}`,
    workgroupSize: [WGD, 1, 1],
    dispatch: grid1d(d.B * d.T, 1),
    wgsl: () => `${header(d.hs, bindIn(hasBias, ['q', 'k', 'v']), bind(['out'], ['lse']))}
const WGD: u32 = ${WGD}u;
var<workgroup> ms: array<f32, WGD>;
var<workgroup> ls: array<f32, WGD>;
var<workgroup> bads: array<u32, WGD>;
var<workgroup> part: array<VT, WGD * HS>;
@compute @workgroup_size(${WGD})
fn main(${FLAT_BUILTINS}) {
  ${loopBounds(constant, ['hs', 'wgd'])}
  let row = ${flatGroup()};  // one workgroup per query row
  let T = u_T();
  if (row >= u_B() * T) { return; }
  let S = u_S();
  let scale = u_scale();
  let lid = ${localId()};
  let b = row / T;
  let lim = S - T + row % T;
  let kvbase = b * u_cap() * HS;
  let bbase = (b / u_per_bias()) * u_cap();
  var qr: array<VT, HS>;
  var o: array<VT, HS>;
  for (var c = 0u; c < hsn; c++) { qr[c] = q[row * HS + c]; }
  // This thread's keys lid, lid + WGD, ...: an online softmax over them.
  var m = ${NEG_INF};
  var l = 0.0;
  var bad = false;
  for (var j = lid; j <= lim; j += WGD) {
    var sdot = 0.0;
    for (var c = 0u; c < hsn; c++) { sdot += vdot(qr[c], k[kvbase + j * HS + c]); }
    let s = sdot * scale + ${bias};
    bad = bad || bad_score(s);
    if (!is_neg_inf(s)) {
      if (s > m) {
        let alpha = exp(m - s);
        l *= alpha;
        for (var c = 0u; c < hsn; c++) { o[c] *= alpha; }
        m = s;
      }
      let p = exp(s - m);
      l += p;
      for (var c = 0u; c < hsn; c++) { o[c] += p * v[kvbase + j * HS + c]; }
    }
  }
  // Merge the threads' states: the global max, each state rescaled to it, summed per column in thread order.
  ms[lid] = m;
  ls[lid] = l;
  bads[lid] = select(0u, 1u, bad);
  workgroupBarrier();
  var mx = ${NEG_INF};
  var anyBad = false;
  for (var t = 0u; t < wgn; t++) { mx = max(mx, ms[t]); anyBad = anyBad || bads[t] != 0u; }
  var lsum = 0.0;
  if (!is_neg_inf(mx)) {
    for (var t = 0u; t < wgn; t++) { if (!is_neg_inf(ms[t])) { lsum += ls[t] * exp(ms[t] - mx); } }
  }
  let f = select(exp(m - mx), 0.0, is_neg_inf(m));
  for (var c = 0u; c < hsn; c++) { part[lid * HS + c] = o[c] * f; }
  workgroupBarrier();
  let seen = lsum > 0.0;
  for (var c = lid; c < hsn; c += WGD) {
    var acc = VT(0.0);
    for (var t = 0u; t < wgn; t++) { acc += part[t * HS + c]; }
    out[row * HS + c] = rowOut(acc / lsum, seen, anyBad);
  }
  if (lid == 0u) { lse[row] = rowLse(mx + log(lsum), seen, anyBad); }
}`,
  };
}

// ---------------------------------------------------------------------------------------------------
// Backward.

export function attentionBackward(
  backend: WebGPUBackend,
  q: View,
  k: View,
  v: View,
  out: View,
  lse: View,
  dout: View,
  scale: number,
  keyBias?: View,
): { dq: GpuHandle; dk: GpuHandle; dv: GpuHandle } {
  const d = dimsOf('attentionBackward', q, k, v, keyBias);
  const dq = backend.alloc(d.B * d.T * d.hs, q.dtype, 'attentionBackward');
  // With no query rows, no query sees any key: the key gradients are zero.
  if (d.T === 0)
    return {
      dq,
      dk: backend.fill(k.shape, k.dtype, 0) as GpuHandle,
      dv: backend.fill(v.shape, v.dtype, 0) as GpuHandle,
    };
  const dk = backend.alloc(d.B * d.S * d.hs, q.dtype, 'attentionBackward');
  const dv = backend.alloc(d.B * d.S * d.hs, q.dtype, 'attentionBackward');
  if (d.B * d.S * d.hs === 0) return { dq, dk, dv };
  const bias = keyBias ? [handle(keyBias)] : [];
  const pack = (tiles: number) =>
    uniforms.pack({ B: d.B, T: d.T, S: d.S, cap: d.S, tiles, per_bias: d.perBias, scale, ...sizes(d) });
  const D = backend.alloc(d.B * d.T, q.dtype, 'attentionBackward');
  const constant = constantLoops(backend);
  backend.dispatch(rowDotProgram(d, constant), [handle(dout), handle(out)], [D], pack(0));
  const sg = useSubgroupKernels(backend);
  const rowsPer = sg ? SG_ROWS : ROWS;
  const qTiles = Math.ceil(d.T / rowsPer);
  const dqP = sg ? sgDqProgram(d, !!keyBias) : dqProgram(d, !!keyBias, constant);
  backend.dispatch(dqP, [q, k, v, dout, lse].map(handle).concat([D], bias), [dq], pack(qTiles));
  const kTiles = Math.ceil(d.S / rowsPer);
  const dkvP = sg ? sgDkvProgram(d, !!keyBias) : dkvProgram(d, !!keyBias, constant);
  backend.dispatch(dkvP, [q, k, v, dout, lse].map(handle).concat([D], bias), [dk, dv], pack(kTiles));
  backend.free(D);
  return { dq, dk, dv };
}

/** D[row] = sum_c dO[row, c] * O[row, c]: one thread per query row. */
function rowDotProgram(d: Dims, constant: boolean): Program {
  return {
    name: 'attentionBackward:D',
    cacheKey: `attention|D|f32|hs${d.hs}|${constant ? 'const' : 'unif'}`,
    workgroupSize: [ROWS, 1, 1],
    dispatch: grid1d(d.B * d.T, ROWS),
    wgsl: () => `${header(d.hs, bind(['dout', 'out']), bind([], ['D']))}
@compute @workgroup_size(${ROWS})
fn main(${FLAT_BUILTINS}) {
  ${loopBounds(constant, ['hs'])}
  let row = ${flatId(ROWS)};
  if (row >= u_B() * u_T()) { return; }
  var acc = 0.0;
  for (var c = 0u; c < hsn; c++) { acc += vdot(dout[row * HS + c], out[row * HS + c]); }
  D[row] = acc;
}`,
  };
}

/** dQ: one thread per query row, walking key tiles; dq_i = scale * sum_j P_ij (dO_i . V_j - D_i) K_j. */
function dqProgram(d: Dims, hasBias: boolean, constant: boolean): Program {
  const BK = tileRows(d.hs);
  const bias = hasBias ? 'bias[bbase + j]' : '0.0';
  return {
    name: 'attentionBackward:dq',
    cacheKey: `attention|dq|f32|hs${d.hs}|bk${BK}|${hasBias ? 'bias' : 'nobias'}|${constant ? 'const' : 'unif'}`,
    workgroupSize: [ROWS, 1, 1],
    dispatch: grid1d(d.B * Math.ceil(d.T / ROWS), 1),
    wgsl: () => `${header(d.hs, bindIn(hasBias, ['q', 'k', 'v', 'dout'], ['lse', 'D']), bind(['dq']))}
const BK: u32 = ${BK}u;
var<workgroup> ks: array<VT, BK * HS>;
var<workgroup> vs: array<VT, BK * HS>;
@compute @workgroup_size(${ROWS})
fn main(${FLAT_BUILTINS}) {
  ${loopBounds(constant, ['hs', 'bk'])}
  let g = ${flatGroup()};
  if (g >= u_B() * u_tiles()) { return; }
  let T = u_T();
  let S = u_S();
  let scale = u_scale();
  let lid = ${localId()};
  let b = g / u_tiles();
  let i0 = (g % u_tiles()) * ROWS;
  let i = i0 + lid;
  let inside = i < T;
  let row = b * T + i;
  let lim = S - T + i;
  let kend = S - T + min(i0 + ROWS, T);
  let kvbase = b * u_cap() * HS;
  let bbase = (b / u_per_bias()) * u_cap();
  var qr: array<VT, HS>;
  var dor: array<VT, HS>;
  var acc: array<VT, HS>;
  var L = ${NEG_INF};
  var Di = 0.0;
  if (inside) {
    for (var c = 0u; c < hsn; c++) { qr[c] = q[row * HS + c]; dor[c] = dout[row * HS + c]; }
    L = lse[row];
    Di = D[row];
  }
  let live = inside && !is_neg_inf(L);  // a row that saw no key has no gradient
  for (var j0 = 0u; j0 < kend; j0 += BK) {
    for (var e = lid; e < BK * HS; e += ROWS) {
      var kx = VT(0.0);
      var vx = VT(0.0);
      if (j0 + e / HS < S) { kx = k[kvbase + j0 * HS + e]; vx = v[kvbase + j0 * HS + e]; }
      ks[e] = kx;
      vs[e] = vx;
    }
    workgroupBarrier();
    if (live) {
      for (var jj = 0u; jj < bkn; jj++) {
        let j = j0 + jj;
        if (j <= lim) {
          var sdot = 0.0;
          var pdot = 0.0;
          for (var c = 0u; c < hsn; c++) {
            sdot += vdot(qr[c], ks[jj * HS + c]);
            pdot += vdot(dor[c], vs[jj * HS + c]);
          }
          let p = exp(sdot * scale + ${bias} - L);
          let ds = p * (pdot - Di) * scale;
          for (var c = 0u; c < hsn; c++) { acc[c] += ds * ks[jj * HS + c]; }
        }
      }
    }
    workgroupBarrier();
  }
  if (inside) { for (var c = 0u; c < hsn; c++) { dq[row * HS + c] = acc[c]; } }
}`,
  };
}

/**
 * dK and dV: one thread per key row j, walking query tiles from the first query that sees the workgroup's
 * keys; dv_j = sum_i P_ij dO_i, dk_j = scale * sum_i P_ij (dO_i . V_j - D_i) Q_i.
 */
function dkvProgram(d: Dims, hasBias: boolean, constant: boolean): Program {
  const BQ = tileRows(d.hs, 2); // Q and dO tiles, plus lse and D per row
  return {
    name: 'attentionBackward:dkv',
    cacheKey: `attention|dkv|f32|hs${d.hs}|bq${BQ}|${hasBias ? 'bias' : 'nobias'}|${constant ? 'const' : 'unif'}`,
    workgroupSize: [ROWS, 1, 1],
    dispatch: grid1d(d.B * Math.ceil(d.S / ROWS), 1),
    wgsl: () => `${header(d.hs, bindIn(hasBias, ['q', 'k', 'v', 'dout'], ['lse', 'D']), bind(['dk', 'dv']))}
const BQ: u32 = ${BQ}u;
var<workgroup> qs: array<VT, BQ * HS>;
var<workgroup> dos: array<VT, BQ * HS>;
var<workgroup> lses: array<f32, BQ>;
var<workgroup> Ds: array<f32, BQ>;
@compute @workgroup_size(${ROWS})
fn main(${FLAT_BUILTINS}) {
  ${loopBounds(constant, ['hs', 'bq'])}
  let g = ${flatGroup()};
  if (g >= u_B() * u_tiles()) { return; }
  let T = u_T();
  let S = u_S();
  let off = S - T;  // query i sees key j iff j <= off + i
  let scale = u_scale();
  let lid = ${localId()};
  let b = g / u_tiles();
  let j0 = (g % u_tiles()) * ROWS;
  let j = j0 + lid;
  let inside = j < S;
  let kvrow = b * S + j;
  let qbase = b * T * HS;
  var kr: array<VT, HS>;
  var vr: array<VT, HS>;
  var dka: array<VT, HS>;
  var dva: array<VT, HS>;
  var bj = 0.0;
  if (inside) {
    for (var c = 0u; c < hsn; c++) { kr[c] = k[kvrow * HS + c]; vr[c] = v[kvrow * HS + c]; }
    ${hasBias ? 'bj = bias[(b / u_per_bias()) * S + j];' : ''}
  }
  // The first query that sees key j0 is j0 - off; start at its tile.
  let istart = select(0u, j0 - off, j0 > off);
  for (var i0 = istart - istart % BQ; i0 < T; i0 += BQ) {
    for (var e = lid; e < BQ * HS; e += ROWS) {
      var qx = VT(0.0);
      var dx = VT(0.0);
      if (i0 + e / HS < T) { qx = q[qbase + i0 * HS + e]; dx = dout[qbase + i0 * HS + e]; }
      qs[e] = qx;
      dos[e] = dx;
    }
    for (var e = lid; e < BQ; e += ROWS) {
      var lx = ${NEG_INF};
      var ddx = 0.0;
      if (i0 + e < T) { lx = lse[b * T + i0 + e]; ddx = D[b * T + i0 + e]; }
      lses[e] = lx;
      Ds[e] = ddx;
    }
    workgroupBarrier();
    if (inside) {
      for (var ii = 0u; ii < bqn; ii++) {
        let i = i0 + ii;
        if (i < T && j <= off + i && !is_neg_inf(lses[ii])) {
          var sdot = 0.0;
          var pdot = 0.0;
          for (var c = 0u; c < hsn; c++) {
            sdot += vdot(qs[ii * HS + c], kr[c]);
            pdot += vdot(dos[ii * HS + c], vr[c]);
          }
          let p = exp(sdot * scale + bj - lses[ii]);
          let ds = p * (pdot - Ds[ii]) * scale;
          for (var c = 0u; c < hsn; c++) {
            dva[c] += p * dos[ii * HS + c];
            dka[c] += ds * qs[ii * HS + c];
          }
        }
      }
    }
    workgroupBarrier();
  }
  if (inside) {
    for (var c = 0u; c < hsn; c++) { dk[kvrow * HS + c] = dka[c]; dv[kvrow * HS + c] = dva[c]; }
  }
}`,
  };
}

// ---------------------------------------------------------------------------------------------------
// Subgroup kernels (software adapters with subgroups; see useSubgroupKernels).
//
// lavapipe runs a subgroup of 8 lanes as SIMD; a storage or workgroup-memory load costs it about as much as
// 30 multiply-adds (a loop over the lanes), a subgroupBroadcast almost nothing, and a barrier slows the
// code after it (measured on lavapipe with the kernels bench). The kernels above do 4 multiply-adds per
// load (each thread reads every key from workgroup memory). Here a workgroup is one subgroup of SG_ROWS = 8
// lanes, each lane one row (a query row in the forward and dQ, a key row in dK/dV); the other side is
// walked in blocks of 8 rows, each lane loading one row's vec4 chunk and subgroupBroadcast handing it to
// the others: 8 rows x 4 multiply-adds per load, no workgroup memory, no barrier. The eight scores of a
// block live in two vec4s, so the masks, the exps and the online softmax are vector operations without
// branches; loops have uniform bounds (the block's causal limit), and rows past the end load clamped
// addresses and store nothing. Chunks loaded for the scores are kept in a private array for the
// accumulation that follows (a private array costs a stack access, not a load loop).

/** Rows per workgroup (and lanes per subgroup used) in the subgroup kernels. */
const SG_ROWS = 8;

/** Broadcasts lane t's value of x, for t in [from, from + 4), as the four components' weights: sum_t w[t] * x(t). */
const bcastSum = (w: string, x: string, from: number) =>
  [0, 1, 2, 3].map((t) => `${w}.${'xyzw'[t]} * subgroupBroadcast(${x}, ${from + t}u)`).join(' + ');
/** vec4(dot(a, x(t))) for lanes t in [from, from + 4). */
const bcastDots = (a: string, x: string, from: number) =>
  `vec4<f32>(${[0, 1, 2, 3].map((t) => `vdot(${a}, subgroupBroadcast(${x}, ${from + t}u))`).join(', ')})`;
/** vec4 of lane t's scalar x, for t in [from, from + 4). */
const bcast4 = (x: string, from: number) =>
  `vec4<f32>(${[0, 1, 2, 3].map((t) => `subgroupBroadcast(${x}, ${from + t}u)`).join(', ')})`;

function sgHeader(hs: number, inputs: [string, string][], outputs: [string, string][]): string {
  return `enable subgroups;
${header(hs, inputs, outputs)}
fn not_neg_inf4(x: vec4<f32>) -> vec4<bool> { return bitcast<vec4<u32>>(x) != vec4<u32>(0xff800000u); }
fn hmax4(x: vec4<f32>) -> f32 { return max(max(x.x, x.y), max(x.z, x.w)); }
fn hsum4(x: vec4<f32>) -> f32 { return (x.x + x.y) + (x.z + x.w); }
fn bad_score4(x: vec4<f32>) -> vec4<bool> {
  let u = bitcast<vec4<u32>>(x);
  return ((u & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u)) | (u == vec4<u32>(0x7f800000u));
}`;
}

const SG_MAIN = `@compute @workgroup_size(${SG_ROWS})
fn main(${FLAT_BUILTINS}, @builtin(subgroup_invocation_id) sid: u32) {
  let hsn = u_hsv();
  let g = ${flatGroup()};
  if (g >= u_B() * u_tiles()) { return; }  // uniform
  let T = u_T();
  let S = u_S();
  let scale = u_scale();
  let lid = ${localId()};
  let b = g / u_tiles();
  let r0 = (g % u_tiles()) * ${SG_ROWS}u;  // this workgroup's first row (query or key)
  let kvbase = b * u_cap() * HS;
  let bbase = (b / u_per_bias()) * u_cap();`;

function sgForwardProgram(d: Dims, hasBias: boolean): Program {
  return {
    name: 'attention:sg',
    cacheKey: `attention|fwd-sg|f32|hs${d.hs}|${hasBias ? 'bias' : 'nobias'}`,
    workgroupSize: [SG_ROWS, 1, 1],
    dispatch: grid1d(d.B * Math.ceil(d.T / SG_ROWS), 1),
    wgsl: () => `${sgHeader(d.hs, bindIn(hasBias, ['q', 'k', 'v']), bind(['out'], ['lse']))}
${SG_MAIN}
  let i = r0 + lid;                       // this lane's query row (past T: computed, not stored)
  let lim = S - T + i;                    // the last key it sees
  let kend = S - T + min(r0 + ${SG_ROWS}u, T);  // keys the workgroup sees: [0, kend)
  let qrow = (b * T + min(i, T - 1u)) * HS;
  var qr: array<VT, HS>;
  var o: array<VT, HS>;
  for (var c = 0u; c < hsn; c++) { qr[c] = q[qrow + c]; o[c] = VT(0.0); }
  var m = ${NEG_INF};
  var l = 0.0;
  var bad = false;
  for (var j0 = 0u; j0 < kend; j0 += ${SG_ROWS}u) {
    let kb = kvbase + min(j0 + sid, S - 1u) * HS;  // this lane loads key j0 + sid
    var sa = vec4<f32>(0.0);
    var sb = vec4<f32>(0.0);
    for (var c = 0u; c < hsn; c++) {
      let kc = k[kb + c];
      let qc = qr[c];
      sa += ${bcastDots('qc', 'kc', 0)};
      sb += ${bcastDots('qc', 'kc', 4)};
    }
    ${
      hasBias
        ? `let bj = bias[bbase + min(j0 + sid, S - 1u)];
    let ba = ${bcast4('bj', 0)};
    let bb = ${bcast4('bj', 4)};`
        : 'let ba = vec4<f32>(0.0);\n    let bb = vec4<f32>(0.0);'
    }
    let ja = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u);
    let jb = ja + vec4<u32>(4u);
    let ninf = vec4<f32>(${NEG_INF});
    let xa = select(ninf, sa * scale + ba, ja <= vec4<u32>(lim));
    let xb = select(ninf, sb * scale + bb, jb <= vec4<u32>(lim));
    bad = bad || any(bad_score4(xa)) || any(bad_score4(xb));
    let mt = max(m, max(hmax4(xa), hmax4(xb)));
    let live = !is_neg_inf(mt);
    // Rescale the running state to the new max (exp(-Inf) = 0 when it was empty; nothing when all are masked).
    let alpha = select(1.0, exp(m - mt), live);
    let pa = select(vec4<f32>(0.0), exp(xa - vec4<f32>(mt)), not_neg_inf4(xa) & vec4<bool>(live));
    let pb = select(vec4<f32>(0.0), exp(xb - vec4<f32>(mt)), not_neg_inf4(xb) & vec4<bool>(live));
    l = l * alpha + (hsum4(pa) + hsum4(pb));
    m = mt;
    for (var c = 0u; c < hsn; c++) {
      let vc = v[kb + c];
      o[c] = o[c] * alpha + (${bcastSum('pa', 'vc', 0)}) + (${bcastSum('pb', 'vc', 4)});
    }
  }
  if (i < T) {
    let row = b * T + i;
    let seen = l > 0.0;
    for (var c = 0u; c < hsn; c++) { out[row * HS + c] = rowOut(o[c] / l, seen, bad); }
    lse[row] = rowLse(m + log(l), seen, bad);
  }
}`,
  };
}

/** dQ, one lane per query row: dq_i = scale * sum_j P_ij (dO_i . V_j - D_i) K_j over key blocks of 8. */
function sgDqProgram(d: Dims, hasBias: boolean): Program {
  return {
    name: 'attentionBackward:dq-sg',
    cacheKey: `attention|dq-sg|f32|hs${d.hs}|${hasBias ? 'bias' : 'nobias'}`,
    workgroupSize: [SG_ROWS, 1, 1],
    dispatch: grid1d(d.B * Math.ceil(d.T / SG_ROWS), 1),
    wgsl: () => `${sgHeader(d.hs, bindIn(hasBias, ['q', 'k', 'v', 'dout'], ['lse', 'D']), bind(['dq']))}
${SG_MAIN}
  let i = r0 + lid;
  let lim = S - T + i;
  let kend = S - T + min(r0 + ${SG_ROWS}u, T);
  let row = b * T + min(i, T - 1u);
  var qr: array<VT, HS>;
  var dor: array<VT, HS>;
  var acc: array<VT, HS>;
  var kst: array<VT, HS>;
  for (var c = 0u; c < hsn; c++) { qr[c] = q[row * HS + c]; dor[c] = dout[row * HS + c]; acc[c] = VT(0.0); }
  let L = lse[row];
  let Di = D[row];
  let live = vec4<bool>(i < T && !is_neg_inf(L));  // a row that saw no key has no gradient
  for (var j0 = 0u; j0 < kend; j0 += ${SG_ROWS}u) {
    let kb = kvbase + min(j0 + sid, S - 1u) * HS;
    var sa = vec4<f32>(0.0);
    var sb = vec4<f32>(0.0);
    var pa = vec4<f32>(0.0);
    var pb = vec4<f32>(0.0);
    for (var c = 0u; c < hsn; c++) {
      let kc = k[kb + c];
      let vc = v[kb + c];
      kst[c] = kc;
      let qc = qr[c];
      let dc = dor[c];
      sa += ${bcastDots('qc', 'kc', 0)};
      sb += ${bcastDots('qc', 'kc', 4)};
      pa += ${bcastDots('dc', 'vc', 0)};
      pb += ${bcastDots('dc', 'vc', 4)};
    }
    ${
      hasBias
        ? `let bj = bias[bbase + min(j0 + sid, S - 1u)];
    let ba = ${bcast4('bj', 0)};
    let bb = ${bcast4('bj', 4)};`
        : 'let ba = vec4<f32>(0.0);\n    let bb = vec4<f32>(0.0);'
    }
    let ja = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u);
    let jb = ja + vec4<u32>(4u);
    let xa = sa * scale + ba;
    let xb = sb * scale + bb;
    let wa = select(vec4<f32>(0.0), exp(xa - vec4<f32>(L)), live & (ja <= vec4<u32>(lim)) & not_neg_inf4(xa));
    let wb = select(vec4<f32>(0.0), exp(xb - vec4<f32>(L)), live & (jb <= vec4<u32>(lim)) & not_neg_inf4(xb));
    let dsa = wa * (pa - vec4<f32>(Di)) * scale;
    let dsb = wb * (pb - vec4<f32>(Di)) * scale;
    for (var c = 0u; c < hsn; c++) {
      let kc = kst[c];
      acc[c] += (${bcastSum('dsa', 'kc', 0)}) + (${bcastSum('dsb', 'kc', 4)});
    }
  }
  if (i < T) { for (var c = 0u; c < hsn; c++) { dq[row * HS + c] = acc[c]; } }
}`,
  };
}

/**
 * dK and dV, one lane per key row j, over blocks of 8 query rows from the first query that sees the
 * workgroup's first key: dv_j = sum_i P_ij dO_i, dk_j = scale * sum_i P_ij (dO_i . V_j - D_i) Q_i.
 */
function sgDkvProgram(d: Dims, hasBias: boolean): Program {
  return {
    name: 'attentionBackward:dkv-sg',
    cacheKey: `attention|dkv-sg|f32|hs${d.hs}|${hasBias ? 'bias' : 'nobias'}`,
    workgroupSize: [SG_ROWS, 1, 1],
    dispatch: grid1d(d.B * Math.ceil(d.S / SG_ROWS), 1),
    wgsl: () => `${sgHeader(d.hs, bindIn(hasBias, ['q', 'k', 'v', 'dout'], ['lse', 'D']), bind(['dk', 'dv']))}
${SG_MAIN}
  let off = S - T;  // query i sees key j iff j <= off + i
  let j = r0 + lid;
  let kvrow = kvbase + min(j, S - 1u) * HS;
  let qbase = b * T;
  var kr: array<VT, HS>;
  var vr: array<VT, HS>;
  var dka: array<VT, HS>;
  var dva: array<VT, HS>;
  var qst: array<VT, HS>;
  var dst: array<VT, HS>;
  for (var c = 0u; c < hsn; c++) { kr[c] = k[kvrow + c]; vr[c] = v[kvrow + c]; dka[c] = VT(0.0); dva[c] = VT(0.0); }
  let bj = ${hasBias ? 'bias[bbase + min(j, S - 1u)]' : '0.0'};
  let inside = vec4<bool>(j < S);
  // The first query that sees key r0.
  let istart = select(0u, r0 - off, r0 > off);
  for (var i0 = istart; i0 < T; i0 += ${SG_ROWS}u) {
    let il = qbase + min(i0 + sid, T - 1u);  // this lane loads query row i0 + sid
    var sa = vec4<f32>(0.0);
    var sb = vec4<f32>(0.0);
    var pa = vec4<f32>(0.0);
    var pb = vec4<f32>(0.0);
    for (var c = 0u; c < hsn; c++) {
      let qc = q[il * HS + c];
      let dc = dout[il * HS + c];
      qst[c] = qc;
      dst[c] = dc;
      let kc = kr[c];
      let vc = vr[c];
      sa += ${bcastDots('kc', 'qc', 0)};
      sb += ${bcastDots('kc', 'qc', 4)};
      pa += ${bcastDots('vc', 'dc', 0)};
      pb += ${bcastDots('vc', 'dc', 4)};
    }
    let Li = lse[il];
    let Dl = D[il];
    let La = ${bcast4('Li', 0)};
    let Lb = ${bcast4('Li', 4)};
    let Da = ${bcast4('Dl', 0)};
    let Db = ${bcast4('Dl', 4)};
    let ia = vec4<u32>(i0) + vec4<u32>(0u, 1u, 2u, 3u);
    let ib = ia + vec4<u32>(4u);
    let xa = sa * scale + vec4<f32>(bj);
    let xb = sb * scale + vec4<f32>(bj);
    // Visible: query in range, key j <= off + i, the query saw some key, the score is not masked.
    let va = inside & (ia < vec4<u32>(T)) & (vec4<u32>(j) <= ia + vec4<u32>(off)) & not_neg_inf4(La) & not_neg_inf4(xa);
    let vb = inside & (ib < vec4<u32>(T)) & (vec4<u32>(j) <= ib + vec4<u32>(off)) & not_neg_inf4(Lb) & not_neg_inf4(xb);
    let wa = select(vec4<f32>(0.0), exp(xa - La), va);
    let wb = select(vec4<f32>(0.0), exp(xb - Lb), vb);
    let dsa = wa * (pa - Da) * scale;
    let dsb = wb * (pb - Db) * scale;
    for (var c = 0u; c < hsn; c++) {
      let qc = qst[c];
      let dc = dst[c];
      dva[c] += (${bcastSum('wa', 'dc', 0)}) + (${bcastSum('wb', 'dc', 4)});
      dka[c] += (${bcastSum('dsa', 'qc', 0)}) + (${bcastSum('dsb', 'qc', 4)});
    }
  }
  if (j < S) {
    for (var c = 0u; c < hsn; c++) { dk[kvrow + c] = dka[c]; dv[kvrow + c] = dva[c]; }
  }
}`,
  };
}
