// Elementwise WGSL kernels: unary, broadcasting binary, where, cast and fill all share ONE template and
// differ by a snippet (an expression over a, b, c). Not reductions or copies: see reduce.ts, movement.ts.
// Semantics follow engine/cpu/backend.ts; where WGSL differs by nature, the difference is listed below.
//
// Differences from the CPU reference (each is a WGSL or float32 fact, kept deliberately):
// - exp, log, tanh, pow, ... are WGSL's float32 builtins (a few ulp), not JavaScript's double maths.
// - log and sqrt of a negative number are NaN on lavapipe, but WGSL leaves them indeterminate.
// - cast float32 -> int32 saturates out of range (WGSL); the CPU wraps modulo 2^32. NaN and Inf give 0 on both.
// - int32 unary ops other than neg/abs/sign/square/relu/reciprocal compute in float32, then truncate.
// - int32 pow uses wrapping multiplication, exact where the CPU's double result is below 2^53.
// Matched on purpose although WGSL would not: NaN propagates through relu, sign, maximum, minimum (WGSL's
// max/min drop NaN); ne and where treat NaN as unequal/true (lavapipe's `NaN != x` is false); int32
// division by 0 gives 0 (WGSL gives the dividend); tanh saturates to +-1 (some drivers give NaN) and uses
// its series near 0 (lavapipe's tanh is off by 3e-8 there, a huge relative error for tiny inputs).

import type { BinaryOp, UnaryOp, View } from '../engine/index.js';
import { broadcastStrides, sizeOf, stridesOf, type DType, type Shape } from '../engine/index.js';
import type { KernelContext } from './context.js';
import type { GpuHandle } from './pool.js';
import {
  coalesce,
  declareBindings,
  f32Lit,
  FLAT_BUILTINS,
  flatId,
  grid1d,
  stridedOffsetsWGSL,
  Uniforms,
  WGSL_LIB,
  wgslType,
  type Program,
} from './program.js';

const WG = 256;
const GELU_C = f32Lit(Math.sqrt(2 / Math.PI));

/** Helpers the snippets call (WGSL_LIB adds is_nan, max_nan, ...). */
const SNIPPET_LIB = /* wgsl */ `
// tanh saturating to +-1 (some drivers give NaN for large |x|), and by its series near 0, where lavapipe's
// tanh has an absolute error of 3e-8 (so tanh(1e-30) would be 3e-8); the series' error there is < 1e-8.
fn tanh_safe(x: f32) -> f32 {
  let m = abs(x);
  if (m > 15.0) { return sign(x); }
  if (m < 0.05) { let x2 = x * x; return x * (1.0 + x2 * (-0.33333333 + x2 * (0.13333333 - x2 * 0.053968254))); }
  return tanh(x);
}
// The derivatives of gelu (tanh form) and silu, as engine/cpu/backend.ts computes them.
fn gelu_grad(a: f32) -> f32 {
  let t = tanh_safe(${GELU_C} * (a + 0.044715 * a * a * a));
  return 0.5 * (1.0 + t) + 0.5 * a * (1.0 - t * t) * ${GELU_C} * (1.0 + 3.0 * 0.044715 * a * a);
}
fn silu_grad(a: f32) -> f32 {
  let s = 1.0 / (1.0 + exp(-a));
  return s * (1.0 + a * (1.0 - s));
}
fn to_i32(x: f32) -> i32 { return select(i32(x), 0, is_nan(x) || is_inf(x)); }
// Math.pow semantics: any base to the 0 is 1; a negative base needs an integer exponent (odd keeps the sign).
fn pow_f(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (is_nan(a) || is_nan(b)) { return nan_f32(); }
  let odd = trunc(b) == b && trunc(b * 0.5) * 2.0 != b;
  if (a == 0.0) {
    let z = select(inf_f32(), 0.0, b > 0.0);
    return select(z, -z, odd && (bitcast<u32>(a) >> 31u) == 1u);  // -0 to an odd power keeps its sign
  }
  let r = exp2(b * log2(abs(a)));
  if (a < 0.0) {
    // A fractional exponent gives NaN, except for an infinite base or exponent (then |a|^b is the answer).
    if (trunc(b) != b || is_inf(b)) { return select(nan_f32(), r, (is_inf(a) || is_inf(b)) && !is_nan(r)); }
    if (odd) { return -r; }
  }
  return r;
}
fn pow_i32(a: i32, b: i32) -> i32 {
  if (b < 0) {
    if (a == 1) { return 1; }
    if (a == -1) { return select(1, -1, (b & 1) != 0); }
    return 0;
  }
  var r = 1; var base = a; var e = b;
  loop { if (e == 0) { break; } if ((e & 1) != 0) { r = r * base; } base = base * base; e = e >> 1; }
  return r;
}
`;

