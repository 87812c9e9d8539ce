// The CPU backend: every primitive and fused kernel in plain TypeScript over typed arrays. It is the
// reference each WebGPU kernel is tested against, so clarity wins over speed except in matmul and in the
// float32 add/sub/mul/div and sums, which run in WebAssembly (elementwise.ts) with the same results.

import type { Backend, BinaryOp, ReduceOp, UnaryOp, View } from '../backend.js';
import { arrayFor, type DType, type TypedArray } from '../dtype.js';
import { broadcastStrides, fmt, sameShape, sizeOf, stridesOf, type Shape } from '../shape.js';
import { cpuFused } from './fused.js';
import { writeInto } from './inplace.js';
import { matmulCpu } from './matmul.js';
import { wasmBinary, wasmRowSums } from './elementwise.js';
import { freeHeap, HEAP_MIN, heapFloat32 } from './heap.js';
import { stridedOffsets, stridedRows, type Rows } from './strided.js';

// Each elementwise op is one expression over `a` (and `b`); loops are compiled once per op, path and dtype,
// so every inner loop is monomorphic (the same idea as a GPU kernel template with a snippet per op).
const GELU_C = Math.sqrt(2 / Math.PI);
const UNARY: Record<UnaryOp, string> = {
  neg: '-a',
  exp: 'Math.exp(a)',
  log: 'Math.log(a)',
  sqrt: 'Math.sqrt(a)',
  rsqrt: '1 / Math.sqrt(a)',
  tanh: 'Math.tanh(a)',
  sigmoid: '1 / (1 + Math.exp(-a))',
  relu: 'Math.max(a, 0)',
  gelu: `0.5 * a * (1 + Math.tanh(${GELU_C} * (a + 0.044715 * a * a * a)))`,
  silu: 'a / (1 + Math.exp(-a))',
  geluGrad:
    `((t, u) => 0.5 * (1 + t) + 0.5 * a * (1 - t * t) * ${GELU_C} * u)(Math.tanh(${GELU_C} * (a + 0.044715 * ` +
    `a * a * a)), 1 + 3 * 0.044715 * a * a)`,
  siluGrad: '((s) => s * (1 + a * (1 - s)))(1 / (1 + Math.exp(-a)))',
  abs: 'Math.abs(a)',
  sign: 'Math.sign(a)',
  square: 'a * a',
  reciprocal: '1 / a',
  isnan: '(a !== a ? 1 : 0)',
  isinf: '(a === Infinity || a === -Infinity ? 1 : 0)',
};
const BINARY: Record<BinaryOp, string> = {
  add: 'a + b',
  sub: 'a - b',
  mul: 'a * b',
  div: 'a / b',
  pow: 'Math.pow(a, b)',
  maximum: 'Math.max(a, b)',
  minimum: 'Math.min(a, b)',
  eq: '(a === b ? 1 : 0)',
  ne: '(a !== b ? 1 : 0)',
  lt: '(a < b ? 1 : 0)',
  le: '(a <= b ? 1 : 0)',
  gt: '(a > b ? 1 : 0)',
  ge: '(a >= b ? 1 : 0)',
};

type Loop = (...args: unknown[]) => void;
const compiled = new Map<string, Loop>();
/**
 * A loop compiled once per key. Keys name the dtype, and the key heads the source, so a loop sees one
 * kind of typed array: V8 keeps a loop's type feedback per source, and one that has seen Float32Array,
 * Float64Array and Int32Array reads and writes each element through a polymorphic access.
 */
function compile(key: string, params: string, body: string): Loop {
  let f = compiled.get(key);
  if (!f) {
    f = new Function(...params.split(','), `// ${key}\n${body}`) as Loop;
    compiled.set(key, f);
  }
  return f;
}

function unaryLoop(op: UnaryOp, dtype: DType): Loop {
  return compile(
    `u:${op}:${dtype}`,
    'x,out,n',
    `for (let i = 0; i < n; i++) { const a = x[i]; out[i] = ${UNARY[op]}; }`,
  );
}

/** Paths: 'same' (equal shapes), 'sa'/'sb' (one operand a single value); broadcasting is binaryRowsLoop. */
function binaryLoop(op: BinaryOp, path: 'same' | 'sa' | 'sb', dtype: DType): Loop {
  const read = {
    same: 'const a = x[i], b = y[i];',
    sa: 'const a = x[0], b = y[i];',
    sb: 'const a = x[i], b = y[0];',
  }[path];
  return compile(
    `b:${op}:${path}:${dtype}`,
    'x,y,out,n',
    `for (let i = 0; i < n; i++) { ${read} out[i] = ${BINARY[op]}; }`,
  );
}

