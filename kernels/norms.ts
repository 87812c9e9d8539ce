// Fused LayerNorm and RMSNorm over the last axis (FusedKernels.layerNorm, rmsNorm and their backwards)
// as WGSL kernels. Not the composed forms (engine/fused.ts) and not norms over other axes.
//
// Forward: LayerNorm takes the mean, then the sum of squared deviations (two passes, as the CPU reference
// does: accurate where E[x^2] - mean^2 would cancel), then writes y, mean and rstd; RMSNorm one pass for
// the mean square, then y and rstd. With rows enough to fill the adapter (rowreduce.ts's planRowParts
// gives one part), one thread per row does every pass (vec4 units when cols % 4 == 0; the later passes
// read the row from the cache), with no barrier; with fewer rows, one workgroup per row and a tree.
// Backward: dx with one workgroup per row (the two row means of the gradient formula by one tree of
// vec2). dweight and dbias are sums over rows, reduced deterministically without atomics: one thread per
// (chunk of rows, column) writes a partial sum, then one thread per column adds the chunks in order.

import type { View } from '../engine/index.js';
import { sizeOf } from '../engine/index.js';
import type { KernelContext } from './context.js';
import type { GpuHandle } from './pool.js';
import {
  declareBindings,
  FLAT_BUILTINS,
  flatId,
  grid1d,
  Uniforms,
  WGSL_LIB,
  wgslType,
  type Program,
} from './program.js';
import { PART_WG, planRowParts, ROW_MAIN, ROW_WG, unitLoopWGSL, workgroupReduceWGSL } from './rowreduce.js';

type Kind = 'layer' | 'rms';

const rowUniforms = new Uniforms([
  ['rows', 'u32'],
  ['cols', 'u32'],
  ['eps', 'f32'],
]);

function rowsOf(op: string, x: View, weight: View): { rows: number; cols: number } {
  wgslType(x.dtype, op);
  const cols = x.shape[x.shape.length - 1];
  if (sizeOf(weight.shape) !== cols)
    throw new Error(`${op}: weight [${weight.shape}] does not match the last axis of x [${x.shape}]`);
  return { rows: cols === 0 ? 0 : sizeOf(x.shape) / cols, cols };
}

const handles = (...vs: View[]) => vs.map((v) => v.handle as GpuHandle);

// ---------------------------------------------------------------------------------------------------
// Forward.

