// Fused target log-prob (FusedKernels.targetLogProb, targetLogProbBackward) as WGSL kernels: log p(target)
// per row of logits [..., V] without writing the V-wide log-softmax, and its gradient in one pass.
// Not cross-entropy's reduction (engine/fused.ts) and not the full log-softmax (logsoftmax.ts).
//
// Rows are given to threads as in logsoftmax.ts (rowreduce.ts's planRowParts): each of a row's P threads
// keeps an online (max, sum of exp) state over every P-th unit of the row (vec4 units when V % 4 == 0), one
// read of the row. With P = 1, one kernel: forward writes x[t] - lse; backward writes (onehot(t) - softmax)
// * dout over the row, its second read from the cache. With P > 1 (few rows), the parts write their states
// ('targetLogProb:states', shared by both directions) and a second kernel merges them in part order. A
// negative target masks its row: 0, and a zero gradient row, with no pass over the logits. A target >= V
// gives NaN there and is flagged (status.ts): the next read throws the CPU's error.

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
import { ONLINE_LSE_WGSL, PART_WG, planRowParts, rowStatsWGSL, unitLoopWGSL, type RowPartsPlan } from './rowreduce.js';
import { STATUS_WGSL } from './status.js';

const uniforms = new Uniforms([
  ['rows', 'u32'],
  ['units', 'u32'],
  ['parts', 'u32'],
  ['cols', 'u32'],
  ['check', 'u32'],
]);

/** A check id whose error is the CPU's for a target out of range (engine/cpu/fused.ts). */
const targetCheck = (backend: KernelContext, cols: number) =>
  backend.status.register(
    (_kind, _index, target) => `targetLogProb: target ${target} is out of range for ${cols} classes`,
  );

/** Flags the row's target when it is out of range (the program binds `status`). */
const FLAG_TARGET = 'if (tg >= 0 && u32(tg) >= cols) { status_flag(u_check(), row, 0u, u32(tg)); }';

function check(op: string, logits: View, targets: View): { rows: number; cols: number } {
  wgslType(logits.dtype, op);
  if (targets.dtype !== 'int32') throw new Error(`${op}: targets must be int32, got ${targets.dtype}`);
  const cols = logits.shape[logits.shape.length - 1];
  const rows = sizeOf(targets.shape);
  if (rows * cols !== sizeOf(logits.shape))
    throw new Error(`${op}: targets [${targets.shape}] do not match logits [${logits.shape}]`);
  return { rows, cols };
}

/** A thread's row and part: one thread per row, or P threads per row. */
const PER_ROW_INDEX = 'if (t >= u_rows()) { return; }\n  let row = t;\n  let p = 0u;';
const PER_PART_INDEX = 'if (t >= u_rows() * P) { return; }\n  let row = t / P;\n  let p = t % P;';

const vtOf = (plan: RowPartsPlan) => (plan.width === 4 ? 'vec4<f32>' : 'f32');

/** The logit of column c of the row at unit offset base. */
const logitAt = (plan: RowPartsPlan, c: string) =>
  plan.width === 4 ? `logits[base + ${c} / 4u][${c} % 4u]` : `logits[base + ${c}]`;

/** The row's merged state: its own statistics (P = 1) or the merge of its parts' states. */
const rowState = (merge: boolean) =>
  merge
    ? `var st = lse_empty();
  for (var q = 0u; q < P; q++) { st = lse_merge(st, states[row * P + q]); }`
    : 'let st = row_stats(base, p, n, P);';

/**
 * A program over (row, part) threads, or over rows (threads = rows, parts read from the uniform for the
 * merge). `body` runs with row, p, P, n, base, cols and tg (the row's target) in scope.
 */
function program(
  name: string,
  plan: RowPartsPlan,
  threads: number,
  inputs: [string, string][],
  outputs: [string, string][],
  stats: boolean,
  body: string,
  perRow = false,
): Program {
  const vt = vtOf(plan);
  return {
    name,
    cacheKey: `${name}|${vt}|wg${PART_WG}`,
    workgroupSize: [PART_WG, 1, 1],
    dispatch: grid1d(threads, PART_WG),
    wgsl: () => `${WGSL_LIB}
${ONLINE_LSE_WGSL}
${uniforms.wgsl}
${declareBindings(inputs, outputs)}
${outputs.some(([o]) => o === 'status') ? STATUS_WGSL : ''}
${stats ? rowStatsWGSL('logits', vt) : ''}
@compute @workgroup_size(${PART_WG})
fn main(${FLAT_BUILTINS}) {
  let t = ${flatId(PART_WG)};
  let P = u_parts();
  ${perRow ? PER_ROW_INDEX : PER_PART_INDEX}
  let n = u_units();
  let cols = u_cols();
  let base = row * n;
  let tg = targets[row];
  ${body}
}`,
  };
}

