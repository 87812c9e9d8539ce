// Matmul on subgroup matrices (WGSL `chromium_experimental_subgroup_matrix`: Vulkan cooperative matrices,
// Metal simdgroup matrices), where the adapter exposes 'chromium-experimental-subgroup-matrix' with an
// f16 x f16 -> f32 configuration (Dawn needs the toggles allow_unsafe_apis, and use_vulkan_memory_model on
// Vulkan). float32 views are rounded to f16 as they are staged; products accumulate in f32. Same contract
// as matmul() in matmul.ts otherwise (batched, broadcast, transposed in place). Not chosen by 'auto'
// (matmul-family.ts): only with the backend option matmulKernel = 'subgroup-matrix'.
//
// Layout: 4 subgroups per workgroup, 2 x 2, each owning 2 x 2 result matrices of the configuration's
// cm x cn, so a workgroup computes a (4 cm) x (4 cn) tile of C. K advances 2 ck at a time: every thread
// stages elements of A's and B's slices into workgroup memory as f16 (0 past M, N or K, the transposes
// as index arithmetic), then each subgroup loads its left and right matrices from there and multiplies.
// The results go through workgroup memory to C, element by element inside M x N.
// The workgroup is 4 x the subgroup size, so the adapter's subgroups must have one fixed size.

import type { View } from '../engine/index.js';
import type { Shape } from '../engine/index.js';
import type { KernelContext } from './context.js';
import { matmulBatch, matmulDims } from './matmul-batch.js';
import type { GpuHandle } from './pool.js';
import {
  declareBindings,
  MAX_GROUPS_PER_DIM,
  stridedOffsetsWGSL,
  Uniforms,
  wgslType,
  type Program,
} from './program.js';

export const SUBGROUP_MATRIX_FEATURE = 'chromium-experimental-subgroup-matrix';

interface SubgroupMatrixConfig {
  componentType: string;
  resultComponentType: string;
  M: number;
  N: number;
  K: number;
}

interface AdapterInfoLike {
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  subgroupMatrixConfigs?: readonly SubgroupMatrixConfig[];
}

/** The device's f16 x f16 -> f32 configuration and fixed subgroup size, or null where it has none. */
export function subgroupMatrixSetup(backend: KernelContext): { cfg: SubgroupMatrixConfig; sg: number } | null {
  if (!backend.features.has(SUBGROUP_MATRIX_FEATURE) || !backend.features.has('shader-f16')) return null;
  const info = (backend.device as GPUDevice & { adapterInfo?: AdapterInfoLike }).adapterInfo;
  const sg = info?.subgroupMaxSize ?? 0;
  if (sg === 0 || info?.subgroupMinSize !== sg) return null;
  const cfg = (info?.subgroupMatrixConfigs ?? []).find(
    (c) => c.componentType === 'f16' && c.resultComponentType === 'f32',
  );
  if (!cfg) return null;
  const lim = backend.device.limits;
  if (4 * sg > lim.maxComputeInvocationsPerWorkgroup || 4 * sg > lim.maxComputeWorkgroupSizeX) return null;
  if (storageBytes(cfg) > lim.maxComputeWorkgroupStorageSize) return null;
  return { cfg, sg };
}

export const canUseSubgroupMatrix = (backend: KernelContext): boolean => subgroupMatrixSetup(backend) !== null;

/** Workgroup memory: A's and B's f16 slices and the f32 result tile. */
function storageBytes(c: SubgroupMatrixConfig): number {
  return 2 * (4 * c.M * 2 * c.K) + 2 * (2 * c.K * 4 * c.N) + 4 * (4 * c.M * 4 * c.N);
}

export function matmulSubgroupMatrix(
  backend: KernelContext,
  a: View,
  b: View,
  transA: boolean,
  transB: boolean,
  outShape: Shape,
): GpuHandle {
  if (wgslType(a.dtype, 'matmul') !== 'f32' || wgslType(b.dtype, 'matmul') !== 'f32')
    throw new Error(`matmul: the subgroup-matrix kernel needs float32 views, got ${a.dtype} and ${b.dtype}`);
  const setup = subgroupMatrixSetup(backend);
  if (!setup)
    throw new Error(
      `matmul: the subgroup-matrix kernel needs the adapter feature '${SUBGROUP_MATRIX_FEATURE}' with an ` +
        'f16 x f16 -> f32 configuration and a fixed subgroup size, which this device lacks',
    );
  const { cfg, sg } = setup;
  const { M, N, K, n, batch, nBatch } = matmulDims(a, transA, outShape);
  const out = backend.alloc(n, a.dtype, 'matmul');
  if (n === 0) return out;
  const { br, bshape, abatch, bbatch } = matmulBatch(a, b, batch, M, N, K);
  const BM = 4 * cfg.M;
  const BN = 4 * cfg.N;
  const rowBlocks = Math.ceil(M / BM);
  const tiles = rowBlocks * nBatch;
  const gridX = Math.ceil(N / BN);
  if (gridX > MAX_GROUPS_PER_DIM)
    throw new Error(`matmul: N = ${N} needs ${gridX} workgroups along N, more than ${MAX_GROUPS_PER_DIM}`);
  const uniforms = new Uniforms([
    ['M', 'u32'],
    ['N', 'u32'],
    ['K', 'u32'],
    ['rowBlocks', 'u32'],
    ['tiles', 'u32'],
    ['bshape', 'u32', br],
    ['abatch', 'u32', br],
    ['bbatch', 'u32', br],
  ]);
  const cls = { transA, transB, cm: cfg.M, cn: cfg.N, ck: cfg.K, sg, br };
  const program: Program = {
    name: 'matmul:sgmatrix',
    cacheKey: `matmul-sgmatrix|${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}|${cfg.M}x${cfg.N}x${cfg.K}|sg${sg}|b${br}`,
    workgroupSize: [4 * sg, 1, 1],
    dispatch: [gridX, Math.min(tiles, MAX_GROUPS_PER_DIM), Math.ceil(tiles / MAX_GROUPS_PER_DIM)],
    wgsl: () => sgMatrixWGSL(cls, uniforms),
  };
  const values = { M, N, K, rowBlocks, tiles, bshape, abatch, bbatch };
  backend.dispatch(program, [a.handle as GpuHandle, b.handle as GpuHandle], [out], uniforms.pack(values));
  return out;
}