function normForward(
  backend: KernelContext,
  kind: Kind,
  x: View,
  weight: View,
  bias: View | null,
  eps: number,
  residual: View | null = null,
): { y: GpuHandle; mean: GpuHandle | null; rstd: GpuHandle; sum: GpuHandle | null } {
  const add = residual !== null;
  const op = kind === 'layer' ? 'layerNorm' : add ? 'addRmsNorm' : 'rmsNorm';
  const { rows, cols } = rowsOf(op, x, weight);
  if (residual && (residual.shape.length !== x.shape.length || residual.shape.some((d, i) => d !== x.shape[i])))
    throw new Error(`${op}: r [${residual.shape}] does not match x [${x.shape}]`);
  const sum = add ? backend.alloc(sizeOf(x.shape), x.dtype, op) : null;
  const y = backend.alloc(sizeOf(x.shape), x.dtype, op);
  const mean = kind === 'layer' ? backend.alloc(rows, x.dtype, op) : null;
  const rstd = backend.alloc(rows, x.dtype, op);
  if (rows === 0) return { y, mean, rstd, sum };
  const layer = kind === 'layer';
  const inputs = layer ? handles(x, weight, bias!) : add ? handles(x, residual, weight) : handles(x, weight);
  const outputs = layer ? [y, mean!, rstd] : add ? [sum!, y, rstd] : [y, rstd];
  const plan = planRowParts(backend, rows, cols);
  if (plan.parts === 1) {
    const program = rowForwardProgram(kind, plan.width, rows, add);
    backend.dispatch(program, inputs, outputs, rowUniforms.pack({ rows, cols, eps }));
    return { y, mean, rstd, sum };
  }
  const stats = layer
    ? `var s = 0.0;
  for (var j = lid; j < cols; j += ${ROW_WG}u) { s += x[base + j]; }
  let mu = wg_sum(s, lid) / f32(cols);
  var s2 = 0.0;
  for (var j = lid; j < cols; j += ${ROW_WG}u) { let d = x[base + j] - mu; s2 += d * d; }
  let rs = 1.0 / sqrt(wg_sum(s2, lid) / f32(cols) + u_eps());
  for (var j = lid; j < cols; j += ${ROW_WG}u) { y[base + j] = (x[base + j] - mu) * rs * weight[j] + bias[j]; }
  if (lid == 0u) { mean[row] = mu; rstd[row] = rs; }`
    : add
      ? `var s2 = 0.0;
  for (var j = lid; j < cols; j += ${ROW_WG}u) { let v = x[base + j] + r[base + j]; sum[base + j] = v; s2 += v * v; }
  let rs = 1.0 / sqrt(wg_sum(s2, lid) / f32(cols) + u_eps());
  for (var j = lid; j < cols; j += ${ROW_WG}u) { y[base + j] = sum[base + j] * rs * weight[j]; }
  if (lid == 0u) { rstd[row] = rs; }`
      : `var s2 = 0.0;
  for (var j = lid; j < cols; j += ${ROW_WG}u) { let v = x[base + j]; s2 += v * v; }
  let rs = 1.0 / sqrt(wg_sum(s2, lid) / f32(cols) + u_eps());
  for (var j = lid; j < cols; j += ${ROW_WG}u) { y[base + j] = x[base + j] * rs * weight[j]; }
  if (lid == 0u) { rstd[row] = rs; }`;
  const program: Program = {
    name: op,
    cacheKey: `${op}|f32|wg${ROW_WG}`,
    workgroupSize: [ROW_WG, 1, 1],
    dispatch: grid1d(rows, 1),
    wgsl: () => `${WGSL_LIB}
${rowUniforms.wgsl}
${declareBindings(
  layer
    ? [
        ['x', 'f32'],
        ['weight', 'f32'],
        ['bias', 'f32'],
      ]
    : [['x', 'f32'], ...(add ? [['r', 'f32'] as const] : []), ['weight', 'f32']],
  layer
    ? [
        ['y', 'f32'],
        ['mean', 'f32'],
        ['rstd', 'f32'],
      ]
    : [...(add ? [['sum', 'f32'] as const] : []), ['y', 'f32'], ['rstd', 'f32']],
)}
${workgroupReduceWGSL('wg_sum', 'f32', ROW_WG, (a, b) => `${a} + ${b}`)}
${ROW_MAIN}
  ${stats}
}`,
  };
  backend.dispatch(program, inputs, outputs, rowUniforms.pack({ rows, cols, eps }));
  return { y, mean, rstd, sum };
}

/**
 * The forward with one thread per row: every pass in the thread, over units of `width` columns. With
 * `add` (RMSNorm only) it normalises x + r and writes that sum too.
 */
