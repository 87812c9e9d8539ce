// Matmul: a register-blocked batched kernel (broadcast batch dims, either operand transposed in place) for
// every size, with a skinny layout and split-K for few rows, an f16-input variant and a subgroup variant.
// Not the CPU reference (engine/cpu/matmul.ts) and not attention (attention/ has its own fused kernels).
//
// The layout was chosen by measuring lavapipe (Mesa's Vulkan on the CPU), where a storage load inside a
// loop costs about as much as 30 fused multiply-adds whatever its width (it is a loop over the subgroup's
// 8 lanes), while arithmetic and subgroup broadcasts are cheap (measured with the kernels bench):
//   - every thread owns TM rows x 4*NV columns of C (TM*NV vec4 accumulators); all threads of a workgroup
//     share the same TM rows and lie side by side along N, so a workgroup computes a TM x (4*NV*WG) strip;
//   - K advances 4 at a time: each thread loads B as vec4s (4 columns at one k, or 4 k's of one column
//     when B is transposed) and A as vec4s along K (along M when A is transposed);
//   - with the 'subgroups' feature, each lane loads a different row of A's chunk and the values are
//     shared with subgroupBroadcast, so A costs TM/8 loads per chunk instead of TM (the rows are the same
//     for the whole workgroup, so this holds whatever lanes a subgroup holds; it needs subgroups >= 8);
//   - no workgroup memory: on lavapipe a shared-memory load costs what a storage load does, and a
//     tfjs-style shared-memory tile (64x64, 4x4 per thread) ran at 3 GFLOP/s where this runs at 28-35.
// Edges: rows and columns past M and N read clamped (valid) addresses and are never stored. When K % 4 != 0
// every chunk is masked: its loads at k >= K read 0 on both sides (so 0 * Inf never appears). The
// transposes are index arithmetic in the loads, never a materialised copy.
//
// Shape classes (cache key): input and output types, transpose flags, which operands load as vec4 (A: K % 4
// == 0, or M % 4 == 0 when transposed; B: N % 4 == 0, or K % 4 == 0 when transposed), whether C stores vec4
// (N % 4 == 0), whether K % 4 != 0, TM / NV / WG, subgroups, split-K, and the batch rank when above 3.
// Sizes, batch strides and the split go in the uniform block.

import type { View } from '../engine/index.js';
import type { Shape } from '../engine/index.js';
import type { KernelContext } from './context.js';
import { matmulBatch, matmulDims, range } from './matmul-batch.js';
import type { GpuHandle } from './pool.js';
import {
  declareBindings,
  FLAT_BUILTINS,
  flatId,
  grid1d,
  MAX_GROUPS_PER_DIM,
  stridedOffsetsWGSL,
  Uniforms,
  wgslType,
  type Program,
} from './program.js';
import { canUseSubgroups } from './features.js';

/** A kernel layout: what the planner picks, and what tests and tuning may force. */
export interface MatmulConfig {
  /** Rows of C per thread (and per workgroup: every thread of a workgroup shares them). */
  tm: 1 | 2 | 4 | 8 | 16 | 32;
  /** vec4 column groups per thread. */
  nv: 1 | 2;
  /** Threads per workgroup, all along N. */
  wg: 8 | 16 | 32 | 64 | 128;
  /** Share A's chunk across the subgroup with subgroupBroadcast (needs the 'subgroups' feature, subgroups of >= 8). */
  subgroups: boolean;
  /** Workgroups splitting K (1: none); their partial sums are added by a second, small kernel. */
  splitK: number;
}

export interface MatmulOptions {
  /** Overrides of the planned layout (tests, tuning). */
  config?: Partial<MatmulConfig>;
  /**
   * 'f16': a and b hold IEEE half floats (2 bytes per element, packed) that are converted to f32 on load;
   * products accumulate and C is stored in f32. Needs the 'shader-f16' feature. Only on request: the
   * engine's dtype is float32, so the backend never picks this itself.
   */
  inputs?: 'f32' | 'f16';
}

