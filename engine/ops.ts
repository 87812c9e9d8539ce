// The differentiable ops, named as in PyTorch: each forward calls one backend primitive and records a
// backward written in these same ops, so it runs on any backend. Fused ops are in fused.ts.

import type { BinaryOp, ReduceOp, UnaryOp } from './backend.js';
import { requireFloat, sameDevice, sameDType } from './checks.js';
import { isFloat, type DType } from './dtype.js';
import { broadcastShapes, fmt, normAxes, normAxis, reducedShape, sameShape, sizeOf, type Shape } from './shape.js';
import { fromHandle, full, isGradEnabled, record, Tensor } from './tensor.js';

// ---------------------------------------------------------------------------------------------------
// Checks shared by the ops.

/** A number becomes a 0-d tensor of `like`'s dtype and device. */
function lift(x: Tensor | number, like: Tensor): Tensor {
  return x instanceof Tensor ? x : full([], x, { dtype: like.dtype, device: like.device });
}

export function onesLikeOf(t: Tensor): Tensor {
  return full(t.shape, 1, { dtype: t.dtype, device: t.device });
}

/** Sums a broadcast gradient back down to `shape` (the adjoint of broadcasting). */
export function sumTo(g: Tensor, shape: Shape): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.ndim - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  return reshape(sum(g, axes, true), shape);
}

// ---------------------------------------------------------------------------------------------------
// Elementwise unary.

function unary(op: UnaryOp, x: Tensor, backward?: (g: Tensor, y: Tensor) => Tensor): Tensor {
  if (op !== 'neg' && op !== 'abs' && op !== 'sign' && op !== 'square') requireFloat(op, x);
  const y = fromHandle(op, x.backend, x.backend.unary(op, x), x.shape, x.dtype);
  return backward ? record(y, op, [x], (g) => [backward(g, y)]) : y;
}

export const neg = (x: Tensor): Tensor => unary('neg', x, (g) => neg(g));
export const exp = (x: Tensor): Tensor => unary('exp', x, (g, y) => mul(g, y));
export const log = (x: Tensor): Tensor => unary('log', x, (g) => div(g, x));
export const sqrt = (x: Tensor): Tensor => unary('sqrt', x, (g, y) => div(mul(g, 0.5), y));
// d/dx x^-1/2 = -1/2 x^-3/2 = -y^3 / 2
export const rsqrt = (x: Tensor): Tensor => unary('rsqrt', x, (g, y) => mul(g, mul(mul(y, mul(y, y)), -0.5)));
export const tanh = (x: Tensor): Tensor => unary('tanh', x, (g, y) => mul(g, sub(1, mul(y, y))));
export const sigmoid = (x: Tensor): Tensor => unary('sigmoid', x, (g, y) => mul(g, mul(y, sub(1, y))));
export const relu = (x: Tensor): Tensor => unary('relu', x, (g) => mul(g, gt(x, 0)));
export const abs = (x: Tensor): Tensor => unary('abs', x, (g) => mul(g, sign(x)));
export const square = (x: Tensor): Tensor => unary('square', x, (g) => mul(g, mul(x, 2)));
export const reciprocal = (x: Tensor): Tensor => unary('reciprocal', x, (g, y) => neg(mul(g, mul(y, y))));
export const sign = (x: Tensor): Tensor => unary('sign', x);
export const isnan = (x: Tensor): Tensor => unary('isnan', x);
export const isinf = (x: Tensor): Tensor => unary('isinf', x);

/**
 * GELU with the tanh approximation (GPT-2's "gelu_new"; PyTorch's approximate='tanh'):
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Chosen over the erf form because JavaScript has no
 * exact erf, and a backward must be the derivative of the forward actually computed.
 */
export const gelu = (x: Tensor): Tensor => unary('gelu', x, (g) => mul(g, unary('geluGrad', x)));
// silu(x) = x sigmoid(x); d/dx = s (1 + x (1 - s))
export const silu = (x: Tensor): Tensor => unary('silu', x, (g) => mul(g, unary('siluGrad', x)));

// ---------------------------------------------------------------------------------------------------
// Elementwise binary, with broadcasting.

