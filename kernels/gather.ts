// Index kernels: gather ('select' = index_select / embedding lookup, 'along' = take-along-axis) and its
// adjoint scatterAdd (embedding and gather backward). Not strided copies (movement.ts).
// An index out of range reads 0 in gather and is flagged (status.ts: the next read throws the CPU's error);
// in scatterAdd it contributes nothing (the CPU throws).
//
// scatterAdd is deterministic: one thread per OUTPUT element loops over the index and sums the matching
// source elements in index order, so results never depend on thread timing (float atomics would: WGSL has
// no f32 atomic add, and a compare-exchange loop adds in arbitrary order). The price is work proportional
// to outputs x index length along the axis; for a large vocabulary a sort-based kernel would be faster.

import type { View } from '../engine/index.js';
import { sizeOf, stridesOf, type Shape } from '../engine/index.js';
import type { KernelContext } from './context.js';
import type { GpuHandle } from './pool.js';
import { STATUS_WGSL } from './status.js';
import { declareBindings, FLAT_BUILTINS, flatId, grid1d, Uniforms, wgslType, type Program } from './program.js';

const WG = 256;
type Mode = 'select' | 'along';

const handle = (v: View) => v.handle as GpuHandle;

/** A check id whose error is the CPU's for an index out of range (engine/cpu/backend.ts). */
const indexCheck = (backend: KernelContext, axis: number, xShape: Shape) =>
  backend.status.register(
    (_kind, _index, idx) =>
      `gather: index ${idx | 0} is out of range for dimension ${axis} of size ${xShape[axis]} ` +
      `(x [${xShape.join(', ')}])`,
  );

/** Flags an index out of range (the program binds `status`); the read of the tensor then throws. */
const FLAG_INDEX = 'status_flag(u_check(), i, 0u, u32(idx));';

function checkIndex(op: string, index: View): void {
  if (index.dtype !== 'int32') throw new Error(`webgpu ${op}: index must be int32, got ${index.dtype}`);
}

/** [outer, N, inner] around `axis`. */
function around(shape: Shape, axis: number): [number, number, number] {
  return [sizeOf(shape.slice(0, axis)), shape[axis], sizeOf(shape.slice(axis + 1))];
}

export function gather(backend: KernelContext, x: View, index: View, axis: number, mode: Mode): GpuHandle {
  wgslType(x.dtype, 'gather');
  checkIndex('gather', index);
  return mode === 'select' ? gatherSelect(backend, x, index, axis) : gatherAlong(backend, x, index, axis);
}

function gatherSelect(backend: KernelContext, x: View, index: View, axis: number): GpuHandle {
  const [outer, N, inner] = around(x.shape, axis);
  const m = sizeOf(index.shape);
  const n = outer * m * inner;
  const out = backend.alloc(n, x.dtype, 'gather');
  if (n === 0) return out;
  const uniforms = new Uniforms([
    ['n', 'u32'],
    ['m', 'u32'],
    ['N', 'u32'],
    ['inner', 'u32'],
    ['check', 'u32'],
  ]);
  const program: Program = {
    name: 'gather:select',
    cacheKey: 'gather|select',
    workgroupSize: [WG, 1, 1],
    dispatch: grid1d(n, WG),
    wgsl: () => `${uniforms.wgsl}
${declareBindings(
  [
    ['x', 'u32'],
    ['index', 'i32'],
  ],
  [
    ['out', 'u32'],
    ['status', 'atomic<u32>'],
  ],
)}
${STATUS_WGSL}
@compute @workgroup_size(${WG})
fn main(${FLAT_BUILTINS}) {
  let i = ${flatId(WG)};
  if (i >= u_n()) { return; }
  let inner = u_inner();
  let k = i % inner;
  let j = (i / inner) % u_m();
  let o = i / (inner * u_m());
  let idx = index[j];
  if (idx < 0 || u32(idx) >= u_N()) { ${FLAG_INDEX} out[i] = 0u; return; }
  out[i] = x[(o * u_N() + u32(idx)) * inner + k];
}`,
  };
  const check = indexCheck(backend, axis, x.shape);
  backend.dispatch(
    program,
    [handle(x), handle(index)],
    [out, backend.status.handle],
    uniforms.pack({ n, m, N, inner, check }),
  );
  return out;
}

function gatherAlong(backend: KernelContext, x: View, index: View, axis: number): GpuHandle {
  const n = sizeOf(index.shape);
  const out = backend.alloc(n, x.dtype, 'gather');
  if (n === 0) return out;
  const rank = index.shape.length;
  const xs = stridesOf(x.shape);
  const uniforms = new Uniforms([
    ['n', 'u32'],
    ['N', 'u32'],
    ['axis_stride', 'u32'],
    ['ishape', 'u32', rank],
    ['xstride', 'u32', rank],
    ['check', 'u32'],
  ]);
  const program: Program = {
    name: 'gather:along',
    cacheKey: `gather|along|r${rank}`,
    workgroupSize: [WG, 1, 1],
    dispatch: grid1d(n, WG),
    wgsl: () => `${uniforms.wgsl}
${declareBindings(
  [
    ['x', 'u32'],
    ['index', 'i32'],
  ],
  [
    ['out', 'u32'],
    ['status', 'atomic<u32>'],
  ],
)}
${STATUS_WGSL}
@compute @workgroup_size(${WG})
fn main(${FLAT_BUILTINS}) {
  let i = ${flatId(WG)};
  if (i >= u_n()) { return; }
  var off = 0u;
  { var rem = i;
    for (var d = ${rank}u; d > 0u; d--) {
      let k = d - 1u; let c = rem % u_ishape(k); rem = rem / u_ishape(k); off += c * u_xstride(k);
    } }
  let idx = index[i];
  if (idx < 0 || u32(idx) >= u_N()) { ${FLAG_INDEX} out[i] = 0u; return; }
  out[i] = x[off + u32(idx) * u_axis_stride()];
}`,
  };
  // The axis contributes through the index value, not the position: its stride in the walk is 0.
  const xstride = xs.map((s, k) => (k === axis ? 0 : s));
  backend.dispatch(
    program,
    [handle(x), handle(index)],
    [out, backend.status.handle],
    uniforms.pack({
      n,
      N: x.shape[axis],
      axis_stride: xs[axis],
      ishape: index.shape,
      xstride,
      check: indexCheck(backend, axis, x.shape),
    }),
  );
  return out;
}