/** The layout the planner picks for a shape on this backend (exported for tests and the benchmark). */
export function planMatmul(
  backend: KernelContext,
  M: number,
  N: number,
  K: number,
  batch: number,
): MatmulConfig & { kind: 'tiled' | 'skinny' } {
  const subgroups = canUseSubgroups(backend);
  const tuned = subgroups ? TUNED_SG : TUNED;
  // Skinny (M <= 64: decoding, sampling, a few rows): the rows of a strip in one workgroup where they fit
  // (TM = M rounded up to a power of 2, at most 16), narrow strips of N so that enough workgroups exist,
  // and split-K when they still do not.
  const skinny = M <= 64;
  const tm: MatmulConfig['tm'] = skinny ? (M <= 1 ? 1 : M <= 2 ? 2 : M <= 4 ? 4 : M <= 8 ? 8 : 16) : tuned.tm;
  const nv: MatmulConfig['nv'] = skinny ? 1 : tuned.nv;
  const wantWg = skinny ? 16 : tuned.wg;
  let wg = 8;
  while (wg < wantWg && wg * 4 * nv < N) wg *= 2;
  const groups = Math.ceil(N / (wg * 4 * nv)) * Math.ceil(M / tm) * batch;
  let splitK = 1;
  if (groups < MIN_GROUPS && K >= 2 * SPLIT_MIN_K)
    splitK = Math.min(MAX_SPLITS, Math.ceil(MIN_GROUPS / groups), Math.floor(K / SPLIT_MIN_K));
  return { kind: skinny ? 'skinny' : 'tiled', tm, nv, wg: wg as MatmulConfig['wg'], subgroups, splitK };
}

/**
 * The layouts measured best at 1024^3 on lavapipe (2 cores, in CPU time since the machine is shared): with
 * subgroups, TM 32 x one vec4 per thread, 16 threads: about 36-40 GFLOP/s of CPU time, against 33-34 for
 * TM 16 and 31-38 with two vec4s; TM 48 or 64 are no better than 32 and compile slower. Without
 * subgroups, TM 8 x two vec4s: 11-13, like TM 16, against 7-12 for the others tried.
 */
const TUNED_SG = { tm: 32, nv: 1, wg: 16 } as const;
const TUNED = { tm: 8, nv: 2, wg: 16 } as const;
/** Below this many workgroups, K is split (when it is long enough). */
const MIN_GROUPS = 16;
/** Each split gets at least this much of K. */
const SPLIT_MIN_K = 256;
const MAX_SPLITS = 16;