function binary(
  op: BinaryOp,
  a0: Tensor | number,
  b0: Tensor | number,
  backward?: (g: Tensor, a: Tensor, b: Tensor, y: Tensor) => [Tensor | null, Tensor | null],
): Tensor {
  if (!(a0 instanceof Tensor) && !(b0 instanceof Tensor))
    throw new Error(`${op}: at least one operand must be a Tensor`);
  const a = lift(a0, (a0 instanceof Tensor ? a0 : b0) as Tensor);
  const b = lift(b0, a);
  sameDevice(op, a, b);
  sameDType(op, a, b);
  const shape = broadcastShapes(op, a.shape, b.shape);
  const y = fromHandle(op, a.backend, a.backend.binary(op, a, b, shape), shape, a.dtype);
  if (!backward) return y;
  return record(y, op, [a, b], (g) => {
    const [ga, gb] = backward(g, a, b, y);
    return [ga && sumTo(ga, a.shape), gb && sumTo(gb, b.shape)];
  });
}

type Operand = Tensor | number;
export const add = (a: Operand, b: Operand): Tensor => binary('add', a, b, (g) => [g, g]);
export const sub = (a: Operand, b: Operand): Tensor => binary('sub', a, b, (g) => [g, neg(g)]);
export const mul = (a: Operand, b: Operand): Tensor =>
  binary('mul', a, b, (g, a, b) => [a.requiresGrad ? mul(g, b) : null, b.requiresGrad ? mul(g, a) : null]);
export const div = (a: Operand, b: Operand): Tensor =>
  binary('div', a, b, (g, _a, b, y) => [div(g, b), b.requiresGrad ? neg(div(mul(g, y), b)) : null]);
/** a^b. The gradient with respect to b is taken where a > 0 and is 0 elsewhere. */
export const pow = (a: Operand, b: Operand): Tensor =>
  binary('pow', a, b, (g, a, b, y) => [
    a.requiresGrad ? mul(g, mul(b, pow(a, sub(b, 1)))) : null,
    b.requiresGrad ? where(gt(a, 0), mul(g, mul(y, log(maximum(a, Number.MIN_VALUE)))), 0) : null,
  ]);
/** Ties split the gradient evenly, as in PyTorch. */
export const maximum = (a: Operand, b: Operand): Tensor =>
  binary('maximum', a, b, (g, a, b) => {
    const w = add(gt(a, b), mul(eq(a, b), 0.5));
    return [mul(g, w), mul(g, sub(1, w))];
  });
export const minimum = (a: Operand, b: Operand): Tensor =>
  binary('minimum', a, b, (g, a, b) => {
    const w = add(lt(a, b), mul(eq(a, b), 0.5));
    return [mul(g, w), mul(g, sub(1, w))];
  });
export const eq = (a: Operand, b: Operand): Tensor => binary('eq', a, b);
export const ne = (a: Operand, b: Operand): Tensor => binary('ne', a, b);
export const lt = (a: Operand, b: Operand): Tensor => binary('lt', a, b);
export const le = (a: Operand, b: Operand): Tensor => binary('le', a, b);
export const gt = (a: Operand, b: Operand): Tensor => binary('gt', a, b);
export const ge = (a: Operand, b: Operand): Tensor => binary('ge', a, b);

/** cond != 0 ? a : b, broadcasting all three. cond may have any dtype. */
export function where(cond: Tensor, a0: Operand, b0: Operand): Tensor {
  const like = a0 instanceof Tensor ? a0 : b0 instanceof Tensor ? b0 : null;
  const a = like
    ? lift(a0, like)
    : full([], a0 as number, { device: cond.device, dtype: isFloat(cond.dtype) ? cond.dtype : 'float32' });
  const b = lift(b0, a);
  sameDevice('where', cond, a, b);
  sameDType('where', a, b);
  const shape = broadcastShapes('where', cond.shape, a.shape, b.shape);
  const y = fromHandle('where', a.backend, a.backend.where(cond, a, b, shape), shape, a.dtype);
  return record(y, 'where', [a, b], (g) => [
    a.requiresGrad ? sumTo(where(cond, g, 0), a.shape) : null,
    b.requiresGrad ? sumTo(where(cond, 0, g), b.shape) : null,
  ]);
}

/** A dtype conversion; float to float is differentiable, to or from int32 is not. */
export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  const y = fromHandle('cast', x.backend, x.backend.cast(x, dtype), x.shape, dtype);
  return isFloat(dtype) && isFloat(x.dtype) ? record(y, 'cast', [x], (g) => [cast(g, x.dtype)]) : y;
}

// ---------------------------------------------------------------------------------------------------
// Reductions.

