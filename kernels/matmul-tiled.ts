// Matmul with workgroup-memory tiles, for hardware adapters: 256 threads (16 x 16) compute a BM x BN tile
// of C (64 x 64 with 4 x 4 per thread, or 128 x 128 with 8 x 8), K advancing BK = 16 at a time through two
// workgroup-memory buffers (the next slice's global loads are issued before the current slice's
// multiply-adds and stored into the other buffer afterwards, so one barrier per slice suffices). Also the
// f16 variant: the same kernel with the staged slices held as f16 (half the workgroup memory; inputs
// converted on the way in, products and sums in f32). Same contract as matmul() in matmul.ts (batched
// with broadcast batch dims, either operand transposed in place, float32 or int32), so the backend can
// pick either. Not the lavapipe kernel (matmul.ts: on a CPU driver workgroup memory costs what a storage
// load does) and not the subgroup-matrix kernel (matmul-sgmatrix.ts).
//
// Layout: workgroup memory holds each slice k-major, as vec4s along M (for A) and along N (for B), so a
// thread reads its 4 rows and 4 columns at one k with one vec4 load each; a thread owns rows
// 4 * (ty + 16 r) + j and columns 4 * (tx + 16 c) + j (r, c < TM / 4, TN / 4), so that neighbouring
// threads read neighbouring vec4s. Global loads go 4 elements per unit, as one vec4 where the operand is
// aligned along its contiguous axis (A: K % 4 == 0, or M % 4 == 0 transposed; B: N % 4 == 0, or K % 4 ==
// 0 transposed), else 4 guarded scalars. Edges: every element past M, N or K stages as 0, and only
// elements inside C are stored, so any M, N, K (K = 0 included) works.

import type { View } from '../engine/index.js';
import type { Shape } from '../engine/index.js';
import type { KernelContext } from './context.js';
import { matmulBatch, matmulDims, range } from './matmul-batch.js';
import type { GpuHandle } from './pool.js';
import {
  declareBindings,
  MAX_GROUPS_PER_DIM,
  stridedOffsetsWGSL,
  Uniforms,
  wgslType,
  type Program,
} from './program.js';

/** Threads per workgroup (16 x 16). */
export const TILED_THREADS = 256;
/** K per staged slice. */
const BK = 16;

export interface TiledConfig {
  /** Rows and columns of C per thread: 4 (64 x 64 tiles) or 8 (128 x 128 tiles). */
  block: 4 | 8;
  /** Staged slices as f16 (the f16 variant; float32 only, needs 'shader-f16'). */
  f16: boolean;
}

/** Workgroup memory one tile layout needs: two buffers of A's and B's slices. */
export function tiledStorageBytes(block: 4 | 8, f16: boolean): number {
  return 2 * 2 * BK * 16 * block * (f16 ? 2 : 4);
}

/**
 * Whether this device can run the tiled kernel at all: 256 invocations per workgroup and the smallest
 * tiles' workgroup memory.
 */
export function canUseTiled(backend: KernelContext, f16 = false): boolean {
  const lim = backend.device.limits;
  if (f16 && !backend.features.has('shader-f16')) return false;
  return (
    lim.maxComputeInvocationsPerWorkgroup >= TILED_THREADS &&
    lim.maxComputeWorkgroupSizeX >= TILED_THREADS &&
    lim.maxComputeWorkgroupStorageSize >= tiledStorageBytes(4, f16)
  );
}

/**
 * The tile size for a shape: 128 x 128 where the device has the workgroup memory and the output has at
 * least 256 such tiles (enough to fill a large GPU), else 64 x 64.
 */
export function planTiled(backend: KernelContext, M: number, N: number, batch: number, f16: boolean): TiledConfig {
  const big =
    backend.device.limits.maxComputeWorkgroupStorageSize >= tiledStorageBytes(8, f16) &&
    Math.ceil(M / 128) * Math.ceil(N / 128) * batch >= 256;
  return { block: big ? 8 : 4, f16 };
}

