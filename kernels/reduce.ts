// Reduction kernels: sum / max / min over any set of axes, keepdim output (Backend.reduce).
// Not fused reductions (softmax, norms: their own files) and not a multi-pass reduction for huge rows.
//
// Two kernels. Rows: when the reduced axes are the trailing ones (after merging adjacent axes) and a row
// is long, one workgroup per row: strided partial results per thread, then a tree in workgroup memory.
// General: one thread per output element, looping over the reduced elements through uniform shapes and
// strides (reducing leading axes, e.g. a bias gradient, reads coalesced across threads).
// Sums accumulate in float32 (the CPU uses float64); max / min propagate NaN, as Math.max does.

import type { ReduceOp, View } from '../engine/index.js';
import { sizeOf, stridesOf } from '../engine/index.js';
import type { KernelContext } from './context.js';
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

const WG = 256;
/** Rows at least this long take the workgroup-per-row kernel. */
const ROW_KERNEL_MIN = 64;

/**
 * The identity and the combine step of a reduction, as WGSL. Sums accumulate in the input type, as on
 * GPUs generally (the CPU reference accumulates in float64); the row kernel's tree keeps the error near
 * pairwise summation. A compensated (Kahan) sum was tried and dropped: Mesa's compiler reassociates float
 * maths and folds the compensation away, so it would be a promise the driver does not keep.
 */
function combiner(op: ReduceOp, t: 'f32' | 'i32'): { init: string; combine: (acc: string, v: string) => string } {
  const combine = (a: string, v: string) =>
    op === 'sum' ? `${a} + ${v}` : t === 'f32' ? `${op}_nan(${a}, ${v})` : `${op}(${a}, ${v})`;
  const init =
    op === 'sum'
      ? t === 'f32'
        ? '0.0'
        : '0'
      : t === 'f32'
        ? op === 'max'
          ? 'f32_bits(0xff800000u)'
          : 'f32_bits(0x7f800000u)'
        : op === 'max'
          ? '(-2147483647 - 1)'
          : '2147483647';
  return { init, combine };
}

/**
 * Splits x's dimensions into runs of kept and reduced axes, merging neighbours of one kind and dropping
 * size-1 axes (x is contiguous, so neighbours always merge).
 */
function runs(shape: readonly number[], axes: readonly number[]): { size: number; reduced: boolean }[] {
  const out: { size: number; reduced: boolean }[] = [];
  shape.forEach((d, i) => {
    if (d === 1) return;
    const reduced = axes.includes(i);
    const last = out[out.length - 1];
    if (last && last.reduced === reduced) last.size *= d;
    else out.push({ size: d, reduced });
  });
  return out;
}

export function reduce(backend: KernelContext, op: ReduceOp, x: View, axes: readonly number[]): GpuHandle {
  const t = wgslType(x.dtype, op);
  const nOut = sizeOf(x.shape.map((d, i) => (axes.includes(i) ? 1 : d)));
  const out = backend.alloc(nOut, x.dtype, op);
  if (nOut === 0) return out;
  const r = runs(x.shape, axes);
  const strides = stridesOf(r.map((d) => d.size));
  const kept = r.map((d, i) => ({ ...d, stride: strides[i] })).filter((d) => !d.reduced);
  const red = r.map((d, i) => ({ ...d, stride: strides[i] })).filter((d) => d.reduced);
  const cb = combiner(op, t);
  const rowLen = red.length === 1 && r[r.length - 1].reduced ? red[0].size : 0;
  if (rowLen >= ROW_KERNEL_MIN) {
    rowReduce(backend, op, t, cb, x, out, nOut, rowLen);
  } else {
    generalReduce(backend, op, t, cb, x, out, nOut, kept, red);
  }
  return out;
}