function reduceRaw(op: ReduceOp, x: Tensor, axes: number[], keepdim: boolean): [Tensor, number[]] {
  const kshape = reducedShape(x.shape, axes);
  if (x.size === 0 && op !== 'sum') throw new Error(`${op}: cannot reduce an empty tensor ${fmt(x.shape)}`);
  const y = fromHandle(op, x.backend, x.backend.reduce(op, x, axes), kshape, x.dtype);
  if (keepdim) return [y, kshape];
  const out = y.shareAs(x.shape.filter((_, i) => !axes.includes(i)));
  y.dispose();
  return [out, kshape];
}

/** Sum over axes (all by default). */
export function sum(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  const ax = normAxes('sum', axes, x.ndim);
  const [y, kshape] = reduceRaw('sum', x, ax, keepdim);
  return record(y, 'sum', [x], (g) => [expand(reshape(g, kshape), x.shape)]);
}

export function mean(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  requireFloat('mean', x);
  const ax = normAxes('mean', axes, x.ndim);
  const n = ax.reduce((p, a) => p * x.shape[a], 1);
  return mul(sum(x, ax, keepdim), 1 / n);
}

function extremum(op: 'max' | 'min', x: Tensor, axes: number | number[] | undefined, keepdim: boolean): Tensor {
  const ax = normAxes(op, axes, x.ndim);
  const [y, kshape] = reduceRaw(op, x, ax, keepdim);
  // The gradient goes to every position that attains the extremum, split evenly among ties.
  return record(y, op, [x], (g) => {
    const hit = eq(x, reshape(y, kshape));
    return [div(mul(hit, reshape(g, kshape)), sum(hit, ax, true))];
  });
}
export const max = (x: Tensor, axes?: number | number[], keepdim = false): Tensor => extremum('max', x, axes, keepdim);
export const min = (x: Tensor, axes?: number | number[], keepdim = false): Tensor => extremum('min', x, axes, keepdim);

/**
 * log(sum(exp(x))) over axes, stable: the max is subtracted first (and taken as 0 where it is
 * infinite, so a slice of -Infinity gives -Infinity, not NaN).
 */
export function logsumexp(x: Tensor, axes?: number | number[], keepdim = false): Tensor {
  requireFloat('logsumexp', x);
  const ax = normAxes('logsumexp', axes, x.ndim);
  const m = max(x.detach(), ax, true);
  const shift = where(isinf(m), 0, m);
  const out = add(log(sum(exp(sub(x, shift)), ax, true)), shift);
  return keepdim
    ? out
    : reshape(
        out,
        x.shape.filter((_, i) => !ax.includes(i)),
      );
}

// ---------------------------------------------------------------------------------------------------
// Movement.