/** The element of operand `v` at step j of a row starting at `o` (stridedRows); step 0 reads once a row. */
const rowRead = (v: string, x: string, o: string, step: number) =>
  `const ${v} = ${x}[${o}${step === 0 ? '' : step === 1 ? ' + j' : ` + j * ${step}`}];`;

/** Broadcasting, row by row: rows start at ox[r] in x and oy[r] in y, and step by sa and sb along a row. */
function binaryRowsLoop(op: BinaryOp, sa: number, sb: number, dtype: DType): Loop {
  const reads = [rowRead('a', 'x', 'oa', sa), rowRead('b', 'y', 'ob', sb)];
  const once = reads.filter((_, i) => [sa, sb][i] === 0).join(' ');
  const each = reads.filter((_, i) => [sa, sb][i] !== 0).join(' ');
  return compile(
    `b:${op}:rows${sa},${sb}:${dtype}`,
    'x,y,out,len,ox,oy',
    `for (let r = 0, k = 0; r < ox.length; r++) { const oa = ox[r], ob = oy[r]; ${once} ` +
      `for (let j = 0; j < len; j++, k++) { ${each} out[k] = ${BINARY[op]}; } }`,
  );
}

const arr = (v: View) => v.handle as TypedArray;

/** Storage for an output that is written in full: float32 from the shared memory's pool (heap.ts). */
const outputFor = (dtype: DType, n: number): TypedArray => (dtype === 'float32' ? heapFloat32(n) : arrayFor(dtype, n));

/** One row, both operands along it: equal shapes. */
const ONE_ROW = new Int32Array(1);

/** The broadcast walk of a binary op as rows (equal shapes and a single value are one row). */
function binaryRows(a: View, b: View, outShape: Shape): Rows {
  const n = sizeOf(outShape);
  if (sameShape(a.shape, outShape) && sameShape(b.shape, outShape))
    return { length: n, steps: [1, 1], starts: [ONE_ROW, ONE_ROW] };
  return stridedRows(outShape, [broadcastStrides(a.shape, outShape), broadcastStrides(b.shape, outShape)]);
}

/** Offsets of `v` read broadcast to outShape. */
const bcast = (v: View, outShape: Shape) => stridedOffsets(outShape, broadcastStrides(v.shape, outShape));

/** Per reduce op: its identity, and how it takes in a value. */
const REDUCE: Record<ReduceOp, { init: number; step: (s: string, v: string) => string }> = {
  sum: { init: 0, step: (s, v) => `${s} += ${v};` },
  max: { init: -Infinity, step: (s, v) => `${s} = Math.max(${s}, ${v});` },
  min: { init: Infinity, step: (s, v) => `${s} = Math.min(${s}, ${v});` },
};

/**
 * Partial results a reduced row keeps side by side: one running value would wait on each add (or max) in
 * turn. max and min come out the same in any order; a sum is then summed in LANES interleaved parts, added
 * as ((s0 + s2) + (s4 + s6)) + ((s1 + s3) + (s5 + s7)) (the order of elementwise.ts's float64 pairs).
 */
const LANES = 8;
const LANE_ORDER = [0, 2, 4, 6, 1, 3, 5, 7];

/**
 * Rows of x (stridedRows) into the float64 accumulator: row r starts at ox[r] and lands at oacc[r], and
 * moves along acc by `step`, 0 where the row's own axis is reduced, 1 where it is kept.
 */
function reduceRowsLoop(op: ReduceOp, step: number, dtype: DType): Loop {
  const { init, step: take } = REDUCE[op];
  let row: string;
  if (step === 0) {
    const join = (p: string, q: string) => (op === 'sum' ? `(${p} + ${q})` : `Math.${op}(${p}, ${q})`);
    const combine = (ls: string[]): string =>
      ls.length === 1 ? ls[0] : join(combine(ls.slice(0, ls.length / 2)), combine(ls.slice(ls.length / 2)));
    const lanes = LANE_ORDER.map((l) => `s${l}`);
    const start = LANE_ORDER.map((l) => `s${l} = ${init}`).join(', ');
    const unrolled = LANE_ORDER.map((l) => take(`s${l}`, `x[o + j + ${l}]`)).join(' ');
    row =
      `let ${start}; let j = 0; for (; j + ${LANES} <= len; j += ${LANES}) { ${unrolled} } ` +
      `let v = ${combine(lanes)}; for (; j < len; j++) { ${take('v', 'x[o + j]')} } ${take('acc[d]', 'v')}`;
  } else {
    row = `for (let j = 0; j < len; j++) { ${take(`acc[d + j * ${step}]`, 'x[o + j]')} }`;
  }
  return compile(
    `r:${op}:${step}:${dtype}`,
    'x,acc,len,ox,oacc',
    `for (let r = 0; r < ox.length; r++) { const o = ox[r], d = oacc[r]; ${row} }`,
  );
}