export function scatterAdd(
  backend: KernelContext,
  src: View,
  index: View,
  axis: number,
  mode: Mode,
  outShape: Shape,
): GpuHandle {
  const t = wgslType(src.dtype, 'scatterAdd');
  checkIndex('scatterAdd', index);
  const n = sizeOf(outShape);
  const out = backend.alloc(n, src.dtype, 'scatterAdd');
  if (n === 0) return out;
  const zero = t === 'f32' ? '0.0' : '0';
  if (mode === 'select') {
    const [outer, N, inner] = around(outShape, axis);
    const m = sizeOf(index.shape);
    // A thread sums U units (vec4s when rows allow) of one output row, so each index load serves up to 16
    // columns: an embedding's gradient [107, 64] from 512 tokens read the index 3.5M times one column a thread.
    const vec = inner % 4 === 0;
    const units = vec ? inner / 4 : inner;
    const U = units % 4 === 0 ? 4 : 1;
    const vt = vec ? `vec4<${t}>` : t;
    const uniforms = new Uniforms([
      ['n', 'u32'],
      ['m', 'u32'],
      ['N', 'u32'],
      ['groups', 'u32'],
      ['units', 'u32'],
    ]);
    const threads = outer * N * (units / U);
    const us = Array.from({ length: U }, (_, u) => u);
    const program: Program = {
      name: 'scatterAdd:select',
      cacheKey: `scatterAdd|select|${vt}|u${U}`,
      workgroupSize: [WG, 1, 1],
      dispatch: grid1d(threads, WG),
      wgsl: () => `${uniforms.wgsl}
${declareBindings(
  [
    ['src', vt],
    ['index', 'i32'],
  ],
  [['out', vt]],
)}
@compute @workgroup_size(${WG})
fn main(${FLAT_BUILTINS}) {
  let i = ${flatId(WG)};
  if (i >= u_n()) { return; }
  let units = u_units();
  let m = u_m();
  let k = (i % u_groups()) * ${U}u;  // this thread's first unit of the row
  let row = i32((i / u_groups()) % u_N());
  let o = i / (u_groups() * u_N());
  ${us.map((u) => `var acc${u} = ${vt}(${zero});`).join(' ')}
  for (var j = 0u; j < m; j++) {
    if (index[j] == row) {
      let s = (o * m + j) * units + k;
      ${us.map((u) => `acc${u} += src[s + ${u}u];`).join(' ')}
    }
  }
  let d = (o * u_N() + u32(row)) * units + k;
  ${us.map((u) => `out[d + ${u}u] = acc${u};`).join(' ')}
}`,
    };
    const values = { n: threads, m, N, groups: units / U, units };
    backend.dispatch(program, [handle(src), handle(index)], [out], uniforms.pack(values));
    return out;
  }
  // 'along': out position p gathers src[q] for every q that differs from p only along the axis and whose
  // index value is p's coordinate on the axis; p outside the index's extent (off the axis) stays 0.
  const rank = outShape.length;
  const is = stridesOf(index.shape);
  const uniforms = new Uniforms([
    ['n', 'u32'],
    ['axis', 'u32'],
    ['len', 'u32'],
    ['axis_stride', 'u32'],
    ['oshape', 'u32', rank],
    ['ishape', 'u32', rank],
    ['istride', 'u32', rank],
  ]);
  const program: Program = {
    name: 'scatterAdd:along',
    cacheKey: `scatterAdd|along|${t}|r${rank}`,
    workgroupSize: [WG, 1, 1],
    dispatch: grid1d(n, WG),
    wgsl: () => `${uniforms.wgsl}
${declareBindings(
  [
    ['src', t],
    ['index', 'i32'],
  ],
  [['out', t]],
)}
@compute @workgroup_size(${WG})
fn main(${FLAT_BUILTINS}) {
  let i = ${flatId(WG)};
  if (i >= u_n()) { return; }
  var base = 0u;
  var want = 0;
  var inside = true;
  { var rem = i;
    for (var d = ${rank}u; d > 0u; d--) {
      let k = d - 1u;
      let c = rem % u_oshape(k); rem = rem / u_oshape(k);
      if (k == u_axis()) { want = i32(c); } else { inside = inside && c < u_ishape(k); base += c * u_istride(k); }
    } }
  var acc: ${t} = ${zero};
  if (inside) {
    for (var j = 0u; j < u_len(); j++) {
      let q = base + j * u_axis_stride();
      if (index[q] == want) { acc += src[q]; }
    }
  }
  out[i] = acc;
}`,
  };
  const values = {
    n,
    axis,
    len: index.shape[axis],
    axis_stride: is[axis],
    oshape: outShape,
    ishape: index.shape,
    istride: is,
  };
  backend.dispatch(program, [handle(src), handle(index)], [out], uniforms.pack(values));
  return out;
}