export function matmul(
  backend: KernelContext,
  a: View,
  b: View,
  transA: boolean,
  transB: boolean,
  outShape: Shape,
  opts: MatmulOptions = {},
): GpuHandle {
  const t = wgslType(a.dtype, 'matmul');
  if (wgslType(b.dtype, 'matmul') !== t)
    throw new Error(`matmul: operands must share a dtype, got ${a.dtype} and ${b.dtype}`);
  const f16 = opts.inputs === 'f16';
  if (f16 && t !== 'f32') throw new Error(`matmul: f16 inputs need float32 views, got ${a.dtype}`);
  if (f16 && !backend.features.has('shader-f16'))
    throw new Error("matmul: f16 inputs need the adapter feature 'shader-f16', which this device lacks");
  const { M, N, K, n, batch, nBatch } = matmulDims(a, transA, outShape);
  const plan = { ...planMatmul(backend, M, N, K, nBatch), ...opts.config };
  if (plan.subgroups && !canUseSubgroups(backend))
    throw new Error(
      "matmul: the subgroup variant needs the adapter feature 'subgroups' with subgroups of at least 8 lanes",
    );
  const out = backend.alloc(n, a.dtype, 'matmul');
  if (n === 0) return out;
  // Split K into chunks of a multiple of 4, so that only the last split can have a tail.
  const splits = Math.max(1, Math.min(plan.splitK, Math.ceil(K / 4)));
  const kPer = splits > 1 ? 4 * Math.ceil(K / 4 / splits) : Math.max(K, 1);
  const nSplits = splits > 1 ? Math.ceil(K / kPer) : 1;

  const { br, bshape, abatch, bbatch } = matmulBatch(a, b, batch, M, N, K);

  const cls: ShapeClass = {
    t,
    e: f16 ? 'f16' : t,
    transA,
    transB,
    // A transposed loads 4 rows at once, which needs rows aligned: M % 4 == 0 and blocks of >= 4 rows.
    aVec: transA ? M % 4 === 0 && plan.tm % 4 === 0 : K % 4 === 0,
    bVec: transB ? K % 4 === 0 : N % 4 === 0,
    oVec: N % 4 === 0,
    tail: K % 4 !== 0,
    tm: plan.tm,
    nv: plan.nv,
    wg: plan.wg,
    sg: plan.subgroups,
    split: nSplits > 1,
    br,
  };
  const rowBlocks = Math.ceil(M / cls.tm);
  const tiles = rowBlocks * nBatch * nSplits;
  const gridX = Math.ceil(N / (4 * cls.nv * cls.wg));
  if (gridX > MAX_GROUPS_PER_DIM)
    throw new Error(`matmul: N = ${N} needs ${gridX} workgroups along N, more than ${MAX_GROUPS_PER_DIM}`);
  const gridY = Math.min(tiles, MAX_GROUPS_PER_DIM);
  const gridZ = Math.ceil(tiles / MAX_GROUPS_PER_DIM);
  const uniforms = tiledUniforms(cls.br);
  const program: Program = {
    name: `matmul:${plan.kind}${cls.sg ? '+sg' : ''}${f16 ? ':f16' : ''}${cls.split ? ':splitK' : ''}`,
    cacheKey: cacheKey(cls),
    workgroupSize: [cls.wg, 1, 1],
    dispatch: [gridX, gridY, gridZ],
    wgsl: () => tiledWGSL(cls, uniforms),
  };
  const values = { M, N, K, rowBlocks, tiles, splits: nSplits, kPer, nbatch: nBatch, bshape, abatch, bbatch };
  const inputs = [a.handle as GpuHandle, b.handle as GpuHandle];
  if (!cls.split) {
    backend.dispatch(program, inputs, [out], uniforms.pack(values));
    return out;
  }
  const partial = backend.alloc(n * nSplits, a.dtype, 'matmul');
  backend.dispatch(program, inputs, [partial], uniforms.pack(values));
  sumSplits(backend, partial, out, n, nSplits, t);
  backend.free(partial);
  return out;
}

// ---------------------------------------------------------------------------------------------------
// The tiled kernel.

interface ShapeClass {
  /** Accumulator and output type. */
  t: 'f32' | 'i32';
  /** Input element type. */
  e: 'f32' | 'i32' | 'f16';
  transA: boolean;
  transB: boolean;
  aVec: boolean;
  bVec: boolean;
  oVec: boolean;
  tail: boolean;
  tm: number;
  nv: number;
  wg: number;
  sg: boolean;
  split: boolean;
  br: number;
}

const cacheKey = (c: ShapeClass): string =>
  `matmul|${c.e}>${c.t}|${c.transA ? 'T' : 'N'}${c.transB ? 'T' : 'N'}|a${+c.aVec}b${+c.bVec}o${+c.oVec}t${+c.tail}` +
  `|tm${c.tm}nv${c.nv}wg${c.wg}|sg${+c.sg}|split${+c.split}|b${c.br}`;

function tiledUniforms(br: number): Uniforms {
  return new Uniforms([
    ['M', 'u32'],
    ['N', 'u32'],
    ['K', 'u32'],
    ['rowBlocks', 'u32'],
    ['tiles', 'u32'],
    ['splits', 'u32'],
    ['kPer', 'u32'],
    ['nbatch', 'u32'],
    ['bshape', 'u32', br],
    ['abatch', 'u32', br],
    ['bbatch', 'u32', br],
  ]);
}

