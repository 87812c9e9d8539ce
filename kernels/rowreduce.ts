// Shared WGSL for the fused row kernels (logsoftmax.ts, targetlogprob.ts, norms.ts): the workgroup size,
// a workgroup tree reduction, the online log-sum-exp state, and a thread's log-sum-exp over its units of a row.
// Not a kernel: no program is built here (the plain reductions live in reduce.ts).

import type { KernelContext } from './context.js';
import { FLAT_BUILTINS, flatGroup, localId } from './program.js';

/**
 * Threads per row. One size for every row length: each size is another pipeline per kernel, and lavapipe
 * takes about a second to compile one; 64 threads keep a long row's strided loop short and a short row's
 * tree (one barrier per level) shallow.
 */
export const ROW_WG = 64;

/**
 * The opening of a row kernel's entry point: one workgroup per row, with `row`, `lid` (this thread),
 * `cols` and `base` (the row's first element) in scope, and workgroups past the last row returned.
 */
export const ROW_MAIN = `@compute @workgroup_size(${ROW_WG})
fn main(${FLAT_BUILTINS}) {
  let row = ${flatGroup()};
  if (row >= u_rows()) { return; }
  let lid = ${localId()};
  let cols = u_cols();
  let base = row * cols;`;

/**
 * A WGSL function `name(v, lid) -> type` that combines one value per thread of a workgroup of `wg`
 * threads (a power of two) into one, by a fixed tree in workgroup memory (deterministic), and returns it
 * to every thread. It ends with a barrier, so it can be called again at once. Call it in uniform control
 * flow. `combine(a, b)` is a WGSL expression.
 */
export function workgroupReduceWGSL(
  name: string,
  type: string,
  wg: number,
  combine: (a: string, b: string) => string,
): string {
  return /* wgsl */ `
var<workgroup> ${name}_buf: array<${type}, ${wg}>;
fn ${name}(v: ${type}, lid: u32) -> ${type} {
  ${name}_buf[lid] = v;
  workgroupBarrier();
  for (var s = ${wg / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { ${name}_buf[lid] = ${combine(`${name}_buf[lid]`, `${name}_buf[lid + s]`)}; }
    workgroupBarrier();
  }
  let r = ${name}_buf[0];
  workgroupBarrier();
  return r;
}`;
}

/**
 * Online log-sum-exp over a stream of values, as a state vec2(m, s): the running max m and the sum s of
 * exp(x - m). One read of the data gives the statistics. The cases match engine/cpu/fused.ts's rowLse:
 * -Infinity adds nothing (a row of them has lse -Infinity); +Infinity gives lse +Infinity; NaN anywhere
 * makes the state NaN. lse_parts gives the result. Needs WGSL_LIB (is_nan, nan_f32, ...).
 */
export const ONLINE_LSE_WGSL = /* wgsl */ `
fn is_neg_inf(x: f32) -> bool { return bitcast<u32>(x) == 0xff800000u; }
fn lse_empty() -> vec2<f32> { return vec2<f32>(f32_bits(0xff800000u), 0.0); }
// exp(a - m) for a <= m, with exp(-Inf - -Inf) = 0 and exp(Inf - Inf) = 1.
fn lse_rescale(a: f32, m: f32) -> f32 {
  if (is_neg_inf(a)) { return 0.0; }
  return select(exp(a - m), 1.0, a == m);
}
fn lse_push(st: vec2<f32>, x: f32) -> vec2<f32> {
  if (is_nan(x) || is_nan(st.x)) { return vec2<f32>(nan_f32(), 0.0); }
  if (is_neg_inf(x)) { return st; }
  if (x > st.x) { return vec2<f32>(x, st.y * lse_rescale(st.x, x) + 1.0); }
  return vec2<f32>(st.x, st.y + lse_rescale(x, st.x));
}
fn lse_merge(a: vec2<f32>, b: vec2<f32>) -> vec2<f32> {
  if (is_nan(a.x) || is_nan(b.x)) { return vec2<f32>(nan_f32(), 0.0); }
  let m = max(a.x, b.x);
  return vec2<f32>(m, a.y * lse_rescale(a.x, m) + b.y * lse_rescale(b.x, m));
}
// The logsumexp as (m, log s): x - lse is computed as (x - m) - log s, exact in its first step for x near
// the max (Sterbenz), so that large magnitudes (|x| ~ 1e4) lose no more than the float32 result's rounding.
fn lse_parts(st: vec2<f32>) -> vec2<f32> {
  if (is_nan(st.x)) { return vec2<f32>(nan_f32(), nan_f32()); }
  if (is_neg_inf(st.x)) { return vec2<f32>(st.x, st.x); }
  return vec2<f32>(st.x, log(st.y));
}`;

/**
 * WGSL `fn row_stats(base: u32, start: u32, end: u32, step: u32) -> vec2<f32>`: the online log-sum-exp
 * state (as ONLINE_LSE_WGSL's) of units `base + j`, j = start, start + step, ... < end, of the storage
 * array `src` of `vt` elements (f32, or vec4<f32> for four columns per load). Needs WGSL_LIB and
 * ONLINE_LSE_WGSL.
 *
 * Fast path, for finite values: four units per step, the block's max first, so one rescaling exp per block
 * and no per-element branches (lavapipe runs branches as masks, so lse_push's cases cost every element).
 * The largest exponent field seen is kept; if it is all ones (an Infinity or a NaN), the units are walked
 * again with lse_push, whose semantics are the CPU's. Loop bounds are the caller's (uniform where they are).
 */