function rowReduce(
  backend: KernelContext,
  op: ReduceOp,
  t: string,
  cb: ReturnType<typeof combiner>,
  x: View,
  out: GpuHandle,
  rows: number,
  cols: number,
): void {
  const uniforms = new Uniforms([
    ['rows', 'u32'],
    ['cols', 'u32'],
  ]);
  const program: Program = {
    name: `reduce:${op}:rows`,
    cacheKey: `reduce|rows|${op}|${t}`,
    workgroupSize: [WG, 1, 1],
    dispatch: grid1d(rows, 1),
    wgsl: () => `${WGSL_LIB}
${uniforms.wgsl}
${declareBindings([['x', t]], [['out', t]])}
var<workgroup> part: array<${t}, ${WG}>;
@compute @workgroup_size(${WG})
fn main(${FLAT_BUILTINS}) {
  let row = ${flatGroup()};
  let lid = ${localId()};
  if (row >= u_rows()) { return; }  // uniform: the whole workgroup leaves together
  let cols = u_cols();
  let base = row * cols;
  var acc: ${t} = ${cb.init};
  for (var j = lid; j < cols; j += ${WG}u) { acc = ${cb.combine('acc', 'x[base + j]')}; }
  part[lid] = acc;
  workgroupBarrier();
  for (var s = ${WG / 2}u; s > 0u; s = s >> 1u) {
    if (lid < s) { part[lid] = ${cb.combine('part[lid]', 'part[lid + s]')}; }
    workgroupBarrier();
  }
  if (lid == 0u) { out[row] = part[0]; }
}`,
  };
  backend.dispatch(program, [x.handle as GpuHandle], [out], uniforms.pack({ rows, cols }));
}

type Run = { size: number; stride: number };

function generalReduce(
  backend: KernelContext,
  op: ReduceOp,
  t: string,
  cb: ReturnType<typeof combiner>,
  x: View,
  out: GpuHandle,
  nOut: number,
  kept: Run[],
  red: Run[],
): void {
  // The innermost reduced run is a plain loop; the others are decomposed once per inner loop.
  const inner = red.length > 0 ? red[red.length - 1] : { size: 1, stride: 0 };
  const outer = red.slice(0, -1);
  const kr = kept.length;
  const or = outer.length;
  const uniforms = new Uniforms([
    ['n', 'u32'],
    ['inner', 'u32'],
    ['inner_stride', 'u32'],
    ['outer_count', 'u32'],
    ['kshape', 'u32', kr],
    ['kstride', 'u32', kr],
    ['oshape', 'u32', or],
    ['ostride', 'u32', or],
  ]);
  const program: Program = {
    name: `reduce:${op}`,
    cacheKey: `reduce|general|${op}|${t}|k${kr}|o${or}`,
    workgroupSize: [WG, 1, 1],
    dispatch: grid1d(nOut, WG),
    wgsl: () => `${WGSL_LIB}
${uniforms.wgsl}
${declareBindings([['x', t]], [['out', t]])}
@compute @workgroup_size(${WG})
fn main(${FLAT_BUILTINS}) {
  let i = ${flatId(WG)};
  if (i >= u_n()) { return; }
  var base = 0u;
  { var rem = i;
    for (var d = ${kr}u; d > 0u; d--) {
      let k = d - 1u; let c = rem % u_kshape(k); rem = rem / u_kshape(k); base += c * u_kstride(k);
    } }
  var acc: ${t} = ${cb.init};
  let inner = u_inner();
  let jstride = u_inner_stride();
  for (var o = 0u; o < u_outer_count(); o++) {
    var off = base;
    { var rem = o;
      for (var d = ${or}u; d > 0u; d--) {
        let k = d - 1u; let c = rem % u_oshape(k); rem = rem / u_oshape(k); off += c * u_ostride(k);
      } }
    for (var j = 0u; j < inner; j++) { acc = ${cb.combine('acc', 'x[off + j * jstride]')}; }
  }
  out[i] = acc;
}`,
  };
  backend.dispatch(
    program,
    [x.handle as GpuHandle],
    [out],
    uniforms.pack({
      n: nOut,
      inner: inner.size,
      inner_stride: inner.stride,
      outer_count: sizeOf(outer.map((d) => d.size)),
      kshape: kept.map((d) => d.size),
      kstride: kept.map((d) => d.stride),
      oshape: outer.map((d) => d.size),
      ostride: outer.map((d) => d.stride),
    }),
  );
}