function tiledWGSL(c: ShapeClass, uniforms: Uniforms): string {
  const T = c.t;
  const V = `vec4<${T}>`;
  const zero = T === 'f32' ? '0.0' : '0';
  const zeroV = `${V}(${zero})`;
  // Converts a loaded value (scalar or vec4) from the input type to the accumulator type.
  const cv = (x: string, vec: boolean) => (c.e === T ? x : vec ? `${V}(${x})` : `${T}(${x})`);
  const mad = (a: string, b: string, acc: string) => (T === 'f32' ? `fma(${a}, ${b}, ${acc})` : `${acc} + ${a} * ${b}`);
  const { tm, nv, wg } = c;
  const rows = range(tm);
  const groups = range(nv);
  const quads = range(4);

  // Hoisted per-thread addresses (k-independent), then the loads and the A accessor of one chunk of 4 k's.
  const hoist: string[] = [];
  for (const v of groups) hoist.push(`let cv${v} = c0 + ${4 * wg * v}u;`);

  /**
   * One chunk (k .. k+3), unrolled: all of its loads, then the multiply-adds row by row, so that a row's
   * accumulators stay in registers over the 4 k's. (Ordered k by k, lavapipe spilled most of the TM x 4
   * vec4 accumulators at every k: 35% slower at 1024^3, and three times the compile time.) masked (when
   * K % 4 != 0): loads at k+q >= ke give 0; the whole loop is masked then, rather than a masked copy of
   * the chunk added for the tail, which would double the code and so the compile time.
   */
  function chunk(masked: boolean): string {
    const L: string[] = [];
    const kq = (q: string) => (masked ? `min(k + ${q}, K - 1u)` : `(k + ${q})`);
    const mask = (x: string, q: string, vec: boolean) =>
      masked ? `select(${vec ? zeroV : zero}, ${x}, k + ${q} < ke)` : x;
    /** The 4 k's of one row of A, element by element (masked past K). */
    const quadLoads = (row: string) =>
      quads.map((q) => mask(cv(`a[${row} + ${kq(`${q}u`)}]`, false), `${q}u`, false)).join(', ');
    // Per-chunk loads, then per-k loads (aStep, bStep: q and sfx name the k), then the multiply-adds.
    let aAt: (i: number, q: number, sfx: string) => string;
    let aStep: (q: string, sfx: string) => string[] = () => [];

    // A.
    if (c.sg) {
      const loads = Math.max(1, tm / 8);
      if (!c.transA) {
        // Lane s loads row r0 + 8j + (s & 7): 4 k's of it.
        for (const j of range(loads)) {
          if (c.aVec) L.push(`let av${j} = ${cv(`a[(arow${j} + k) / 4u]`, true)};`);
          else L.push(`let av${j} = ${V}(${quadLoads(`arow${j}`)});`);
        }
        aAt = (i, q) => `subgroupBroadcast(av${i >> 3}[${q}], ${i & 7}u)`;
      } else {
        // A is [K, M]: lane s loads k + (s & 3), rows r0 + 8j + 4 * ((s >> 2) & 1) .. +3.
        L.push(`let kl = ${masked ? 'min(k + lq, K - 1u)' : 'k + lq'};`);
        for (const j of range(loads)) {
          const x = c.aVec
            ? cv(`a[(aoff + kl * M + acol${j}) / 4u]`, true)
            : `${V}(${quads.map((e) => cv(`a[aoff + kl * M + acol${j}_${e}]`, false)).join(', ')})`;
          L.push(`let av${j} = ${masked ? `select(${zeroV}, ${x}, k + lq < ke)` : x};`);
        }
        // Lane q + 4 * ((i >> 2) & 1) holds (row i, k + q).
        aAt = (i, q) => `subgroupBroadcast(av${i >> 3}[${i & 3}], ${q + 4 * ((i >> 2) & 1)}u)`;
      }
    } else if (!c.transA) {
      // Every thread loads the same addresses (the rows are the workgroup's).
      for (const i of rows) {
        if (c.aVec) L.push(`let ai${i} = ${cv(`a[(arow${i} + k) / 4u]`, true)};`);
        else L.push(`let ai${i} = ${V}(${quadLoads(`arow${i}`)});`);
      }
      aAt = (i, q) => `ai${i}[${q}]`;
    } else if (c.aVec) {
      aStep = (q, sfx) =>
        range(Math.ceil(tm / 4)).map(
          (g) => `let at${g}${sfx} = ${mask(cv(`a[(aoff + ${kq(q)} * M + acol${g}) / 4u]`, true), q, true)};`,
        );
      aAt = (i, _q, sfx) => `at${i >> 2}${sfx}[${i & 3}]`;
    } else {
      aStep = (q, sfx) =>
        rows.map((i) => `let at${i}${sfx} = ${mask(cv(`a[aoff + ${kq(q)} * M + acol${i}]`, false), q, false)};`);
      aAt = (i, _q, sfx) => `at${i}${sfx}`;
    }

    // B: per chunk when transposed and vec4 (4 k's of each column), else per k.
    if (c.transB && c.bVec)
      for (const v of groups)
        for (const e of quads) L.push(`let bt${v}_${e} = ${cv(`b[(brow${v}_${e} + k) / 4u]`, true)};`);
    const bStep = (q: string, sfx: string) =>
      groups.map((v) => {
        if (!c.transB && c.bVec)
          return `let bq${v}${sfx} = ${mask(cv(`b[(${kq(q)} * N + bcol${v}) / 4u]`, true), q, true)};`;
        if (!c.transB)
          return (
            `let bq${v}${sfx} = ` +
            `${V}(${quads.map((e) => mask(cv(`b[${kq(q)} * N + bcol${v}_${e}]`, false), q, false)).join(', ')});`
          );
        if (c.bVec) return `let bq${v}${sfx} = ${V}(${quads.map((e) => `bt${v}_${e}[${q}]`).join(', ')});`;
        return (
          `let bq${v}${sfx} = ` +
          `${V}(${quads.map((e) => mask(cv(`b[brow${v}_${e} + ${kq(q)}]`, false), q, false)).join(', ')});`
        );
      });

    for (const q of quads) L.push(...aStep(`${q}u`, `_${q}`), ...bStep(`${q}u`, `_${q}`));
    for (const i of rows) {
      const fma = (q: number) =>
        `{ let x = ${V}(${aAt(i, q, `_${q}`)}); ` +
        `${groups.map((v) => `acc${i}_${v} = ${mad('x', `bq${v}_${q}`, `acc${i}_${v}`)};`).join(' ')} }`;
      L.push(quads.map(fma).join(' '));
    }
    return L.join('\n    ');
  }

  // Addresses that do not depend on k.
  if (c.sg && !c.transA)
    for (const j of range(Math.max(1, tm / 8)))
      hoist.push(`let arow${j} = aoff + min(r0 + ${8 * j}u + (sid & 7u), M - 1u) * K;`);
  if (c.sg && c.transA) {
    hoist.push('let lq = sid & 3u;', 'let lh = (sid >> 2u) & 1u;');
    for (const j of range(Math.max(1, tm / 8))) {
      if (c.aVec) hoist.push(`let acol${j} = min(r0 + ${8 * j}u + 4u * lh, M - 4u);`);
      else for (const e of quads) hoist.push(`let acol${j}_${e} = min(r0 + ${8 * j}u + 4u * lh + ${e}u, M - 1u);`);
    }
  }
  if (!c.sg && !c.transA) for (const i of rows) hoist.push(`let arow${i} = aoff + min(r0 + ${i}u, M - 1u) * K;`);
  if (!c.sg && c.transA) {
    if (c.aVec) for (const g of range(Math.ceil(tm / 4))) hoist.push(`let acol${g} = min(r0 + ${4 * g}u, M - 4u);`);
    else for (const i of rows) hoist.push(`let acol${i} = min(r0 + ${i}u, M - 1u);`);
  }
  for (const v of groups) {
    if (!c.transB) {
      if (c.bVec) hoist.push(`let bcol${v} = boff + min(cv${v}, N - 4u);`);
      else for (const e of quads) hoist.push(`let bcol${v}_${e} = boff + min(cv${v} + ${e}u, N - 1u);`);
    } else {
      for (const e of quads) hoist.push(`let brow${v}_${e} = boff + min(cv${v} + ${e}u, N - 1u) * K;`);
    }
  }

  const accs = rows.flatMap((i) => groups.map((v) => `var acc${i}_${v} = ${zeroV};`));
  const stores = rows.map((i) => {
    const body = groups.map((v) => {
      if (c.oVec) return `if (cv${v} < N) { out[(ooff + row * N + cv${v}) / 4u] = acc${i}_${v}; }`;
      return quads
        .map((e) => `if (cv${v} + ${e}u < N) { out[ooff + row * N + cv${v} + ${e}u] = acc${i}_${v}[${e}]; }`)
        .join(' ');
    });
    return `{ let row = r0 + ${i}u; if (row < M) { ${body.join(' ')} } }`;
  });
  const inType = (vec: boolean) => (vec ? `vec4<${c.e}>` : c.e);
  const enables = [c.e === 'f16' ? 'enable f16;' : '', c.sg ? 'enable subgroups;' : ''].filter(Boolean).join('\n');
  const sgBuiltin = c.sg ? ', @builtin(subgroup_invocation_id) sid: u32' : '';
  return `${enables}
${uniforms.wgsl}
${declareBindings(
  [
    ['a', inType(c.aVec)],
    ['b', inType(c.bVec)],
  ],
  [['out', c.oVec ? V : T]],
)}
@compute @workgroup_size(${wg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>${sgBuiltin}) {
  // Workgroup (x, tile): x picks the strip of N; tile = (row block, batch, split), flattened over y and z.
  let tile = wid.y + wid.z * ${MAX_GROUPS_PER_DIM}u;
  if (tile >= u_tiles()) { return; }
  let M = u_M();
  let N = u_N();
  let K = u_K();
  let rb = tile % u_rowBlocks();
  let rest = tile / u_rowBlocks();
  let split = rest % u_splits();
  let bi = rest / u_splits();
  ${stridedOffsetsWGSL(c.br, 'bi', 'bshape', ['abatch', 'bbatch'])}
  let aoff = off_abatch;
  let boff = off_bbatch;
  let ooff = (${c.split ? 'split * u_nbatch() + ' : ''}bi) * M * N;
  let r0 = rb * ${tm}u;
  let c0 = (wid.x * ${wg * nv}u + lid.x) * 4u;
  let kb = split * u_kPer();
  let ke = min(K, kb + u_kPer());
  ${hoist.join('\n  ')}
  ${accs.join(' ')}
  for (var k = kb; k < ke; k += 4u) {
    ${chunk(c.tail)}
  }
  ${stores.join('\n  ')}
}`;
}