function rowForwardProgram(kind: Kind, width: 1 | 4, rows: number, add = false): Program {
  const op = kind === 'layer' ? 'layerNorm' : add ? 'addRmsNorm' : 'rmsNorm';
  const layer = kind === 'layer';
  const vt = width === 4 ? 'vec4<f32>' : 'f32';
  const hsum = (v: string) => (width === 4 ? `((${v}.x + ${v}.y) + (${v}.z + ${v}.w))` : v);
  const loop = (body: (j: string) => string) => unitLoopWGSL('0u', 'n', '1u', body);
  const stats = layer
    ? `var s = ${vt}(0.0);
  { ${loop((j) => `s += x[base + ${j}];`)} }
  let mu = ${hsum('s')} / f32(cols);
  let muv = ${vt}(mu);
  var s2 = ${vt}(0.0);
  { ${loop((j) => `let d = x[base + ${j}] - muv; s2 += d * d;`)} }
  let rs = 1.0 / sqrt(${hsum('s2')} / f32(cols) + u_eps());
  let rsv = ${vt}(rs);
  { ${loop((j) => `y[base + ${j}] = (x[base + ${j}] - muv) * rsv * weight[${j}] + bias[${j}];`)} }
  mean[row] = mu;
  rstd[row] = rs;`
    : add
      ? `var s2 = ${vt}(0.0);
  { ${loop((j) => `let v = x[base + ${j}] + r[base + ${j}]; sum[base + ${j}] = v; s2 += v * v;`)} }
  let rs = 1.0 / sqrt(${hsum('s2')} / f32(cols) + u_eps());
  let rsv = ${vt}(rs);
  { ${loop((j) => `y[base + ${j}] = sum[base + ${j}] * rsv * weight[${j}];`)} }
  rstd[row] = rs;`
      : `var s2 = ${vt}(0.0);
  { ${loop((j) => `let v = x[base + ${j}]; s2 += v * v;`)} }
  let rs = 1.0 / sqrt(${hsum('s2')} / f32(cols) + u_eps());
  let rsv = ${vt}(rs);
  { ${loop((j) => `y[base + ${j}] = x[base + ${j}] * rsv * weight[${j}];`)} }
  rstd[row] = rs;`;
  return {
    name: `${op}:rows`,
    cacheKey: `${op}|rows|${vt}|wg${PART_WG}`,
    workgroupSize: [PART_WG, 1, 1],
    dispatch: grid1d(rows, PART_WG),
    wgsl: () => `${WGSL_LIB}
${rowUniforms.wgsl}
${declareBindings(
  layer
    ? [
        ['x', vt],
        ['weight', vt],
        ['bias', vt],
      ]
    : [['x', vt], ...(add ? [['r', vt] as const] : []), ['weight', vt]],
  layer
    ? [
        ['y', vt],
        ['mean', 'f32'],
        ['rstd', 'f32'],
      ]
    : [...(add ? [['sum', vt] as const] : []), ['y', vt], ['rstd', 'f32']],
)}
@compute @workgroup_size(${PART_WG})
fn main(${FLAT_BUILTINS}) {
  let row = ${flatId(PART_WG)};
  if (row >= u_rows()) { return; }
  let cols = u_cols();
  let n = cols / ${width}u;
  let base = row * n;
  ${stats}
}`,
  };
}

export function layerNorm(
  backend: KernelContext,
  x: View,
  weight: View,
  bias: View,
  eps: number,
): { y: GpuHandle; mean: GpuHandle; rstd: GpuHandle } {
  const r = normForward(backend, 'layer', x, weight, bias, eps);
  return { y: r.y, mean: r.mean!, rstd: r.rstd };
}

export function rmsNorm(backend: KernelContext, x: View, weight: View, eps: number): { y: GpuHandle; rstd: GpuHandle } {
  const r = normForward(backend, 'rms', x, weight, null, eps);
  return { y: r.y, rstd: r.rstd };
}

/** sum = x + r and y = rmsNorm(sum): the residual stream's add and the next norm in one kernel. */
export function addRmsNorm(
  backend: KernelContext,
  x: View,
  r: View,
  weight: View,
  eps: number,
): { sum: GpuHandle; y: GpuHandle; rstd: GpuHandle } {
  const out = normForward(backend, 'rms', x, weight, null, eps, r);
  return { sum: out.sum!, y: out.y, rstd: out.rstd };
}

// ---------------------------------------------------------------------------------------------------
// Backward: dx per row.