/** Metadata-only: shares storage. One dimension may be -1. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const free = shape.indexOf(-1);
  const out = [...shape];
  if (free >= 0) {
    if (shape.indexOf(-1, free + 1) >= 0) throw new Error(`reshape: only one dimension can be -1, got ${fmt(shape)}`);
    const rest = sizeOf(shape.filter((_, i) => i !== free));
    if (rest === 0 || x.size % rest !== 0)
      throw new Error(`reshape: cannot reshape ${fmt(x.shape)} (${x.size} elements) into ${fmt(shape)}`);
    out[free] = x.size / rest;
  }
  if (out.some((d) => !Number.isInteger(d) || d < 0) || sizeOf(out) !== x.size) {
    throw new Error(`reshape: cannot reshape ${fmt(x.shape)} (${x.size} elements) into ${fmt(shape)}`);
  }
  if (sameShape(out, x.shape)) return x;
  return record(x.shareAs(out), 'reshape', [x], (g) => [reshape(g, x.shape)]);
}

export function squeeze(x: Tensor, dim?: number): Tensor {
  if (dim === undefined)
    return reshape(
      x,
      x.shape.filter((d) => d !== 1),
    );
  const d = normAxis('squeeze', dim, x.ndim);
  if (x.shape[d] !== 1) return x;
  return reshape(
    x,
    x.shape.filter((_, i) => i !== d),
  );
}

export function unsqueeze(x: Tensor, dim: number): Tensor {
  const d = normAxis('unsqueeze', dim, x.ndim + 1);
  const shape = [...x.shape];
  shape.splice(d, 0, 1);
  return reshape(x, shape);
}

export function permute(x: Tensor, perm: readonly number[]): Tensor {
  if (perm.length !== x.ndim)
    throw new Error(
      `permute: got ${perm.length} axes [${perm.join(', ')}] for a tensor of rank ${x.ndim} ${fmt(x.shape)}`,
    );
  const p = perm.map((a) => normAxis('permute', a, x.ndim));
  if (new Set(p).size !== p.length)
    throw new Error(`permute: [${perm.join(', ')}] is not a permutation of the ${x.ndim} axes`);
  if (p.every((a, i) => a === i)) return x;
  const shape = p.map((a) => x.shape[a]);
  const y = fromHandle('permute', x.backend, x.backend.permute(x, p), shape, x.dtype);
  const inv = new Array<number>(p.length);
  p.forEach((a, i) => (inv[a] = i));
  return record(y, 'permute', [x], (g) => [permute(g, inv)]);
}

export function transpose(x: Tensor, dim0: number, dim1: number): Tensor {
  const perm = Array.from({ length: x.ndim }, (_, i) => i);
  const a = normAxis('transpose', dim0, x.ndim);
  const b = normAxis('transpose', dim1, x.ndim);
  [perm[a], perm[b]] = [perm[b], perm[a]];
  return permute(x, perm);
}

/** A box of `size` starting at `begin` (tfjs style); a size of -1 runs to the end of that dimension. */
export function slice(x: Tensor, begin: readonly number[], size: readonly number[]): Tensor {
  if (begin.length !== x.ndim || size.length !== x.ndim) {
    throw new Error(
      `slice: begin [${begin.join(', ')}] and size [${size.join(', ')}] must both have rank ${x.ndim} for ` +
        `${fmt(x.shape)}`,
    );
  }
  const sz = size.map((s, i) => (s === -1 ? x.shape[i] - begin[i] : s));
  for (let i = 0; i < x.ndim; i++) {
    if (
      !Number.isInteger(begin[i]) ||
      !Number.isInteger(sz[i]) ||
      begin[i] < 0 ||
      sz[i] < 0 ||
      begin[i] + sz[i] > x.shape[i]
    ) {
      throw new Error(
        `slice: begin [${begin.join(', ')}] size [${size.join(', ')}] is out of bounds for ${fmt(x.shape)} ` +
          `(dimension ${i})`,
      );
    }
  }
  if (sameShape(sz, x.shape)) return x;
  const y = fromHandle('slice', x.backend, x.backend.slice(x, begin, sz), sz, x.dtype);
  const after = x.shape.map((d, i) => d - begin[i] - sz[i]);
  return record(y, 'slice', [x], (g) => [pad(g, begin, after)]);
}

/** torch.narrow: `length` entries of dimension `dim` from `start`. */
export function narrow(x: Tensor, dim: number, start: number, length: number): Tensor {
  const d = normAxis('narrow', dim, x.ndim);
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > x.shape[d])
    throw new Error(
      `narrow: start ${start} and length ${length} must be non-negative integers within dimension ${dim} ` +
        `(size ${x.shape[d]}) of ${fmt(x.shape)}`,
    );
  const begin = x.shape.map((_, i) => (i === d ? start : 0));
  const size = x.shape.map((s, i) => (i === d ? length : s));
  return slice(x, begin, size);
}

/**
 * In place: dst.narrow(dim, start, src.shape[dim]) takes src's values (torch's narrow(...).copy_()), every
 * other dimension and the dtype equal. Off the tape, so it refuses tensors that require grad while grad
 * mode is on; a tensor already saved for a backward must not be written. What a KV cache grows by.
 */
export function writeInto(dst: Tensor, src: Tensor, dim: number, start: number): void {
  sameDevice('writeInto', dst, src);
  const d = normAxis('writeInto', dim, dst.ndim);
  const n = src.shape[d];
  if (
    src.ndim !== dst.ndim ||
    src.dtype !== dst.dtype ||
    src.shape.some((s, i) => i !== d && s !== dst.shape[i]) ||
    !Number.isInteger(start) ||
    start < 0 ||
    start + n > dst.shape[d]
  ) {
    throw new Error(
      `writeInto: src ${fmt(src.shape)} ${src.dtype} must equal dst ${fmt(dst.shape)} ${dst.dtype} except along ` +
        `dimension ${dim}, and fit it from start ${start}`,
    );
  }
  if (isGradEnabled() && (dst.requiresGrad || src.requiresGrad))
    throw new Error('writeInto: in-place writes are not differentiated; run them under noGrad (or detach)');
  if (dst.handle === src.handle) throw new Error('writeInto: src and dst share storage');
  dst.backend.writeInto(dst, src, d, start);
}

