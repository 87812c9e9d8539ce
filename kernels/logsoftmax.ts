// Fused log-softmax over the last axis (FusedKernels.logSoftmax, logSoftmaxBackward) as WGSL kernels.
// Not softmax over other axes (engine/fused.ts composes those) and not the target-only variant
// (targetlogprob.ts, which never writes the V-wide output).
//
// Forward: threads own rows, not workgroups. Each of a row's P threads (its "parts") takes every P-th unit of
// the row (a vec4 of columns when cols % 4 == 0, else one column) and keeps an online (max, sum of exp)
// state over them, so the statistics take ONE read of the row (rowreduce.ts's row_stats); then it writes
// its units as x - lse (as (x - max) - log(sum), see rowreduce.ts). With P = 1 (enough rows to fill the
// adapter) that is one kernel with no workgroup memory and no barrier, and the second read of a row comes
// from the cache; with P > 1 (few rows), the parts write their states to a small buffer and a second
// kernel merges them (in part order, so deterministically) before writing. Why not a workgroup per row
// and a tree: on lavapipe, a kernel with a barrier ran its streaming loop about twice as slowly as one
// without (1024 x 8192: 57 ms with the tree, about 21 ms like this). Backward: one workgroup per row,
// sum(dy) by the tree, then dx = dy - exp(y) * sum.
// float32 accumulators (the CPU reference uses float64). Semantics of -Inf / +Inf / NaN as engine/cpu/fused.ts.

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
import {
  ONLINE_LSE_WGSL,
  PART_WG,
  planRowParts,
  ROW_MAIN,
  ROW_WG,
  rowStatsWGSL,
  unitLoopWGSL,
  workgroupReduceWGSL,
  type RowPartsPlan,
} from './rowreduce.js';

const uniforms = new Uniforms([
  ['rows', 'u32'],
  ['cols', 'u32'],
]);
const partUniforms = new Uniforms([
  ['rows', 'u32'],
  ['units', 'u32'],
  ['parts', 'u32'],
]);

function rowsOf(x: View): { rows: number; cols: number } {
  const cols = x.shape.length === 0 ? 1 : x.shape[x.shape.length - 1];
  return { rows: cols === 0 ? 0 : sizeOf(x.shape) / cols, cols };
}

/** The forward's layout (rowreduce.ts's planRowParts; tests and the benchmark read it). */
export const planLogSoftmax = planRowParts;

export function logSoftmax(backend: KernelContext, x: View): GpuHandle {
  wgslType(x.dtype, 'logSoftmax');
  const out = backend.alloc(sizeOf(x.shape), x.dtype, 'logSoftmax');
  const { rows, cols } = rowsOf(x);
  if (rows === 0) return out;
  const plan = planLogSoftmax(backend, rows, cols);
  const u = partUniforms.pack({ rows, units: plan.units, parts: plan.parts });
  const xh = x.handle as GpuHandle;
  if (plan.parts === 1) {
    backend.dispatch(forwardProgram('fused', plan, rows), [xh], [out], u);
    return out;
  }
  const states = backend.alloc(2 * rows * plan.parts, 'float32', 'logSoftmax');
  backend.dispatch(forwardProgram('states', plan, rows), [xh], [states], u);
  backend.dispatch(forwardProgram('finish', plan, rows), [xh, states], [out], u);
  backend.free(states);
  return out;
}

/**
 * The forward's three entry points, one thread per (row, part): 'fused' (parts = 1: statistics, then the
 * write), 'states' (each part's state into `states`) and 'finish' (merge the row's states, then write).
 */
function forwardProgram(kind: 'fused' | 'states' | 'finish', plan: RowPartsPlan, rows: number): Program {
  const vt = plan.width === 4 ? 'vec4<f32>' : 'f32';
  const inputs: [string, string][] =
    kind === 'finish'
      ? [
          ['x', vt],
          ['states', 'vec2<f32>'],
        ]
      : [['x', vt]];
  const outputs: [string, string][] = kind === 'states' ? [['states', 'vec2<f32>']] : [['out', vt]];
  const stats =
    kind === 'finish'
      ? `var st = lse_empty();
  for (var q = 0u; q < P; q++) { st = lse_merge(st, states[row * P + q]); }`
      : 'let st = row_stats(base, p, n, P);';
  const tail =
    kind === 'states'
      ? 'states[t] = st;'
      : `let l = lse_parts(st);
  let lm = ${vt}(l.x);
  let ls = ${vt}(l.y);
  ${unitLoopWGSL('p', 'n', 'P', (j) => `out[base + ${j}] = (x[base + ${j}] - lm) - ls;`)}`;
  return {
    name: `logSoftmax:${kind}`,
    cacheKey: `logSoftmax|${kind}|${vt}|wg${PART_WG}`,
    workgroupSize: [PART_WG, 1, 1],
    dispatch: grid1d(rows * plan.parts, PART_WG),
    wgsl: () => `${WGSL_LIB}
${ONLINE_LSE_WGSL}
${partUniforms.wgsl}
${declareBindings(inputs, outputs)}
${kind === 'finish' ? '' : rowStatsWGSL('x', vt)}
@compute @workgroup_size(${PART_WG})
fn main(${FLAT_BUILTINS}) {
  let t = ${flatId(PART_WG)};
  let P = u_parts();
  if (t >= u_rows() * P) { return; }
  let row = t / P;
  let p = t % P;
  let n = u_units();
  let base = row * n;
  ${stats}
  ${tail}
}`,
  };
}

/** dx = dy - exp(y) * sum(dy) along the last axis, from the forward's output y. */
export function logSoftmaxBackward(backend: KernelContext, y: View, dy: View): GpuHandle {
  wgslType(y.dtype, 'logSoftmaxBackward');
  const out = backend.alloc(sizeOf(y.shape), y.dtype, 'logSoftmaxBackward');
  const { rows, cols } = rowsOf(y);
  if (rows === 0) return out;
  const program: Program = {
    name: 'logSoftmaxBackward',
    cacheKey: `logSoftmaxBackward|f32|wg${ROW_WG}`,
    workgroupSize: [ROW_WG, 1, 1],
    dispatch: grid1d(rows, 1),
    wgsl: () => `${WGSL_LIB}
${uniforms.wgsl}
${declareBindings(
  [
    ['y', 'f32'],
    ['dy', 'f32'],
  ],
  [['dx', 'f32']],
)}
${workgroupReduceWGSL('wg_sum', 'f32', ROW_WG, (a, b) => `${a} + ${b}`)}
${ROW_MAIN}
  var acc = 0.0;
  for (var j = lid; j < cols; j += ${ROW_WG}u) { acc += dy[base + j]; }
  let total = wg_sum(acc, lid);
  for (var j = lid; j < cols; j += ${ROW_WG}u) { dx[base + j] = dy[base + j] - exp(y[base + j]) * total; }
}`,
  };
  backend.dispatch(program, [y.handle as GpuHandle, dy.handle as GpuHandle], [out], uniforms.pack({ rows, cols }));
  return out;
}