export function matmulTiled(
  backend: KernelContext,
  a: View,
  b: View,
  transA: boolean,
  transB: boolean,
  outShape: Shape,
  config: Partial<TiledConfig> = {},
): GpuHandle {
  const t = wgslType(a.dtype, 'matmul');
  if (wgslType(b.dtype, 'matmul') !== t)
    throw new Error(`matmul: operands must share a dtype, got ${a.dtype} and ${b.dtype}`);
  const f16 = config.f16 ?? false;
  if (f16 && t !== 'f32') throw new Error(`matmul: the f16 kernel needs float32 views, got ${a.dtype}`);
  if (f16 && !backend.features.has('shader-f16'))
    throw new Error("matmul: the f16 kernel needs the adapter feature 'shader-f16', which this device lacks");
  if (!canUseTiled(backend, f16))
    throw new Error(
      `matmul: the tiled kernel needs ${TILED_THREADS} invocations per workgroup and ` +
        `${tiledStorageBytes(4, f16)} bytes of workgroup memory, more than this device allows`,
    );
  const { M, N, K, n, batch, nBatch } = matmulDims(a, transA, outShape);
  const block = config.block ?? planTiled(backend, M, N, nBatch, f16).block;
  if (block === 8 && backend.device.limits.maxComputeWorkgroupStorageSize < tiledStorageBytes(8, f16))
    throw new Error(`matmul: 128 x 128 tiles need ${tiledStorageBytes(8, f16)} bytes of workgroup memory`);
  const out = backend.alloc(n, a.dtype, 'matmul');
  if (n === 0) return out;
  const { br, bshape, abatch, bbatch } = matmulBatch(a, b, batch, M, N, K);
  const cls: TiledClass = {
    t,
    s: f16 ? 'f16' : t,
    transA,
    transB,
    aVec: transA ? M % 4 === 0 : K % 4 === 0,
    bVec: transB ? K % 4 === 0 : N % 4 === 0,
    oVec: N % 4 === 0,
    block,
    br,
  };
  const side = 16 * block;
  const rowBlocks = Math.ceil(M / side);
  const tiles = rowBlocks * nBatch;
  const gridX = Math.ceil(N / side);
  if (gridX > MAX_GROUPS_PER_DIM)
    throw new Error(`matmul: N = ${N} needs ${gridX} workgroups along N, more than ${MAX_GROUPS_PER_DIM}`);
  const uniforms = tiledUniforms(br);
  const program: Program = {
    name: `matmul:wgtiled${side}${f16 ? ':f16' : ''}`,
    cacheKey:
      `matmul-wgtiled|${cls.s}>${t}|${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}|` +
      `a${+cls.aVec}b${+cls.bVec}o${+cls.oVec}|${block}|b${br}`,
    workgroupSize: [TILED_THREADS, 1, 1],
    dispatch: [gridX, Math.min(tiles, MAX_GROUPS_PER_DIM), Math.ceil(tiles / MAX_GROUPS_PER_DIM)],
    wgsl: () => tiledWGSL(cls, uniforms),
  };
  const values = { M, N, K, rowBlocks, tiles, slices: Math.ceil(K / BK), bshape, abatch, bbatch };
  backend.dispatch(program, [a.handle as GpuHandle, b.handle as GpuHandle], [out], uniforms.pack(values));
  return out;
}

interface TiledClass {
  /** Accumulator and output type. */
  t: 'f32' | 'i32';
  /** Staged (workgroup-memory) type. */
  s: 'f32' | 'i32' | 'f16';
  transA: boolean;
  transB: boolean;
  aVec: boolean;
  bVec: boolean;
  oVec: boolean;
  block: 4 | 8;
  br: number;
}

function tiledUniforms(br: number): Uniforms {
  return new Uniforms([
    ['M', 'u32'],
    ['N', 'u32'],
    ['K', 'u32'],
    ['rowBlocks', 'u32'],
    ['tiles', 'u32'],
    ['slices', 'u32'],
    ['bshape', 'u32', br],
    ['abatch', 'u32', br],
    ['bbatch', 'u32', br],
  ]);
}