function normBackwardDx(
  backend: KernelContext,
  kind: Kind,
  x: View,
  weight: View,
  mean: View | null,
  rstd: View,
  dy: View,
  rows: number,
  cols: number,
): GpuHandle {
  const op = kind === 'layer' ? 'layerNormBackward' : 'rmsNormBackward';
  const dx = backend.alloc(rows * cols, x.dtype, op);
  if (rows === 0) return dx;
  const layer = kind === 'layer';
  // LayerNorm: dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * w;
  // RMSNorm:   dx = rstd * (dxhat - xhat * mean(dxhat * xhat)), xhat = x * rstd.
  const xhat = layer ? '(x[base + j] - mu) * rs' : 'x[base + j] * rs';
  const program: Program = {
    name: op,
    cacheKey: `${op}|dx|f32|wg${ROW_WG}`,
    workgroupSize: [ROW_WG, 1, 1],
    dispatch: grid1d(rows, 1),
    wgsl: () => `${WGSL_LIB}
${rowUniforms.wgsl}
${declareBindings(
  layer
    ? [
        ['x', 'f32'],
        ['weight', 'f32'],
        ['mean', 'f32'],
        ['rstd', 'f32'],
        ['dy', 'f32'],
      ]
    : [
        ['x', 'f32'],
        ['weight', 'f32'],
        ['rstd', 'f32'],
        ['dy', 'f32'],
      ],
  [['dx', 'f32']],
)}
${workgroupReduceWGSL('wg_sum2', 'vec2<f32>', ROW_WG, (a, b) => `${a} + ${b}`)}
${ROW_MAIN}
  let mu = ${layer ? 'mean[row]' : '0.0'};
  let rs = rstd[row];
  var acc = vec2<f32>(0.0, 0.0);
  for (var j = lid; j < cols; j += ${ROW_WG}u) {
    let dxhat = dy[base + j] * weight[j];
    acc += vec2<f32>(dxhat, dxhat * ${xhat});
  }
  let m = wg_sum2(acc, lid) / f32(cols);
  for (var j = lid; j < cols; j += ${ROW_WG}u) {
    dx[base + j] = rs * (dy[base + j] * weight[j] - ${layer ? 'm.x - ' : ''}${xhat} * m.y);
  }
}`,
  };
  const inputs = layer ? handles(x, weight, mean!, rstd, dy) : handles(x, weight, rstd, dy);
  backend.dispatch(program, inputs, [dx], rowUniforms.pack({ rows, cols, eps: 0 }));
  return dx;
}

// ---------------------------------------------------------------------------------------------------
// Backward: dweight (and dbias) as column sums over rows, in two deterministic passes.

const COL_WG = 64;
/** Rows per partial sum in the first pass (more when there are very many rows, so partials stay few). */
const chunkRows = (rows: number) => Math.max(64, Math.ceil(rows / 1024));