// The snippets. `a` (and `b`) have the input type; the expression has the output type.
const UNARY_F32: Record<UnaryOp, string> = {
  neg: '-a',
  exp: 'exp(a)',
  log: 'log(a)',
  sqrt: 'sqrt(a)',
  rsqrt: '1.0 / sqrt(a)',
  tanh: 'tanh_safe(a)',
  sigmoid: '1.0 / (1.0 + exp(-a))',
  relu: 'select(max(a, 0.0), a, is_nan(a))',
  // Exactly engine/cpu/backend.ts's tanh approximation.
  gelu: `0.5 * a * (1.0 + tanh_safe(${GELU_C} * (a + 0.044715 * a * a * a)))`,
  silu: 'a / (1.0 + exp(-a))',
  geluGrad: `gelu_grad(a)`,
  siluGrad: `silu_grad(a)`,
  abs: 'abs(a)',
  sign: 'select(sign(a), a, is_nan(a))',
  square: 'a * a',
  reciprocal: '1.0 / a',
  isnan: 'select(0.0, 1.0, is_nan(a))',
  isinf: 'select(0.0, 1.0, is_inf(a))',
};
const UNARY_I32: Partial<Record<UnaryOp, string>> = {
  neg: '-a',
  abs: 'abs(a)',
  sign: 'sign(a)',
  square: 'a * a',
  relu: 'max(a, 0)',
  reciprocal: 'select(0, a, a == 1 || a == -1)',
  isnan: '0',
  isinf: '0',
};
const BINARY_F32: Record<BinaryOp, string> = {
  add: 'a + b',
  sub: 'a - b',
  mul: 'a * b',
  div: 'a / b',
  pow: 'pow_f(a, b)',
  maximum: 'max_nan(a, b)',
  minimum: 'min_nan(a, b)',
  eq: 'select(0.0, 1.0, a == b)',
  ne: 'select(1.0, 0.0, a == b)',
  lt: 'select(0.0, 1.0, a < b)',
  le: 'select(0.0, 1.0, a <= b)',
  gt: 'select(0.0, 1.0, a > b)',
  ge: 'select(0.0, 1.0, a >= b)',
};
const BINARY_I32: Record<BinaryOp, string> = {
  add: 'a + b',
  sub: 'a - b',
  mul: 'a * b',
  div: 'select(a / b, 0, b == 0)',
  pow: 'pow_i32(a, b)',
  maximum: 'max(a, b)',
  minimum: 'min(a, b)',
  eq: 'select(0, 1, a == b)',
  ne: 'select(1, 0, a == b)',
  lt: 'select(0, 1, a < b)',
  le: 'select(0, 1, a <= b)',
  gt: 'select(0, 1, a > b)',
  ge: 'select(0, 1, a >= b)',
};

function unarySnippet(op: UnaryOp, type: 'f32' | 'i32'): string {
  if (type === 'f32') return UNARY_F32[op];
  // The remaining int32 ops: compute in float32, truncate like the CPU's Int32Array store.
  return UNARY_I32[op] ?? `to_i32(${UNARY_F32[op].replace(/\ba\b/g, 'f32(a)')})`;
}

// ---------------------------------------------------------------------------------------------------
// The template.

/** An operand: a tensor read broadcast to the output shape, under the snippet name `a`, `b` or `c`. */
export interface Operand {
  name: 'a' | 'b' | 'c';
  view: View;
  type: string;
}

type Mode = 'same' | 'scalar' | 'strided';

/** vec4 units per thread on the vector path (strided by the thread count, so a warp's loads stay contiguous). */
const VEC_PER_THREAD = 4;

/**
 * Runs `expr` once per element of outShape and writes it as outType. Each operand is read as 'same'
 * (its layout is the output's), 'scalar' (one value) or 'strided' (broadcast, through uniform shape and
 * strides); the cache key holds the snippet, the types, the modes, the coalesced rank and the path, nothing else.
 * `bits` is a u32 uniform the snippet may read as u_bits() (fill's value).
 *
 * Two paths. The vector path (no strided operand and n a multiple of 4: the common contiguous case) binds
 * the 'same' operands and the output as arrays of vec4 and gives each thread VEC_PER_THREAD of them, with
 * no index arithmetic; the snippet is applied per component (lavapipe pays per load instruction, whatever
 * its width, so vec4 loads are the speed-up there). The scalar path does one element per thread, through
 * the strided offsets when an operand broadcasts.
 */
