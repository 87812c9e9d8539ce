// Movement kernels: permute, slice, pad, expand and copy, all one strided-copy kernel (the GPU twin of
// engine/cpu/strided.ts): walk a shape, read at src base + idx . src strides, write at dst base + idx .
// dst strides; and cat, up to 7 inputs a dispatch. Not gather (index-driven copies: gather.ts). Copies
// 32-bit words, so every dtype shares one pipeline per coalesced rank (per input count for cat).

import type { View } from '../engine/index.js';
import { broadcastStrides, sizeOf, stridesOf, type Shape } from '../engine/index.js';
import type { KernelContext } from './context.js';
import { fill } from './elementwise.js';
import type { GpuHandle } from './pool.js';
import {
  coalesce,
  declareBindings,
  FLAT_BUILTINS,
  flatId,
  grid1d,
  stridedOffsetsWGSL,
  Uniforms,
  wgslType,
  type Program,
} from './program.js';

const WG = 256;

/**
 * dst[dstBase + idx . dstStrides] = src[srcBase + idx . srcStrides] for every index idx of `shape`.
 * The walk is coalesced first, so contiguous runs become one dimension.
 */
export function stridedCopy(
  backend: KernelContext,
  src: GpuHandle,
  dst: GpuHandle,
  shape: Shape,
  srcStrides: readonly number[],
  dstStrides: readonly number[],
  srcBase = 0,
  dstBase = 0,
): void {
  const n = sizeOf(shape);
  if (n === 0) return;
  const walk = coalesce(shape, [srcStrides, dstStrides]);
  const rank = walk.shape.length;
  const uniforms = new Uniforms([
    ['n', 'u32'],
    ['src_base', 'u32'],
    ['dst_base', 'u32'],
    ['shape', 'u32', rank],
    ['src', 'u32', rank],
    ['dst', 'u32', rank],
  ]);
  const program: Program = {
    name: 'stridedCopy',
    cacheKey: `copy|r${rank}`,
    workgroupSize: [WG, 1, 1],
    dispatch: grid1d(n, WG),
    wgsl: () => `${uniforms.wgsl}
${declareBindings([['x', 'u32']], [['out', 'u32']])}
@compute @workgroup_size(${WG})
fn main(${FLAT_BUILTINS}) {
  let i = ${flatId(WG)};
  if (i >= u_n()) { return; }
  ${stridedOffsetsWGSL(rank, 'i', 'shape', ['src', 'dst'], { src: 'u_src_base()', dst: 'u_dst_base()' })}
  out[off_dst] = x[off_src];
}`,
  };
  const values = {
    n,
    src_base: srcBase,
    dst_base: dstBase,
    shape: walk.shape,
    src: walk.strides[0],
    dst: walk.strides[1],
  };
  backend.dispatch(program, [src], [dst], uniforms.pack(values));
}

const handle = (v: View) => v.handle as GpuHandle;

export function copy(backend: KernelContext, x: View): GpuHandle {
  const out = backend.alloc(sizeOf(x.shape), x.dtype, 'copy');
  const s = stridesOf(x.shape);
  stridedCopy(backend, handle(x), out, x.shape, s, s);
  return out;
}

export function permute(backend: KernelContext, x: View, perm: readonly number[]): GpuHandle {
  wgslType(x.dtype, 'permute');
  const shape = perm.map((p) => x.shape[p]);
  const xs = stridesOf(x.shape);
  const out = backend.alloc(sizeOf(shape), x.dtype, 'permute');
  stridedCopy(
    backend,
    handle(x),
    out,
    shape,
    perm.map((p) => xs[p]),
    stridesOf(shape),
  );
  return out;
}

export function slice(backend: KernelContext, x: View, begin: readonly number[], size: readonly number[]): GpuHandle {
  wgslType(x.dtype, 'slice');
  const xs = stridesOf(x.shape);
  const out = backend.alloc(sizeOf(size), x.dtype, 'slice');
  stridedCopy(
    backend,
    handle(x),
    out,
    size,
    xs,
    stridesOf(size),
    begin.reduce((s, b, i) => s + b * xs[i], 0),
  );
  return out;
}

/** Zero fill, then the input copied into the interior. */
export function pad(backend: KernelContext, x: View, before: readonly number[], after: readonly number[]): GpuHandle {
  wgslType(x.dtype, 'pad');
  const shape = x.shape.map((d, i) => d + before[i] + after[i]);
  const os = stridesOf(shape);
  const out = fill(backend, shape, x.dtype, 0);
  stridedCopy(
    backend,
    handle(x),
    out,
    x.shape,
    stridesOf(x.shape),
    os,
    0,
    before.reduce((s, b, i) => s + b * os[i], 0),
  );
  return out;
}