function reduce(op: ReduceOp, x: View, axes: readonly number[]): TypedArray {
  const src = arr(x);
  const kshape = x.shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const n = sizeOf(kshape);
  // Accumulate in float64 so float32 sums are as exact as the reference needs.
  const acc = new Float64Array(n).fill(REDUCE[op].init);
  if (src.length > 0) {
    // x walked in its own order beside the keepdim output read broadcast to x's shape.
    const rows = stridedRows(x.shape, [stridesOf(x.shape), broadcastStrides(kshape, x.shape)]);
    const [len, dst] = [rows.length, rows.starts[1]];
    const sums =
      op === 'sum' && rows.steps[1] === 0 && src instanceof Float32Array && wasmRowSums(src, len, dst.length);
    if (sums) for (let r = 0; r < dst.length; r++) acc[dst[r]] += sums[r];
    else reduceRowsLoop(op, rows.steps[1], x.dtype)(src, acc, len, rows.starts[0], dst);
  }
  const out = arrayFor(x.dtype, n);
  out.set(acc);
  return out;
}

function copyOffsets(src: TypedArray, offs: Int32Array, dtype: DType): TypedArray {
  const out = arrayFor(dtype, offs.length);
  for (let i = 0; i < offs.length; i++) out[i] = src[offs[i]];
  return out;
}

/** For gather/scatter: per element of the index (or of the output, for 'select'), the offset into x. */
function gatherOffsets(xShape: Shape, index: View, axis: number, mode: 'select' | 'along'): Int32Array {
  const idx = arr(index);
  const N = xShape[axis];
  const check = (v: number) => {
    if (v < 0 || v >= N)
      throw new Error(`gather: index ${v} is out of range for dimension ${axis} of size ${N} (x ${fmt(xShape)})`);
  };
  const xs = stridesOf(xShape);
  if (mode === 'along') {
    const strides = xs.map((s, i) => (i === axis ? 0 : s));
    const offs = stridedOffsets(index.shape, strides);
    for (let i = 0; i < offs.length; i++) {
      check(idx[i]);
      offs[i] += idx[i] * xs[axis];
    }
    return offs;
  }
  const outer = sizeOf(xShape.slice(0, axis));
  const inner = sizeOf(xShape.slice(axis + 1));
  const m = idx.length;
  const offs = new Int32Array(outer * m * inner);
  for (let o = 0; o < outer; o++) {
    for (let j = 0; j < m; j++) {
      check(idx[j]);
      const src = (o * N + idx[j]) * inner;
      const dst = (o * m + j) * inner;
      for (let k = 0; k < inner; k++) offs[dst + k] = src + k;
    }
  }
  return offs;
}

export class CpuBackend implements Backend {
  readonly name = 'cpu' as const;
  readonly fused = cpuFused;

  upload(data: TypedArray): unknown {
    if (!(data instanceof Float32Array)) return data.slice();
    const out = heapFloat32(data.length);
    out.set(data);
    return out;
  }
  async read(x: View): Promise<TypedArray> {
    return arr(x).slice();
  }
  readSync(x: View): TypedArray {
    return arr(x).slice();
  }
  free(handle: unknown): void {
    // Float32 storage from the shared memory goes back to its pool; the garbage collector reclaims the rest.
    freeHeap(handle as TypedArray);
  }
  fill(shape: Shape, dtype: DType, value: number): unknown {
    return outputFor(dtype, sizeOf(shape)).fill(value);
  }

  unary(op: UnaryOp, x: View): unknown {
    const out = outputFor(x.dtype, sizeOf(x.shape));
    unaryLoop(op, x.dtype)(arr(x), out, out.length);
    return out;
  }