/**
 * One operand's staging: each thread loads `units` groups of 4 elements of the slice into registers
 * (`load`), then writes them into workgroup memory (`store`).
 * - `along`: the 4 elements of a unit lie along the operand's contiguous axis;
 * - `kMajor`: that axis is the tile's (M for A, N for B), so a unit is one vec4 of workgroup memory;
 *   else it is along K, and the unit's 4 elements go to 4 consecutive k's of one column of it.
 */
function staging(
  name: 'a' | 'b',
  side: number,
  kMajor: boolean,
  vec: boolean,
  T: string,
  S: string,
): { index: string[]; load: string[]; store: string[] } {
  const units = (side * BK) / 4 / TILED_THREADS;
  const W = name === 'a' ? 'As' : 'Bs';
  const base = name === 'a' ? 'm0' : 'n0';
  const ext = name === 'a' ? 'M' : 'N';
  const off = name === 'a' ? 'aoff' : 'boff';
  const zero = T === 'f32' ? '0.0' : '0';
  const index: string[] = [];
  const load: string[] = [];
  const store: string[] = [];
  for (const l of range(units)) {
    const u = `(lid.x + ${l * TILED_THREADS}u)`;
    const reg = `r${name}${l}`;
    if (kMajor) {
      // Unit: 4 consecutive rows (columns) at one k; global address k * ext + x.
      index.push(`let ${reg}k = ${u} / ${side / 4}u;`, `let ${reg}x = ${base} + (${u} % ${side / 4}u) * 4u;`);
      const at = (e: number) => `${off} + (k0 + ${reg}k) * ${ext} + ${reg}x + ${e}u`;
      if (vec)
        load.push(
          `if (k0 + ${reg}k < K && ${reg}x < ${ext}) { ${reg} = vec4<${T}>(${name}[(${at(0)}) / 4u]); } ` +
            `else { ${reg} = vec4<${T}>(${zero}); }`,
        );
      else
        for (const e of range(4))
          load.push(
            `if (k0 + ${reg}k < K && ${reg}x + ${e}u < ${ext}) { ${reg}[${e}] = ${name}[${at(e)}]; } ` +
              `else { ${reg}[${e}] = ${zero}; }`,
          );
      store.push(`${W}[(nb * ${BK}u + ${reg}k) * ${side / 4}u + (${u} % ${side / 4}u)] = vec4<${S}>(${reg});`);
    } else {
      // Unit: 4 consecutive k's of one row (column); global address x * K + k.
      index.push(`let ${reg}x = ${u} / ${BK / 4}u;`, `let ${reg}k = (${u} % ${BK / 4}u) * 4u;`);
      const at = (e: number) => `${off} + (${base} + ${reg}x) * K + k0 + ${reg}k + ${e}u`;
      if (vec)
        load.push(
          `if (${base} + ${reg}x < ${ext} && k0 + ${reg}k < K) { ${reg} = vec4<${T}>(${name}[(${at(0)}) / 4u]); } ` +
            `else { ${reg} = vec4<${T}>(${zero}); }`,
        );
      else
        for (const e of range(4))
          load.push(
            `if (${base} + ${reg}x < ${ext} && k0 + ${reg}k + ${e}u < K) { ${reg}[${e}] = ${name}[${at(e)}]; } ` +
              `else { ${reg}[${e}] = ${zero}; }`,
          );
      for (const e of range(4))
        store.push(
          `${W}[(nb * ${BK}u + ${reg}k + ${e}u) * ${side / 4}u + ${reg}x / 4u][${reg}x % 4u] = ${S}(${reg}[${e}]);`,
        );
    }
  }
  return { index, load, store };
}

