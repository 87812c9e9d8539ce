// Attention's inputs from the three projections in one kernel (FusedKernels.ropeHeads and its backward):
// q, k, v (B, T, C) split into heads (B, nh, T, hs), q and k rotated by RoPE in the half-split form
// (x1 = x[..., :hs/2], x2 = x[..., hs/2:]: x1 cos - x2 sin, x1 sin + x2 cos). Not the projections
// (matmul.ts) and not the composed form (engine/fused.ts): 3 transposes and, per rotated tensor, 2 narrows,
// 4 muls, a sub, an add and a cat of 2, 23 dispatches a block where this is one.

import type { View } from '../engine/index.js';
import { sizeOf } from '../engine/index.js';
import type { KernelContext } from './context.js';
import type { GpuHandle } from './pool.js';
import { declareBindings, FLAT_BUILTINS, flatId, grid1d, Uniforms, wgslType, type Program } from './program.js';

const WG = 64;

const uniforms = new Uniforms([
  ['n', 'u32'],
  ['T', 'u32'],
  ['nh', 'u32'],
  ['half', 'u32'],
]);

/** x1 cos - x2 sin, x1 sin + x2 cos; backward the transpose (rotation by -angle): g1 cos + g2 sin, g2 cos - g1 sin. */
const rotate = (backward: boolean, a: string, b: string): [string, string] =>
  backward ? [`${a} * c + ${b} * s`, `${b} * c - ${a} * s`] : [`${a} * c - ${b} * s`, `${a} * s + ${b} * c`];

/**
 * One thread per (b, t, head, i < hs/2): it moves elements i and i + hs/2. The forward reads q, k, v in
 * (B, T, C) and writes (B, nh, T, hs), rotating q and k; the backward (one rotated tensor: v's gradient is
 * a transpose) reads the head layout and writes (B, T, C).
 */
function program(backward: boolean, n: number): Program {
  const name = backward ? 'ropeHeadsBackward' : 'ropeHeads';
  const move = (x: string, out: string, rotated: boolean) => {
    const [a, b] = rotated ? rotate(backward, `${x}[src]`, `${x}[src + half]`) : [`${x}[src]`, `${x}[src + half]`];
    return `${out}[dst] = ${a};\n  ${out}[dst + half] = ${b};`;
  };
  const bindings = backward
    ? declareBindings(
        [
          ['g', 'f32'],
          ['cosv', 'f32'],
          ['sinv', 'f32'],
        ],
        [['dx', 'f32']],
      )
    : declareBindings(
        [
          ['q', 'f32'],
          ['k', 'f32'],
          ['v', 'f32'],
          ['cosv', 'f32'],
          ['sinv', 'f32'],
        ],
        [
          ['qo', 'f32'],
          ['ko', 'f32'],
          ['vo', 'f32'],
        ],
      );
  const body = backward
    ? move('g', 'dx', true)
    : [move('q', 'qo', true), move('k', 'ko', true), move('v', 'vo', false)].join('\n  ');
  return {
    name,
    cacheKey: `${name}|f32|wg${WG}`,
    workgroupSize: [WG, 1, 1],
    dispatch: grid1d(n, WG),
    wgsl: () => `${uniforms.wgsl}
${bindings}
@compute @workgroup_size(${WG})
fn main(${FLAT_BUILTINS}) {
  let idx = ${flatId(WG)};
  if (idx >= u_n()) { return; }
  let half = u_half();
  let nh = u_nh();
  let T = u_T();
  let i = idx % half;
  let r = idx / half;
  let h = r % nh;
  let bt = r / nh; // b * T + t
  let b = bt / T;
  let t = bt % T;
  let rows = (bt * nh + h) * 2u * half + i; // in (B, T, C)
  let heads = ((b * nh + h) * T + t) * 2u * half + i; // in (B, nh, T, hs)
  let src = ${backward ? 'heads' : 'rows'};
  let dst = ${backward ? 'rows' : 'heads'};
  let c = cosv[bt * half + i];
  let s = sinv[bt * half + i];
  ${body}
}`,
  };
}

const handle = (x: View) => x.handle as GpuHandle;

function checkRope(op: string, cos: View, sin: View, B: number, T: number, hs: number): void {
  for (const t of [cos, sin]) {
    if (t.shape.length !== 3 || t.shape[0] !== B || t.shape[1] !== T || t.shape[2] !== hs / 2)
      throw new Error(`${op}: cos and sin must be [${B}, ${T}, ${hs / 2}], got [${cos.shape}] and [${sin.shape}]`);
    wgslType(t.dtype, `${op} (cos, sin)`);
  }
}

/** q, k, v (B, T, C) -> heads (B, nh, T, hs) each, q and k rotated; cos and sin (B, T, hs/2). */
export function ropeHeads(
  backend: KernelContext,
  q: View,
  k: View,
  v: View,
  cos: View,
  sin: View,
  nHead: number,
): { q: GpuHandle; k: GpuHandle; v: GpuHandle } {
  const [B, T, C] = q.shape;
  const hs = C / nHead;
  if (
    q.shape.length !== 3 ||
    [k, v].some((x) => x.shape.length !== 3 || x.shape.some((d, i) => d !== q.shape[i])) ||
    !Number.isInteger(hs) ||
    hs % 2 !== 0
  )
    throw new Error(
      `ropeHeads: q [${q.shape}], k [${k.shape}], v [${v.shape}] must share a (B, T, C) shape, C = ${nHead} heads ` +
        `of an even size`,
    );
  for (const t of [q, k, v]) wgslType(t.dtype, 'ropeHeads');
  checkRope('ropeHeads', cos, sin, B, T, hs);
  const size = B * T * C;
  const out = {
    q: backend.alloc(size, q.dtype, 'ropeHeads'),
    k: backend.alloc(size, q.dtype, 'ropeHeads'),
    v: backend.alloc(size, q.dtype, 'ropeHeads'),
  };
  if (size === 0) return out;
  backend.dispatch(
    program(false, size / 2),
    [q, k, v, cos, sin].map(handle),
    [out.q, out.k, out.v],
    uniforms.pack({ n: size / 2, T, nh: nHead, half: hs / 2 }),
  );
  return out;
}

/** The gradient of a rotated head tensor (B, nh, T, hs) -> that of its projection (B, T, C). */
export function ropeHeadsBackward(backend: KernelContext, g: View, cos: View, sin: View): GpuHandle {
  if (g.shape.length !== 4 || g.shape[3] % 2 !== 0)
    throw new Error(`ropeHeadsBackward: the gradient [${g.shape}] must be (B, nh, T, hs) with hs even`);
  const [B, nh, T, hs] = g.shape;
  wgslType(g.dtype, 'ropeHeadsBackward');
  checkRope('ropeHeadsBackward', cos, sin, B, T, hs);
  const size = sizeOf(g.shape);
  const dx = backend.alloc(size, g.dtype, 'ropeHeadsBackward');
  if (size === 0) return dx;
  backend.dispatch(
    program(true, size / 2),
    [g, cos, sin].map(handle),
    [dx],
    uniforms.pack({ n: size / 2, T, nh, half: hs / 2 }),
  );
  return dx;
}