export function elementwise(
  backend: KernelContext,
  name: string,
  expr: string,
  operands: readonly Operand[],
  outType: string,
  outDType: DType,
  outShape: Shape,
  bits = 0,
): GpuHandle {
  const n = sizeOf(outShape);
  const out = backend.alloc(n, outDType, name);
  if (n === 0) return out;
  const contiguous = stridesOf(outShape);
  const modes: Mode[] = [];
  const strided: { name: string; strides: number[] }[] = [];
  for (const o of operands) {
    const s = broadcastStrides(o.view.shape, outShape);
    const c = coalesce(outShape, [contiguous, s]);
    if (sizeOf(o.view.shape) === 1) modes.push('scalar');
    else if (c.strides[0].every((v, i) => v === c.strides[1][i])) modes.push('same');
    else {
      modes.push('strided');
      strided.push({ name: o.name, strides: s });
    }
  }
  const inputs = operands.map((o) => o.view.handle as GpuHandle);
  if (strided.length === 0 && n % 4 === 0) {
    vectorProgram(backend, name, expr, operands, modes, outType, n, bits, inputs, out);
    return out;
  }
  const walk =
    strided.length > 0
      ? coalesce(
          outShape,
          strided.map((s) => s.strides),
        )
      : { shape: [], strides: [] };
  const rank = walk.shape.length;
  const uniforms = new Uniforms([
    ['n', 'u32'],
    ['bits', 'u32'],
    ['shape', 'u32', rank],
    ...strided.map((s) => [`st_${s.name}`, 'u32', rank] as const),
  ]);
  const operandKey = operands.map((o, i) => `${o.name}:${o.type}:${modes[i]}`).join(',');
  const cacheKey = `ew|${name}|${expr}|${outType}|${operandKey}|r${rank}`;
  const program: Program = {
    name,
    cacheKey,
    workgroupSize: [WG, 1, 1],
    dispatch: grid1d(n, WG),
    wgsl: () => {
      const reads = operands.map((o, i) => {
        const at = modes[i] === 'same' ? 'i' : modes[i] === 'scalar' ? '0u' : `off_st_${o.name}`;
        return `let ${o.name} = in_${o.name}[${at}];`;
      });
      return `${WGSL_LIB}
${SNIPPET_LIB}
${uniforms.wgsl}
${declareBindings(
  operands.map((o) => [`in_${o.name}`, o.type] as const),
  [['out', outType]],
)}
@compute @workgroup_size(${WG})
fn main(${FLAT_BUILTINS}) {
  let i = ${flatId(WG)};
  if (i >= u_n()) { return; }
  ${
    rank > 0
      ? stridedOffsetsWGSL(
          rank,
          'i',
          'shape',
          strided.map((s) => `st_${s.name}`),
        )
      : ''
  }
  ${reads.join('\n  ')}
  out[i] = ${expr};
}`;
    },
  };
  const values: Record<string, number | number[]> = { n, bits, shape: walk.shape };
  strided.forEach((s, j) => (values[`st_${s.name}`] = walk.strides[j]));
  backend.dispatch(program, inputs, [out], uniforms.pack(values));
  return out;
}

const vecUniforms = new Uniforms([
  ['units', 'u32'],
  ['threads', 'u32'],
  ['bits', 'u32'],
]);

/**
 * The vector path: n / 4 vec4 units; thread t of `threads` takes units t, t + threads, ... (VEC_PER_THREAD
 * of them). The snippet becomes a function of the operands' scalars, called once per component.
 */
function vectorProgram(
  backend: KernelContext,
  name: string,
  expr: string,
  operands: readonly Operand[],
  modes: readonly Mode[],
  outType: string,
  n: number,
  bits: number,
  inputs: GpuHandle[],
  out: GpuHandle,
): void {
  const units = n / 4;
  const threads = Math.ceil(units / VEC_PER_THREAD);
  const program: Program = {
    name,
    cacheKey: `ew4|${name}|${expr}|${outType}|${operands.map((o, i) => `${o.name}:${o.type}:${modes[i]}`).join(',')}`,
    workgroupSize: [WG, 1, 1],
    dispatch: grid1d(threads, WG),
    wgsl: () => {
      const params = operands.map((o) => `${o.name}: ${o.type}`).join(', ');
      const comp = (c: string) =>
        `op(${operands.map((o, i) => (modes[i] === 'scalar' ? `s_${o.name}` : `v_${o.name}.${c}`)).join(', ')})`;
      const scalars = operands.filter((_, i) => modes[i] === 'scalar').map((o) => `let s_${o.name} = in_${o.name}[0];`);
      const unit = [
        ...operands.filter((_, i) => modes[i] === 'same').map((o) => `let v_${o.name} = in_${o.name}[i];`),
        `out[i] = vec4<${outType}>(${['x', 'y', 'z', 'w'].map(comp).join(', ')});`,
      ].join(' ');
      const body = Array.from(
        { length: VEC_PER_THREAD },
        (_, k) => `{ let i = t + ${k}u * nt; if (i < nu) { ${unit} } }`,
      );
      return `${WGSL_LIB}
${SNIPPET_LIB}
${vecUniforms.wgsl}
${declareBindings(
  operands.map((o, i) => [`in_${o.name}`, modes[i] === 'scalar' ? o.type : `vec4<${o.type}>`] as const),
  [['out', `vec4<${outType}>`]],
)}
fn op(${params}) -> ${outType} { return ${expr}; }
@compute @workgroup_size(${WG})
fn main(${FLAT_BUILTINS}) {
  let t = ${flatId(WG)};
  let nt = u_threads();
  if (t >= nt) { return; }
  let nu = u_units();
  ${scalars.join(' ')}
  ${body.join('\n  ')}
}`;
    },
  };
  backend.dispatch(program, inputs, [out], vecUniforms.pack({ units, threads, bits }));
}