// ---------------------------------------------------------------------------------------------------
// Split-K: out[i] = sum over s of partial[s * n + i].

const SUM_WG = 256;
const sumUniforms = new Uniforms([
  ['n', 'u32'],
  ['splits', 'u32'],
]);

function sumSplits(
  backend: KernelContext,
  partial: GpuHandle,
  out: GpuHandle,
  n: number,
  splits: number,
  t: 'f32' | 'i32',
): void {
  const program: Program = {
    name: 'matmul:splitK-sum',
    cacheKey: `matmul|splitK-sum|${t}`,
    workgroupSize: [SUM_WG, 1, 1],
    dispatch: grid1d(n, SUM_WG),
    wgsl: () => `${sumUniforms.wgsl}
${declareBindings([['part', t]], [['out', t]])}
@compute @workgroup_size(${SUM_WG})
fn main(${FLAT_BUILTINS}) {
  let i = ${flatId(SUM_WG)};
  let n = u_n();
  if (i >= n) { return; }
  var s = part[i];
  for (var j = 1u; j < u_splits(); j++) { s += part[i + j * n]; }
  out[i] = s;
}`,
  };
  backend.dispatch(program, [partial], [out], sumUniforms.pack({ n, splits }));
}

// ---------------------------------------------------------------------------------------------------
// f16 inputs.

/** IEEE half-float bits of x, rounded to nearest even (overflow gives Inf, NaN stays NaN). */
export function f16Bits(x: number): number {
  const u = new Uint32Array(Float32Array.of(x).buffer)[0];
  const sign = (u >>> 16) & 0x8000;
  const exp = (u >>> 23) & 0xff;
  const mant = u & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  const round = (v: number, rem: number, half: number) => (rem > half || (rem === half && v & 1) ? v + 1 : v);
  if (e <= 0) {
    if (e < -10) return sign;
    const m = mant | 0x800000;
    const shift = 14 - e;
    return sign | round(m >>> shift, m & ((1 << shift) - 1), 1 << (shift - 1));
  }
  // A carry out of the mantissa moves into the exponent, up to Inf: what rounding should do.
  return sign | round((e << 10) | (mant >>> 13), mant & 0x1fff, 0x1000);
}

/** Packs values as f16, two per 32-bit word (little-endian), for upload as an f16 matmul input. */
export function packF16(data: ArrayLike<number>): Int32Array {
  const out = new Uint16Array(2 * Math.ceil(data.length / 2));
  for (let i = 0; i < data.length; i++) out[i] = f16Bits(data[i]);
  return new Int32Array(out.buffer);
}