/** Each part's state over its units; a masked row's parts read nothing. */
function statesProgram(plan: RowPartsPlan, rows: number): Program {
  return program(
    'targetLogProb:states',
    plan,
    rows * plan.parts,
    [
      ['logits', vtOf(plan)],
      ['targets', 'i32'],
    ],
    [['states', 'vec2<f32>']],
    true,
    `if (tg < 0) { states[t] = lse_empty(); return; }
  ${rowState(false)}
  states[t] = st;`,
  );
}

export function targetLogProb(backend: KernelContext, logits: View, targets: View): GpuHandle {
  const { rows, cols } = check('targetLogProb', logits, targets);
  const out = backend.alloc(rows, logits.dtype, 'targetLogProb');
  if (rows === 0) return out;
  const plan = planRowParts(backend, rows, cols);
  const merge = plan.parts > 1;
  const u = uniforms.pack({ rows, units: plan.units, parts: plan.parts, cols, check: targetCheck(backend, cols) });
  const ins: [string, string][] = [
    ['logits', vtOf(plan)],
    ['targets', 'i32'],
    ...(merge ? [['states', 'vec2<f32>'] as [string, string]] : []),
  ];
  // One thread per row writes its log-prob (after merging the parts' states when there are several).
  const write = program(
    `targetLogProb:${merge ? 'finish' : 'fused'}`,
    plan,
    rows,
    ins,
    [
      ['out', 'f32'],
      ['status', 'atomic<u32>'],
    ],
    !merge,
    `${FLAG_TARGET}
  if (tg < 0) { out[row] = 0.0; return; }
  ${merge ? rowState(true) : 'let st = row_stats(base, 0u, n, 1u);'}
  let l = lse_parts(st);
  out[row] = select(nan_f32(), (${logitAt(plan, 'min(u32(tg), cols - 1u)')} - l.x) - l.y, u32(tg) < cols);`,
    true,
  );
  const inputs = [logits.handle as GpuHandle, targets.handle as GpuHandle];
  if (!merge) {
    backend.dispatch(write, inputs, [out, backend.status.handle], u);
    return out;
  }
  const states = backend.alloc(2 * rows * plan.parts, 'float32', 'targetLogProb');
  backend.dispatch(statesProgram(plan, rows), inputs, [states], u);
  backend.dispatch(write, [...inputs, states], [out, backend.status.handle], u);
  backend.free(states);
  return out;
}

/** dlogits = (onehot(target) - softmax(logits)) * dout per row; zero on masked rows. */
export function targetLogProbBackward(backend: KernelContext, logits: View, targets: View, dout: View): GpuHandle {
  const { rows, cols } = check('targetLogProbBackward', logits, targets);
  const out = backend.alloc(rows * cols, logits.dtype, 'targetLogProbBackward');
  if (rows === 0) return out;
  const plan = planRowParts(backend, rows, cols);
  const merge = plan.parts > 1;
  const vt = vtOf(plan);
  const u = uniforms.pack({ rows, units: plan.units, parts: plan.parts, cols, check: targetCheck(backend, cols) });
  // Column indices of unit j, to compare with the target.
  const colsOf = (j: string) => (plan.width === 4 ? `vec4<u32>(4u * ${j}) + vec4<u32>(0u, 1u, 2u, 3u)` : j);
  const ins: [string, string][] = [
    ['logits', vt],
    ['targets', 'i32'],
    ['dout', 'f32'],
    ...(merge ? [['states', 'vec2<f32>'] as [string, string]] : []),
  ];
  const write = program(
    `targetLogProbBackward:${merge ? 'finish' : 'fused'}`,
    plan,
    rows * plan.parts,
    ins,
    [
      ['dlogits', vt],
      ['status', 'atomic<u32>'],
    ],
    !merge,
    `if (p == 0u) { ${FLAG_TARGET} }
  if (tg < 0) {
    ${unitLoopWGSL('p', 'n', 'P', (j) => `dlogits[base + ${j}] = ${vt}(0.0);`)}
    return;
  }
  ${rowState(merge)}
  let l = lse_parts(st);
  let lm = ${vt}(l.x);
  let ls = ${vt}(l.y);
  // A target out of range poisons the row with NaN (the CPU throws).
  let d = ${vt}(select(nan_f32(), dout[row], u32(tg) < cols));
  let tv = ${plan.width === 4 ? 'vec4<u32>(u32(tg))' : 'u32(tg)'};
  ${unitLoopWGSL(
    'p',
    'n',
    'P',
    (j) =>
      `let pj = exp((logits[base + ${j}] - lm) - ls);\n` +
      `dlogits[base + ${j}] = select(${vt}(0.0), d, ${colsOf(j)} == tv) - pj * d;`,
  )}`,
  );
  const inputs = [logits.handle as GpuHandle, targets.handle as GpuHandle, dout.handle as GpuHandle];
  if (!merge) {
    backend.dispatch(write, inputs, [out, backend.status.handle], u);
    return out;
  }
  const states = backend.alloc(2 * rows * plan.parts, 'float32', 'targetLogProbBackward');
  backend.dispatch(statesProgram(plan, rows), inputs.slice(0, 2), [states], u);
  backend.dispatch(write, [...inputs, states], [out, backend.status.handle], u);
  backend.free(states);
  return out;
}