/** Zero padding: before[i] and after[i] elements around dimension i. */
export function pad(x: Tensor, before: readonly number[], after: readonly number[]): Tensor {
  if (
    before.length !== x.ndim ||
    after.length !== x.ndim ||
    [...before, ...after].some((p) => !Number.isInteger(p) || p < 0)
  ) {
    throw new Error(
      `pad: before [${before.join(', ')}] and after [${after.join(', ')}] must be ${x.ndim} non-negative integers ` +
        `for ${fmt(x.shape)}`,
    );
  }
  const shape = x.shape.map((d, i) => d + before[i] + after[i]);
  if (sameShape(shape, x.shape)) return x;
  const y = fromHandle('pad', x.backend, x.backend.pad(x, before, after), shape, x.dtype);
  return record(y, 'pad', [x], (g) => [slice(g, before, x.shape)]);
}

/** Broadcast to `shape` (new leading dimensions allowed; -1 keeps a dimension). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const lead = shape.length - x.ndim;
  const out = shape.map((d, i) => (d === -1 && i >= lead ? x.shape[i - lead] : d));
  if (lead < 0 || x.shape.some((d, i) => d !== 1 && d !== out[i + lead])) {
    throw new Error(`expand: cannot expand ${fmt(x.shape)} to ${fmt(shape)}`);
  }
  if (sameShape(out, x.shape)) return x;
  const y = fromHandle('expand', x.backend, x.backend.expand(x, out), out, x.dtype);
  return record(y, 'expand', [x], (g) => [sumTo(g, x.shape)]);
}

export function cat(xs: readonly Tensor[], dim = 0): Tensor {
  if (xs.length === 0) throw new Error('cat: expected at least one tensor');
  const first = xs[0];
  const d = normAxis('cat', dim, first.ndim);
  for (const x of xs) {
    sameDevice('cat', first, x);
    sameDType('cat', first, x);
    if (x.ndim !== first.ndim || x.shape.some((s, i) => i !== d && s !== first.shape[i])) {
      throw new Error(`cat: shapes ${xs.map((t) => fmt(t.shape)).join(', ')} differ outside dimension ${d}`);
    }
  }
  if (xs.length === 1) return first;
  const shape = [...first.shape];
  shape[d] = xs.reduce((n, x) => n + x.shape[d], 0);
  const y = fromHandle('cat', first.backend, first.backend.cat(xs, d), shape, first.dtype);
  return record(y, 'cat', xs, (g) => {
    let off = 0;
    return xs.map((x) => {
      const part = x.requiresGrad ? narrow(g, d, off, x.shape[d]) : null;
      off += x.shape[d];
      return part;
    });
  });
}

export function stack(xs: readonly Tensor[], dim = 0): Tensor {
  if (xs.length === 0) throw new Error('stack: expected at least one tensor');
  const d = normAxis('stack', dim, xs[0].ndim + 1);
  for (const x of xs)
    if (!sameShape(x.shape, xs[0].shape))
      throw new Error(`stack: shapes ${xs.map((t) => fmt(t.shape)).join(', ')} differ; stack needs equal shapes`);
  return cat(
    xs.map((x) => unsqueeze(x, d)),
    d,
  );
}

// ---------------------------------------------------------------------------------------------------
// Gather and scatter.

function checkIndex(op: string, x: Tensor, index: Tensor): void {
  sameDevice(op, x, index);
  if (index.dtype !== 'int32') throw new Error(`${op}: index must be int32, got ${index.dtype} ${fmt(index.shape)}`);
}

/** torch.gather (take-along-axis): index has x's rank; out[.., i, ..] = x[.., index[.., i, ..], ..] along dim. */
export function gather(x: Tensor, dim: number, index: Tensor): Tensor {
  checkIndex('gather', x, index);
  const d = normAxis('gather', dim, x.ndim);
  if (index.ndim !== x.ndim || index.shape.some((s, i) => i !== d && s > x.shape[i])) {
    throw new Error(
      `gather: index ${fmt(index.shape)} must have the rank of x ${fmt(x.shape)} and no larger size outside dim ${d}`,
    );
  }
  const y = fromHandle('gather', x.backend, x.backend.gather(x, index, d, 'along'), index.shape, x.dtype);
  return record(y, 'gather', [x], (g) => [scatterAdd(g, index, d, 'along', x.shape)]);
}