function normBackwardParams(
  backend: KernelContext,
  kind: Kind,
  x: View,
  mean: View | null,
  rstd: View,
  dy: View,
  rows: number,
  cols: number,
): { dweight: GpuHandle; dbias: GpuHandle | null } {
  const op = kind === 'layer' ? 'layerNormBackward' : 'rmsNormBackward';
  const layer = kind === 'layer';
  const nOut = layer ? 2 : 1;
  if (rows === 0) {
    return {
      dweight: backend.fill([cols], x.dtype, 0) as GpuHandle,
      dbias: layer ? (backend.fill([cols], x.dtype, 0) as GpuHandle) : null,
    };
  }
  const R = chunkRows(rows);
  const chunks = Math.ceil(rows / R);
  const finals = Array.from({ length: nOut }, () => backend.alloc(cols, x.dtype, op));
  const partials =
    chunks === 1 ? finals : Array.from({ length: nOut }, () => backend.alloc(chunks * cols, x.dtype, op));
  const uniforms = new Uniforms([
    ['rows', 'u32'],
    ['cols', 'u32'],
    ['chunk', 'u32'],
    ['chunks', 'u32'],
  ]);
  const values = { rows, cols, chunk: R, chunks };
  const outNames: [string, string][] = layer
    ? [
        ['pw', 'f32'],
        ['pb', 'f32'],
      ]
    : [['pw', 'f32']];
  // Pass 1: thread (k, c) sums rows [k * R, (k + 1) * R) of column c.
  const partial: Program = {
    name: `${op}:colsum`,
    cacheKey: `${op}|colsum|f32`,
    workgroupSize: [COL_WG, 1, 1],
    dispatch: grid1d(chunks * cols, COL_WG),
    wgsl: () => `${uniforms.wgsl}
${declareBindings(
  layer
    ? [
        ['x', 'f32'],
        ['mean', 'f32'],
        ['rstd', 'f32'],
        ['dy', 'f32'],
      ]
    : [
        ['x', 'f32'],
        ['rstd', 'f32'],
        ['dy', 'f32'],
      ],
  outNames,
)}
@compute @workgroup_size(${COL_WG})
fn main(${FLAT_BUILTINS}) {
  let i = ${flatId(COL_WG)};
  let cols = u_cols();
  if (i >= u_chunks() * cols) { return; }
  let k = i / cols;
  let c = i % cols;
  let r0 = k * u_chunk();
  let r1 = min(u_rows(), r0 + u_chunk());
  var sw = 0.0;
  var sb = 0.0;
  for (var r = r0; r < r1; r++) {
    let g = dy[r * cols + c];
    let xhat = ${layer ? '(x[r * cols + c] - mean[r]) * rstd[r]' : 'x[r * cols + c] * rstd[r]'};
    sw += g * xhat;
    sb += g;
  }
  pw[i] = sw;
  ${layer ? 'pb[i] = sb;' : ''}
}`,
  };
  backend.dispatch(
    partial,
    layer ? handles(x, mean!, rstd, dy) : handles(x, rstd, dy),
    partials,
    uniforms.pack(values),
  );
  if (chunks > 1) {
    // Pass 2: thread c adds the chunks' partials of column c, in chunk order.
    const finish: Program = {
      name: `${op}:chunksum`,
      cacheKey: `chunksum|f32|n${nOut}`,
      workgroupSize: [COL_WG, 1, 1],
      dispatch: grid1d(cols, COL_WG),
      wgsl: () => `${uniforms.wgsl}
${declareBindings(
  outNames,
  layer
    ? [
        ['dw', 'f32'],
        ['db', 'f32'],
      ]
    : [['dw', 'f32']],
)}
@compute @workgroup_size(${COL_WG})
fn main(${FLAT_BUILTINS}) {
  let c = ${flatId(COL_WG)};
  let cols = u_cols();
  if (c >= cols) { return; }
  var sw = 0.0;
  var sb = 0.0;
  for (var k = 0u; k < u_chunks(); k++) {
    sw += pw[k * cols + c];
    ${layer ? 'sb += pb[k * cols + c];' : ''}
  }
  dw[c] = sw;
  ${layer ? 'db[c] = sb;' : ''}
}`,
    };
    backend.dispatch(finish, partials, finals, uniforms.pack(values));
    for (const p of partials) backend.free(p);
  }
  return { dweight: finals[0], dbias: layer ? finals[1] : null };
}

export function layerNormBackward(
  backend: KernelContext,
  x: View,
  weight: View,
  mean: View,
  rstd: View,
  dy: View,
): { dx: GpuHandle; dweight: GpuHandle; dbias: GpuHandle } {
  const { rows, cols } = rowsOf('layerNormBackward', x, weight);
  const dx = normBackwardDx(backend, 'layer', x, weight, mean, rstd, dy, rows, cols);
  const { dweight, dbias } = normBackwardParams(backend, 'layer', x, mean, rstd, dy, rows, cols);
  return { dx, dweight, dbias: dbias! };
}

export function rmsNormBackward(
  backend: KernelContext,
  x: View,
  weight: View,
  rstd: View,
  dy: View,
): { dx: GpuHandle; dweight: GpuHandle } {
  const { rows, cols } = rowsOf('rmsNormBackward', x, weight);
  const dx = normBackwardDx(backend, 'rms', x, weight, null, rstd, dy, rows, cols);
  return { dx, dweight: normBackwardParams(backend, 'rms', x, null, rstd, dy, rows, cols).dweight };
}