// ---------------------------------------------------------------------------------------------------
// The primitives.

export function unary(backend: KernelContext, op: UnaryOp, x: View): GpuHandle {
  const t = wgslType(x.dtype, op);
  return elementwise(
    backend,
    `unary:${op}`,
    unarySnippet(op, t),
    [{ name: 'a', view: x, type: t }],
    t,
    x.dtype,
    x.shape,
  );
}

export function binary(backend: KernelContext, op: BinaryOp, a: View, b: View, outShape: Shape): GpuHandle {
  const t = wgslType(a.dtype, op);
  wgslType(b.dtype, op);
  const expr = (t === 'f32' ? BINARY_F32 : BINARY_I32)[op];
  return elementwise(
    backend,
    `binary:${op}`,
    expr,
    [
      { name: 'a', view: a, type: t },
      { name: 'b', view: b, type: t },
    ],
    t,
    a.dtype,
    outShape,
  );
}

/** cond != 0 ? a : b. A NaN condition counts as true, as on the CPU. */
export function where(backend: KernelContext, cond: View, a: View, b: View, outShape: Shape): GpuHandle {
  const tc = wgslType(cond.dtype, 'where');
  const t = wgslType(a.dtype, 'where');
  const zero = tc === 'f32' ? '0.0' : '0';
  const operands: Operand[] = [
    { name: 'c', view: cond, type: tc },
    { name: 'a', view: a, type: t },
    { name: 'b', view: b, type: t },
  ];
  return elementwise(backend, 'where', `select(b, a, !(c == ${zero}))`, operands, t, a.dtype, outShape);
}

export function cast(backend: KernelContext, x: View, dtype: DType): GpuHandle {
  const from = wgslType(x.dtype, 'cast');
  const to = wgslType(dtype, 'cast');
  const expr = from === to ? 'a' : to === 'i32' ? 'to_i32(a)' : 'f32(a)';
  return elementwise(backend, `cast:${from}->${to}`, expr, [{ name: 'a', view: x, type: from }], to, dtype, x.shape);
}

/** The 32-bit pattern of `value` stored as `dtype`, as the CPU's typed arrays would store it. */
export function bitsOf(value: number, dtype: DType): number {
  const u = new Uint32Array(1);
  if (dtype === 'int32') new Int32Array(u.buffer)[0] = value;
  else new Float32Array(u.buffer)[0] = value;
  return u[0];
}

export function fill(backend: KernelContext, shape: Shape, dtype: DType, value: number): GpuHandle {
  wgslType(dtype, 'fill');
  return elementwise(backend, 'fill', 'u_bits()', [], 'u32', dtype, shape, bitsOf(value, dtype));
}

/** Writes a 32-bit pattern over the first `n` elements of an existing buffer (test poisoning). */
export function fillBits(backend: KernelContext, target: GpuHandle, n: number, bits: number): void {
  if (n === 0) return;
  const uniforms = new Uniforms([
    ['n', 'u32'],
    ['bits', 'u32'],
  ]);
  const program: Program = {
    name: 'fillBits',
    cacheKey: 'fillBits',
    workgroupSize: [WG, 1, 1],
    dispatch: grid1d(n, WG),
    wgsl: () => `${uniforms.wgsl}
${declareBindings([], [['out', 'u32']])}
@compute @workgroup_size(${WG})
fn main(${FLAT_BUILTINS}) {
  let i = ${flatId(WG)};
  if (i < u_n()) { out[i] = u_bits(); }
}`,
  };
  backend.dispatch(program, [], [target], uniforms.pack({ n, bits }));
}