  binary(op: BinaryOp, a: View, b: View, outShape: Shape): unknown {
    const n = sizeOf(outShape);
    const A = arr(a);
    const B = arr(b);
    const dt = a.dtype;
    if (dt === 'float32' && n >= HEAP_MIN) {
      const fast = wasmBinary(op, A as Float32Array, B as Float32Array, n, binaryRows(a, b, outShape));
      if (fast) return fast;
    }
    const out = outputFor(dt, n);
    if (sameShape(a.shape, outShape) && sameShape(b.shape, outShape)) binaryLoop(op, 'same', dt)(A, B, out, n);
    else if (A.length === 1 && sameShape(b.shape, outShape)) binaryLoop(op, 'sa', dt)(A, B, out, n);
    else if (B.length === 1 && sameShape(a.shape, outShape)) binaryLoop(op, 'sb', dt)(A, B, out, n);
    else if (n > 0) {
      const rows = binaryRows(a, b, outShape);
      const [sa, sb] = rows.steps;
      binaryRowsLoop(op, sa, sb, dt)(A, B, out, rows.length, rows.starts[0], rows.starts[1]);
    }
    return out;
  }

  where(cond: View, a: View, b: View, outShape: Shape): unknown {
    const out = arrayFor(a.dtype, sizeOf(outShape));
    const [C, A, B] = [arr(cond), arr(a), arr(b)];
    const [oc, oa, ob] = [bcast(cond, outShape), bcast(a, outShape), bcast(b, outShape)];
    for (let i = 0; i < out.length; i++) out[i] = C[oc[i]] !== 0 ? A[oa[i]] : B[ob[i]];
    return out;
  }

  cast(x: View, dtype: DType): unknown {
    const out = arrayFor(dtype, sizeOf(x.shape));
    const src = arr(x);
    if (dtype === 'int32') for (let i = 0; i < out.length; i++) out[i] = Math.trunc(src[i]);
    else out.set(src);
    return out;
  }

  reduce(op: ReduceOp, x: View, axes: readonly number[]): unknown {
    return reduce(op, x, axes);
  }

  permute(x: View, perm: readonly number[]): unknown {
    const xs = stridesOf(x.shape);
    return copyOffsets(
      arr(x),
      stridedOffsets(
        perm.map((p) => x.shape[p]),
        perm.map((p) => xs[p]),
      ),
      x.dtype,
    );
  }

  slice(x: View, begin: readonly number[], size: readonly number[]): unknown {
    const xs = stridesOf(x.shape);
    const base = begin.reduce((s, b, i) => s + b * xs[i], 0);
    return copyOffsets(arr(x), stridedOffsets(size, xs, base), x.dtype);
  }

  pad(x: View, before: readonly number[], after: readonly number[]): unknown {
    const outShape = x.shape.map((d, i) => d + before[i] + after[i]);
    const os = stridesOf(outShape);
    const out = arrayFor(x.dtype, sizeOf(outShape));
    const dst = stridedOffsets(
      x.shape,
      os,
      before.reduce((s, b, i) => s + b * os[i], 0),
    );
    const src = arr(x);
    for (let i = 0; i < dst.length; i++) out[dst[i]] = src[i];
    return out;
  }

  expand(x: View, shape: Shape): unknown {
    return copyOffsets(arr(x), bcast(x, shape), x.dtype);
  }

  cat(xs: readonly View[], axis: number): unknown {
    const outShape = [...xs[0].shape];
    outShape[axis] = xs.reduce((n, x) => n + x.shape[axis], 0);
    const out = arrayFor(xs[0].dtype, sizeOf(outShape));
    // Each input is written into its slots along the axis, as a KV cache's new keys are.
    const dst: View = { handle: out, shape: outShape, dtype: xs[0].dtype };
    let at = 0;
    for (const x of xs) {
      writeInto(dst, x, axis, at);
      at += x.shape[axis];
    }
    return out;
  }

  writeInto(dst: View, src: View, axis: number, start: number): void {
    writeInto(dst, src, axis, start);
  }

  gather(x: View, index: View, axis: number, mode: 'select' | 'along'): unknown {
    return copyOffsets(arr(x), gatherOffsets(x.shape, index, axis, mode), x.dtype);
  }

  scatterAdd(src: View, index: View, axis: number, mode: 'select' | 'along', outShape: Shape): unknown {
    const offs = gatherOffsets(outShape, index, axis, mode);
    const acc = new Float64Array(sizeOf(outShape));
    const s = arr(src);
    for (let i = 0; i < offs.length; i++) acc[offs[i]] += s[i];
    const out = arrayFor(src.dtype, acc.length);
    out.set(acc);
    return out;
  }

  matmul(a: View, b: View, transA: boolean, transB: boolean, outShape: Shape): unknown {
    return matmulCpu(a, b, transA, transB, outShape);
  }
}