/** index_select with an index of any shape: out = x.shape[:dim] + index.shape + x.shape[dim+1:]. */
export function indexSelect(x: Tensor, dim: number, index: Tensor): Tensor {
  checkIndex('indexSelect', x, index);
  const d = normAxis('indexSelect', dim, x.ndim);
  const shape = [...x.shape.slice(0, d), ...index.shape, ...x.shape.slice(d + 1)];
  const y = fromHandle('indexSelect', x.backend, x.backend.gather(x, index, d, 'select'), shape, x.dtype);
  return record(y, 'indexSelect', [x], (g) => [scatterAdd(g, index, d, 'select', x.shape)]);
}

/** Embedding lookup: rows of weight [V, C] at ids of any shape -> [...ids.shape, C]. */
export function embedding(ids: Tensor, weight: Tensor): Tensor {
  checkIndex('embedding', weight, ids);
  return indexSelect(weight, 0, ids);
}

/** The adjoint of gather / indexSelect: zeros of outShape with src added at the indexed positions. */
export function scatterAdd(src: Tensor, index: Tensor, dim: number, mode: 'select' | 'along', outShape: Shape): Tensor {
  checkIndex('scatterAdd', src, index);
  const y = fromHandle(
    'scatterAdd',
    src.backend,
    src.backend.scatterAdd(src, index, dim, mode, outShape),
    outShape,
    src.dtype,
  );
  return record(y, 'scatterAdd', [src], (g) => [mode === 'along' ? gather(g, dim, index) : indexSelect(g, dim, index)]);
}

// ---------------------------------------------------------------------------------------------------
// Matmul.

/**
 * op(a) @ op(b) with op = transpose of the last two axes where the flag is set, batched over broadcast
 * leading axes. The backward uses the flags too, so no transpose is ever materialised.
 */
export function matmulT(a: Tensor, b: Tensor, transA: boolean, transB: boolean): Tensor {
  sameDevice('matmul', a, b);
  sameDType('matmul', a, b);
  if (a.ndim < 2 || b.ndim < 2)
    throw new Error(`matmul: operands need rank >= 2 here, got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  const [m, ka] = transA ? [a.shape[a.ndim - 1], a.shape[a.ndim - 2]] : [a.shape[a.ndim - 2], a.shape[a.ndim - 1]];
  const [kb, n] = transB ? [b.shape[b.ndim - 1], b.shape[b.ndim - 2]] : [b.shape[b.ndim - 2], b.shape[b.ndim - 1]];
  if (ka !== kb) {
    throw new Error(
      `matmul: inner dimensions differ: ${fmt(a.shape)}${transA ? '^T' : ''} @ ${fmt(b.shape)}${transB ? '^T' : ''} ` +
        `(${ka} vs ${kb})`,
    );
  }
  if (!transA && a.ndim > 2 && b.ndim === 2) {
    // A stack of matrices times one matrix is one tall product: (..., m, k) -> (rows, k). Its backward is
    // then one product too, not a batch of them summed over the stack.
    const lead = a.shape.slice(0, -1);
    return reshape(matmulT(reshape(a, [sizeOf(lead), ka]), b, false, transB), [...lead, n]);
  }
  const batch = broadcastShapes('matmul', a.shape.slice(0, -2), b.shape.slice(0, -2));
  const shape = [...batch, m, n];
  const y = fromHandle('matmul', a.backend, a.backend.matmul(a, b, transA, transB, shape), shape, a.dtype);
  return record(y, 'matmul', [a, b], (g) => {
    let da: Tensor | null = null;
    let db: Tensor | null = null;
    if (a.requiresGrad) da = transA ? matmulT(b, g, transB, true) : matmulT(g, b, false, !transB);
    if (b.requiresGrad) db = transB ? matmulT(g, a, true, transA) : matmulT(a, g, !transA, false);
    return [da && sumTo(da, a.shape), db && sumTo(db, b.shape)];
  });
}

/** torch.matmul: 1-D operands are promoted (and the added axis removed), batch axes broadcast. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.ndim === 0 || b.ndim === 0)
    throw new Error(`matmul: operands must have rank >= 1, got ${fmt(a.shape)} and ${fmt(b.shape)}`);
  const a2 = a.ndim === 1 ? unsqueeze(a, 0) : a;
  const b2 = b.ndim === 1 ? unsqueeze(b, 1) : b;
  let y = matmulT(a2, b2, false, false);
  if (a.ndim === 1) y = squeeze(y, -2);
  if (b.ndim === 1) y = squeeze(y, -1);
  return y;
}