interface SgClass {
  transA: boolean;
  transB: boolean;
  cm: number;
  cn: number;
  ck: number;
  sg: number;
  br: number;
}

function sgMatrixWGSL(c: SgClass, uniforms: Uniforms): string {
  const BM = 4 * c.cm;
  const BN = 4 * c.cn;
  const BK = 2 * c.ck;
  const WG = 4 * c.sg;
  const L = `subgroup_matrix_left<f16, ${c.ck}, ${c.cm}>`;
  const R = `subgroup_matrix_right<f16, ${c.cn}, ${c.ck}>`;
  const C = `subgroup_matrix_result<f32, ${c.cn}, ${c.cm}>`;
  const aAt = c.transA ? 'aoff + (k0 + kk) * M + m0 + mm' : 'aoff + (m0 + mm) * K + k0 + kk';
  const bAt = c.transB ? 'boff + (n0 + nn) * K + k0 + kk' : 'boff + (k0 + kk) * N + n0 + nn';
  const mma = (i: number, j: number) => `subgroupMatrixMultiplyAccumulate(l${i}, r${j}, acc${i}${j})`;
  const cAt = (i: number, j: number) => `(2u * sy + ${i}u) * ${c.cm * BN}u + (2u * sx + ${j}u) * ${c.cn}u`;
  const frag = [0, 1].flatMap((i) => [0, 1].map((j) => [i, j] as const));
  return `enable f16;
enable chromium_experimental_subgroup_matrix;
${uniforms.wgsl}
${declareBindings(
  [
    ['a', 'f32'],
    ['b', 'f32'],
  ],
  [['out', 'f32']],
)}
var<workgroup> As: array<f16, ${BM * BK}>;
var<workgroup> Bs: array<f16, ${BK * BN}>;
var<workgroup> Cs: array<f32, ${BM * BN}>;

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let tile = wid.y + wid.z * ${MAX_GROUPS_PER_DIM}u;
  if (tile >= u_tiles()) { return; }
  let M = u_M();
  let N = u_N();
  let K = u_K();
  let rb = tile % u_rowBlocks();
  let bi = tile / u_rowBlocks();
  ${stridedOffsetsWGSL(c.br, 'bi', 'bshape', ['abatch', 'bbatch'])}
  let aoff = off_abatch;
  let boff = off_bbatch;
  let m0 = rb * ${BM}u;
  let n0 = wid.x * ${BN}u;
  // Subgroup s = (sy, sx) owns result rows (2 sy + i) * cm and columns (2 sx + j) * cn, i, j < 2.
  let s = lid.x / ${c.sg}u;
  let sy = s / 2u;
  let sx = s % 2u;
  ${frag.map(([i, j]) => `var acc${i}${j} = ${C}();`).join(' ')}
  for (var k0 = 0u; k0 < K; k0 += ${BK}u) {
    for (var e = lid.x; e < ${BM * BK}u; e += ${WG}u) {
      let mm = e / ${BK}u;
      let kk = e % ${BK}u;
      var v = 0.0;
      if (m0 + mm < M && k0 + kk < K) { v = a[${aAt}]; }
      As[e] = f16(v);
    }
    for (var e = lid.x; e < ${BK * BN}u; e += ${WG}u) {
      let kk = e / ${BN}u;
      let nn = e % ${BN}u;
      var v = 0.0;
      if (n0 + nn < N && k0 + kk < K) { v = b[${bAt}]; }
      Bs[e] = f16(v);
    }
    workgroupBarrier();
    for (var ks = 0u; ks < ${BK}u; ks += ${c.ck}u) {
      ${[0, 1]
        .map((i) => `let l${i} = subgroupMatrixLoad<${L}>(&As, (2u * sy + ${i}u) * ${c.cm * BK}u + ks, false, ${BK}u);`)
        .join('\n      ')}
      ${[0, 1]
        .map(
          (j) =>
            `let r${j} = subgroupMatrixLoad<${R}>(&Bs, ks * ${BN}u + (2u * sx + ${j}u) * ${c.cn}u, false, ${BN}u);`,
        )
        .join('\n      ')}
      ${frag.map(([i, j]) => `acc${i}${j} = ${mma(i, j)};`).join('\n      ')}
    }
    workgroupBarrier();
  }
  ${frag.map(([i, j]) => `subgroupMatrixStore(&Cs, ${cAt(i, j)}, acc${i}${j}, false, ${BN}u);`).join('\n  ')}
  workgroupBarrier();
  let ooff = bi * M * N;
  for (var e = lid.x; e < ${BM * BN}u; e += ${WG}u) {
    let m = m0 + e / ${BN}u;
    let n = n0 + e % ${BN}u;
    if (m < M && n < N) { out[ooff + m * N + n] = Cs[e]; }
  }
}`;
}