function tiledWGSL(c: TiledClass, uniforms: Uniforms): string {
  const T = c.t;
  const S = c.s;
  const V = `vec4<${T}>`;
  const side = 16 * c.block;
  const q = c.block / 4; // vec4 groups of rows (and of columns) per thread
  const unitsA = (side * BK) / 4 / TILED_THREADS;
  const A = staging('a', side, c.transA, c.aVec, T, S);
  const B = staging('b', side, !c.transB, c.bVec, T, S);
  const regs = [...range(unitsA).map((l) => `var ra${l}: ${V};`), ...range(unitsA).map((l) => `var rb${l}: ${V};`)];
  const mad = (x: string, y: string, acc: string) => (T === 'f32' ? `fma(${x}, ${y}, ${acc})` : `${acc} + ${x} * ${y}`);
  const accs: string[] = [];
  const fmas: string[] = [];
  for (const r of range(q)) fmas.push(`let a${r} = ${V}(As[abase + ${16 * r}u]);`);
  for (const cc of range(q)) fmas.push(`let b${cc} = ${V}(Bs[bbase + ${16 * cc}u]);`);
  for (const r of range(q))
    for (const j of range(4)) {
      const row = 4 * r + j;
      for (const cc of range(q)) {
        accs.push(`var acc${row}_${cc} = ${V}(${T === 'f32' ? '0.0' : '0'});`);
        fmas.push(`acc${row}_${cc} = ${mad(`${V}(a${r}[${j}])`, `b${cc}`, `acc${row}_${cc}`)};`);
      }
    }
  const stores: string[] = [];
  for (const r of range(q))
    for (const j of range(4)) {
      const row = 4 * r + j;
      const body = range(q).map((cc) => {
        const col = `(n0 + 4u * (tx + ${16 * cc}u))`;
        if (c.oVec) return `if (${col} < N) { out[(ooff + m * N + ${col}) / 4u] = acc${row}_${cc}; }`;
        return range(4)
          .map((e) => `if (${col} + ${e}u < N) { out[ooff + m * N + ${col} + ${e}u] = acc${row}_${cc}[${e}]; }`)
          .join(' ');
      });
      stores.push(`{ let m = m0 + 4u * (ty + ${16 * r}u) + ${j}u; if (m < M) { ${body.join(' ')} } }`);
    }
  const wgWords = (2 * BK * side) / 4;
  return `${S === 'f16' ? 'enable f16;' : ''}
${uniforms.wgsl}
${declareBindings(
  [
    ['a', c.aVec ? V : T],
    ['b', c.bVec ? V : T],
  ],
  [['out', c.oVec ? V : T]],
)}
var<workgroup> As: array<vec4<${S}>, ${wgWords}>;
var<workgroup> Bs: array<vec4<${S}>, ${wgWords}>;

@compute @workgroup_size(${TILED_THREADS})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  // Workgroup (x, tile): x picks the tile's columns; tile = (row block, batch), flattened over y and z.
  let tile = wid.y + wid.z * ${MAX_GROUPS_PER_DIM}u;
  if (tile >= u_tiles()) { return; }
  let M = u_M();
  let N = u_N();
  let K = u_K();
  let slices = u_slices();
  let rb = tile % u_rowBlocks();
  let bi = tile / u_rowBlocks();
  ${stridedOffsetsWGSL(c.br, 'bi', 'bshape', ['abatch', 'bbatch'])}
  let aoff = off_abatch;
  let boff = off_bbatch;
  let ooff = bi * M * N;
  let m0 = rb * ${side}u;
  let n0 = wid.x * ${side}u;
  let tx = lid.x % 16u;
  let ty = lid.x / 16u;
  ${[...A.index, ...B.index].join('\n  ')}
  ${regs.join(' ')}
  ${accs.join(' ')}
  // Slice 0 into buffer 0.
  {
    let k0 = 0u;
    let nb = 0u;
    ${[...A.load, ...B.load].join('\n    ')}
    ${[...A.store, ...B.store].join('\n    ')}
  }
  workgroupBarrier();
  for (var s = 0u; s < slices; s++) {
    let cur = s % 2u;
    let nb = 1u - cur;
    let k0 = (s + 1u) * ${BK}u;
    let more = s + 1u < slices;
    if (more) {
      ${[...A.load, ...B.load].join('\n      ')}
    }
    for (var kk = 0u; kk < ${BK}u; kk++) {
      let abase = (cur * ${BK}u + kk) * ${side / 4}u + ty;
      let bbase = (cur * ${BK}u + kk) * ${side / 4}u + tx;
      ${fmas.join('\n      ')}
    }
    if (more) {
      ${[...A.store, ...B.store].join('\n      ')}
    }
    workgroupBarrier();
  }
  ${stores.join('\n  ')}
}`;
}