export function rowStatsWGSL(src: string, vt: 'f32' | 'vec4<f32>'): string {
  const v4 = vt !== 'f32';
  const ut = v4 ? 'vec4<u32>' : 'u32';
  return /* wgsl */ `
fn rs_hmax(v: ${vt}) -> f32 { return ${v4 ? 'max(max(v.x, v.y), max(v.z, v.w))' : 'v'}; }
fn rs_hsum(v: ${vt}) -> f32 { return ${v4 ? '(v.x + v.y) + (v.z + v.w)' : 'v'}; }
fn rs_exponent(v: ${vt}) -> ${ut} { return bitcast<${ut}>(v) & ${ut}(0x7f800000u); }
fn rs_push(st: vec2<f32>, v: ${vt}) -> vec2<f32> {
  return ${v4 ? 'lse_push(lse_push(lse_push(lse_push(st, v.x), v.y), v.z), v.w)' : 'lse_push(st, v)'};
}
fn row_stats(base: u32, start: u32, end: u32, step: u32) -> vec2<f32> {
  if (start >= end) { return lse_empty(); }
  var ex = ${ut}(0u);
  var m = rs_hmax(${src}[base + start]);
  var s = 0.0;
  var j = start;
  for (; j + 3u * step < end; j += 4u * step) {
    let v0 = ${src}[base + j];
    let v1 = ${src}[base + j + step];
    let v2 = ${src}[base + j + 2u * step];
    let v3 = ${src}[base + j + 3u * step];
    ex = max(max(ex, rs_exponent(v0)), max(rs_exponent(v1), max(rs_exponent(v2), rs_exponent(v3))));
    let mn = max(m, rs_hmax(max(max(v0, v1), max(v2, v3))));
    s = s * exp(m - mn) + rs_hsum((exp(v0 - mn) + exp(v1 - mn)) + (exp(v2 - mn) + exp(v3 - mn)));
    m = mn;
  }
  for (; j < end; j += step) {
    let v = ${src}[base + j];
    ex = max(ex, rs_exponent(v));
    let mn = max(m, rs_hmax(v));
    s = s * exp(m - mn) + rs_hsum(exp(v - mn));
    m = mn;
  }
  if (any(ex == ${ut}(0x7f800000u))) {
    // An Infinity or a NaN: again, exactly.
    var st = lse_empty();
    for (var k = start; k < end; k += step) { st = rs_push(st, ${src}[base + k]); }
    return st;
  }
  return vec2<f32>(m, s);
}`;
}

// ---------------------------------------------------------------------------------------------------
// Rows given to threads ("parts"), for the kernels that stream rows without a barrier (logsoftmax.ts,
// targetlogprob.ts): each of a row's P threads takes every P-th unit of the row (a vec4 of columns when
// cols % 4 == 0, else one column). With P = 1 a kernel reads its row's statistics and writes in one
// thread; with P > 1 the parts write their states and a second kernel merges them (see logsoftmax.ts).

/** Threads per workgroup of the row-part kernels (each thread one part of a row). */
export const PART_WG = 64;
/** A part gets at least this many units: below it, merging states costs more than the parallelism gains. */
const MIN_UNITS_PER_PART = 16;

/**
 * Threads the row-part kernels aim for, rows x parts: enough to keep a software adapter's cores busy
 * (lavapipe runs 8 lanes per core), and a hardware adapter's many more. Tests set it to force parts.
 */
export const rowPartsTuning: { minThreads: 'auto' | number } = { minThreads: 'auto' };

export interface RowPartsPlan {
  /** Columns per unit: 4 (vec4 loads and stores) when cols % 4 == 0, else 1. */
  width: 1 | 4;
  /** Units per row. */
  units: number;
  /** Threads per row; 1 runs a single kernel. */
  parts: number;
}

export function planRowParts(backend: KernelContext, rows: number, cols: number): RowPartsPlan {
  const width = cols % 4 === 0 ? 4 : 1;
  const units = cols / width;
  const tuned = rowPartsTuning.minThreads;
  const minThreads = tuned === 'auto' ? (backend.adapter.architecture === 'software' ? 512 : 32768) : tuned;
  const parts = Math.max(
    1,
    Math.min(Math.ceil(minThreads / Math.max(1, rows)), Math.floor(units / MIN_UNITS_PER_PART), 256),
  );
  return { width, units, parts };
}

/**
 * WGSL statements running `body(j)` (statements using the u32 expression j) for j = start, start + step,
 * ... < end: four per step, then the rest. Bounds are WGSL expressions evaluated once each step.
 */
export function unitLoopWGSL(start: string, end: string, step: string, body: (j: string) => string): string {
  const block = (off: string) => `{ let j = ju${off}; ${body('j')} }`;
  return `var ju = ${start};
  for (; ju + 3u * ${step} < ${end}; ju += 4u * ${step}) {
    ${block('')}
    ${block(` + ${step}`)}
    ${block(` + 2u * ${step}`)}
    ${block(` + 3u * ${step}`)}
  }
  for (; ju < ${end}; ju += ${step}) { ${block('')} }`;
}