export function expand(backend: KernelContext, x: View, shape: Shape): GpuHandle {
  wgslType(x.dtype, 'expand');
  const out = backend.alloc(sizeOf(shape), x.dtype, 'expand');
  stridedCopy(backend, handle(x), out, shape, broadcastStrides(x.shape, shape), stridesOf(shape));
  return out;
}

/** Inputs one cat dispatch binds (the output takes the 8th of WebGPU's 8 storage buffers per stage). */
const CAT_PARTS = 7;

const catUniforms = new Uniforms([
  ['n', 'u32'],
  ['inner', 'u32'],
  ['width', 'u32'],
  ['total', 'u32'],
  ['start', 'u32'],
  ['parts', 'u32'],
  ['off', 'u32', CAT_PARTS],
  ['len', 'u32', CAT_PARTS],
]);

/**
 * Up to CAT_PARTS inputs in one dispatch (a decode step's KV-cache cats are one each, not one per
 * input): the output is (outer, total, inner) around the axis; a thread writes one element of the columns
 * [start, start + width) its inputs cover, finding its input from the offsets along the axis.
 */
function catProgram(k: number, n: number, vec: boolean): Program {
  const t = vec ? 'vec4<u32>' : 'u32';
  const inputs = Array.from({ length: k }, (_, p) => [`x${p}`, t] as const);
  const reads = inputs.map(([x], p) => `case ${p}u: { v = ${x}[src]; }`).join('\n    ');
  return {
    name: 'cat',
    cacheKey: `cat|k${k}|${t}`,
    workgroupSize: [WG, 1, 1],
    dispatch: grid1d(n, WG),
    wgsl: () => `${catUniforms.wgsl}
${declareBindings(inputs, [['out', t]])}
@compute @workgroup_size(${WG})
fn main(${FLAT_BUILTINS}) {
  let idx = ${flatId(WG)};
  if (idx >= u_n()) { return; }
  let inner = u_inner();
  let i = idx % inner;
  let r = idx / inner;
  let o = r / u_width();
  let j = u_start() + r % u_width();
  var p = 0u;
  for (var q = 1u; q < u_parts(); q++) { if (j >= u_off(q)) { p = q; } }
  let src = (o * u_len(p) + (j - u_off(p))) * inner + i;
  var v = ${t}(0u);
  switch p {
    ${reads}
    default: {}
  }
  out[(o * u_total() + j) * inner + i] = v;
}`,
  };
}

/** Inputs in groups of CAT_PARTS, each group one dispatch into its columns of the output. */
export function cat(backend: KernelContext, xs: readonly View[], axis: number): GpuHandle {
  wgslType(xs[0].dtype, 'cat');
  const shape = [...xs[0].shape];
  shape[axis] = xs.reduce((n, x) => n + x.shape[axis], 0);
  const out = backend.alloc(sizeOf(shape), xs[0].dtype, 'cat');
  const outer = sizeOf(shape.slice(0, axis));
  // Whole rows of 4 words move as vec4s (a KV cache's rows of hs = 16: a quarter of the threads).
  const words = sizeOf(shape.slice(axis + 1));
  const vec = words % 4 === 0;
  const inner = vec ? words / 4 : words;
  const total = shape[axis];
  if (outer * inner === 0) return out;
  const parts: { x: View; off: number; len: number }[] = [];
  let at = 0;
  for (const x of xs) {
    if (x.shape[axis] > 0) parts.push({ x, off: at, len: x.shape[axis] });
    at += x.shape[axis];
  }
  for (let g = 0; g < parts.length; g += CAT_PARTS) {
    const group = parts.slice(g, g + CAT_PARTS);
    const start = group[0].off;
    const last = group[group.length - 1];
    const width = last.off + last.len - start;
    const n = outer * width * inner;
    const pad = (f: (q: (typeof group)[number]) => number) =>
      Array.from({ length: CAT_PARTS }, (_, q) => (q < group.length ? f(group[q]) : 0));
    backend.dispatch(
      catProgram(group.length, n, vec),
      group.map((q) => handle(q.x)),
      [out],
      catUniforms.pack({
        n,
        inner,
        width,
        total,
        start,
        parts: group.length,
        off: pad((q) => q.off),
        len: pad((q) => q.len),
      }),
    );
  }
  return out;
}
