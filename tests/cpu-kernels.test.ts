// The CPU backend's fast paths against plain scalar loops written here to be obviously right: elementwise
// binary ops (equal shapes, a single value, broadcasting row by row), reductions, RMSNorm and AdamW, at odd
// sizes and sizes around the loops' unrolling, in float32, float64 and int32, with NaN, +-Infinity and -0.

import { describe, expect, test } from 'vitest';
import { arrayFor, CpuBackend, sizeOf, stridesOf, type BinaryOp, type DType, type ReduceOp } from '../engine/index.js';
import type { TypedArray } from '../engine/index.js';
import { wasmElementwiseAvailable } from '../engine/cpu/elementwise.js';
import { wasmFusedAvailable } from '../engine/cpu/fused-wasm.js';
import { blockBytes, HEAP_MIN, heapBytes, heapFreeBytes, inHeap } from '../engine/cpu/heap.js';
import { rng } from './helpers/rng.js';

const cpu = new CpuBackend();

const SPECIAL = [NaN, Infinity, -Infinity, -0, 0];

/** Seeded values of `dtype`: floats in [-4, 4) with one in eight special, ints in [-20, 20) (no zeros for div). */
function data(dtype: DType, n: number, seed: number, special = true): TypedArray {
  const r = rng(seed);
  const out = arrayFor(dtype, n);
  for (let i = 0; i < n; i++) {
    if (dtype === 'int32') out[i] = Math.floor(r() * 40) - 20 || 7;
    else out[i] = special && r() < 0.125 ? SPECIAL[Math.floor(r() * SPECIAL.length)] : 8 * r() - 4;
  }
  return out;
}

const view = (handle: TypedArray, shape: number[], dtype: DType) => ({ handle, shape, dtype });

/** Equal element by element, NaN equal to NaN and -0 apart from 0 (Object.is), naming the first difference. */
function expectSame(got: TypedArray, want: TypedArray, what: string): void {
  expect(got.length, what).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    if (!Object.is(got[i], want[i])) expect.fail(`${what}: element ${i} is ${got[i]}, expected ${want[i]}`);
  }
}

// ---------------------------------------------------------------------------------------------------
// Elementwise binary ops.

const BINARY: Record<BinaryOp, (a: number, b: number) => number> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  mul: (a, b) => a * b,
  div: (a, b) => a / b,
  pow: (a, b) => Math.pow(a, b),
  maximum: (a, b) => Math.max(a, b),
  minimum: (a, b) => Math.min(a, b),
  eq: (a, b) => (a === b ? 1 : 0),
  ne: (a, b) => (a !== b ? 1 : 0),
  lt: (a, b) => (a < b ? 1 : 0),
  le: (a, b) => (a <= b ? 1 : 0),
  gt: (a, b) => (a > b ? 1 : 0),
  ge: (a, b) => (a >= b ? 1 : 0),
};
const OPS = Object.keys(BINARY) as BinaryOp[];
const DTYPES: DType[] = ['float32', 'float64', 'int32'];

/** NumPy broadcasting, spelled out: out's multi-index, each operand's index 0 where its dimension is 1. */
function broadcastRef(op: BinaryOp, A: TypedArray, as: number[], B: TypedArray, bs: number[], dtype: DType) {
  const rank = Math.max(as.length, bs.length);
  const pa = [...Array<number>(rank - as.length).fill(1), ...as];
  const pb = [...Array<number>(rank - bs.length).fill(1), ...bs];
  const os = pa.map((d, i) => Math.max(d, pb[i]));
  const [sa, sb] = [stridesOf(pa), stridesOf(pb)];
  const out = arrayFor(dtype, sizeOf(os));
  for (let i = 0; i < out.length; i++) {
    let rest = i;
    let ia = 0;
    let ib = 0;
    for (let k = rank - 1; k >= 0; k--) {
      const idx = rest % os[k];
      rest = Math.floor(rest / os[k]);
      if (pa[k] !== 1) ia += idx * sa[k];
      if (pb[k] !== 1) ib += idx * sb[k];
    }
    out[i] = BINARY[op](A[ia], B[ib]);
  }
  return { out, shape: os };
}

function checkBinary(op: BinaryOp, as: number[], bs: number[], dtype: DType, seed: number): void {
  const A = data(dtype, sizeOf(as), seed);
  const B = data(dtype, sizeOf(bs), seed + 1);
  const { out, shape } = broadcastRef(op, A, as, B, bs, dtype);
  const got = cpu.binary(op, view(A, as, dtype), view(B, bs, dtype), shape) as TypedArray;
  expect(got.constructor, `${op} ${dtype}`).toBe(out.constructor);
  expectSame(got, out, `${op} ${JSON.stringify(as)} ${JSON.stringify(bs)} ${dtype}`);
}

// Lengths: odd ones, and those around an unrolled loop's width and its remainder.
const SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 33, 65, 127, 1000];

describe('binary ops', () => {
  test.each(DTYPES)('equal shapes, every op, %s', (dtype) => {
    let seed = 1;
    for (const op of OPS) for (const n of SIZES) checkBinary(op, [n], [n], dtype, seed++);
    for (const op of OPS) checkBinary(op, [3, 17, 5], [3, 17, 5], dtype, seed++);
  });

  test.each(DTYPES)('one operand a single value, either side, %s', (dtype) => {
    let seed = 100;
    for (const op of OPS) {
      for (const n of [1, 3, 17, 127]) {
        checkBinary(op, [n], [1], dtype, seed++);
        checkBinary(op, [1], [n], dtype, seed++);
        checkBinary(op, [2, n], [], dtype, seed++);
        checkBinary(op, [], [n, 3], dtype, seed++);
      }
    }
  });

  // The model's shapes ([B, T, C] with a bias [C], a gate [B, T, 1]), outer products, and every pattern
  // of broadcast dimensions on both sides.
  const BROADCASTS: [number[], number[]][] = [
    [[2, 5, 17], [17]],
    [[17], [2, 5, 17]],
    [
      [2, 5, 17],
      [2, 5, 1],
    ],
    [
      [2, 5, 1],
      [2, 5, 17],
    ],
    [
      [3, 1, 65],
      [1, 7, 65],
    ],
    [
      [33, 1],
      [1, 3],
    ],
    [
      [1, 127],
      [9, 1],
    ],
    [
      [2, 1, 3, 1],
      [1, 4, 1, 5],
    ],
    [
      [4, 1, 6],
      [4, 6, 1],
    ],
    [
      [3, 4, 5],
      [1, 4, 1],
    ],
    [
      [3, 4, 5],
      [3, 1, 5],
    ],
    [
      [1, 1, 1],
      [2, 3, 1],
    ],
    [
      [2, 3, 1],
      [1, 1, 9],
    ],
    [[8, 4, 64], [64]],
    [[1], [1, 1]],
  ];
  test.each(DTYPES)('broadcasting, row by row, %s', (dtype) => {
    let seed = 500;
    for (const op of OPS) for (const [as, bs] of BROADCASTS) checkBinary(op, as, bs, dtype, seed++);
  });

  test('empty shapes give empty outputs', () => {
    for (const [as, bs] of [
      [[0], [0]],
      [[2, 0, 3], [3]],
      [
        [0, 1],
        [1, 4],
      ],
    ]) {
      checkBinary('add', as, bs, 'float32', 1);
    }
  });

  test('one loop serves each dtype: results do not depend on the dtypes seen before', () => {
    // Float64 values with more bits than float32 holds: each dtype must round (or not) as its own does.
    const A = Float64Array.from([0.1, 1 / 3, 2 ** 40 + 0.5]);
    const B = Float64Array.from([0.2, 1 / 7, 0.25]);
    for (const dtype of DTYPES) {
      const [a, b] = [arrayFor(dtype, 3), arrayFor(dtype, 3)];
      a.set(A);
      b.set(B);
      const want = arrayFor(dtype, 3);
      for (let i = 0; i < 3; i++) want[i] = a[i] + b[i];
      expectSame(cpu.binary('add', view(a, [3], dtype), view(b, [3], dtype), [3]) as TypedArray, want, dtype);
      expectSame(
        cpu.binary('add', view(a, [3], dtype), view(b.subarray(0, 1), [1], dtype), [3]) as TypedArray,
        want.map((_, i) => a[i] + b[0]),
        `${dtype} single`,
      );
    }
  });
});

// ---------------------------------------------------------------------------------------------------
// Reductions.

/** Sum, max or min over `axes` (keepdim), in float64, one output at a time in index order. */
function reduceRef(op: ReduceOp, X: TypedArray, shape: number[], axes: number[], dtype: DType) {
  const kshape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const acc = new Float64Array(sizeOf(kshape)).fill(op === 'sum' ? 0 : op === 'max' ? -Infinity : Infinity);
  const abs = new Float64Array(acc.length);
  const xs = stridesOf(shape);
  const ks = stridesOf(kshape);
  for (let i = 0; i < X.length; i++) {
    let d = 0;
    for (let k = 0; k < shape.length; k++) if (!axes.includes(k)) d += (Math.floor(i / xs[k]) % shape[k]) * ks[k];
    if (op === 'sum') acc[d] += X[i];
    else acc[d] = op === 'max' ? Math.max(acc[d], X[i]) : Math.min(acc[d], X[i]);
    abs[d] += Math.abs(X[i]);
  }
  const out = arrayFor(dtype, acc.length);
  out.set(acc);
  return { out, kshape, abs, count: X.length / Math.max(acc.length, 1) };
}

/**
 * max and min come out exactly; a sum may be added in another order, so it is checked within float64
 * rounding over the terms' magnitudes (n u sum |x|), plus the output's own rounding for float32.
 */
function checkReduce(op: ReduceOp, shape: number[], axes: number[], dtype: DType, seed: number, special = true): void {
  const X = data(dtype, sizeOf(shape), seed, special);
  const { out, kshape, abs, count } = reduceRef(op, X, shape, axes, dtype);
  const got = cpu.reduce(op, view(X, shape, dtype), axes) as TypedArray;
  const what = `${op} ${JSON.stringify(shape)} axes ${JSON.stringify(axes)} ${dtype}`;
  expect(got.constructor, what).toBe(out.constructor);
  expect(got.length, what).toBe(sizeOf(kshape));
  if (op !== 'sum' || dtype === 'int32') {
    expectSame(got, out, what);
    return;
  }
  for (let i = 0; i < out.length; i++) {
    const bound: number = (count + 1) * 2 ** -53 * abs[i] + (dtype === 'float32' ? 2 ** -24 * Math.abs(out[i]) : 0);
    const ok = Number.isFinite(out[i]) ? Math.abs(got[i] - out[i]) <= bound : Object.is(got[i], out[i]);
    if (!ok) expect.fail(`${what}: element ${i} is ${got[i]}, expected ${out[i]} within ${bound}`);
  }
}

/** Every subset of a shape's axes. */
const subsets = (rank: number) =>
  Array.from({ length: 2 ** rank }, (_, m) => Array.from({ length: rank }, (_, i) => i).filter((i) => m & (1 << i)));

describe('reductions', () => {
  const REDUCE_OPS: ReduceOp[] = ['sum', 'max', 'min'];

  test.each(DTYPES)('a full reduction of lengths around the unrolling, %s', (dtype) => {
    let seed = 1;
    for (const op of REDUCE_OPS) {
      for (const n of SIZES) {
        checkReduce(op, [n], [0], dtype, seed++);
        checkReduce(op, [n], [0], dtype, seed++, false);
      }
    }
  });

  test.each(DTYPES)('every axis subset of 3-d shapes, %s', (dtype) => {
    let seed = 1000;
    for (const shape of [
      [3, 5, 17],
      [17, 1, 9],
      [1, 33, 4],
      [2, 65, 3],
      [7, 3, 1],
    ]) {
      for (const axes of subsets(3)) for (const op of REDUCE_OPS) checkReduce(op, shape, axes, dtype, seed++);
    }
  });

  test('every axis subset of a 4-d shape, and rank 0', () => {
    let seed = 2000;
    for (const axes of subsets(4)) for (const op of REDUCE_OPS) checkReduce(op, [3, 4, 5, 6], axes, 'float32', seed++);
    for (const op of REDUCE_OPS) checkReduce(op, [], [], 'float64', seed++);
  });

  test('an empty input reduces to the identity', () => {
    for (const op of REDUCE_OPS) checkReduce(op, [3, 0], [1], 'float32', 1);
    for (const op of REDUCE_OPS) checkReduce(op, [0, 4], [0], 'float64', 1);
  });

  test('sums of many terms keep float64 accumulation', () => {
    // 2^24 + 1 + 1 + ... in float32 alone would stay at 2^24; in float64 every 1 counts.
    const n = 4099;
    const X = new Float32Array(n).fill(1);
    X[0] = 2 ** 24;
    const got = cpu.reduce('sum', view(X, [n], 'float32'), [0]) as Float32Array;
    expect(got[0]).toBe(Math.fround(2 ** 24 + n - 1));
  });
});

// ---------------------------------------------------------------------------------------------------
// The WebAssembly paths (engine/cpu/elementwise.ts) take float32 from HEAP_MIN elements up, reading operands
// in the shared memory in place (storage from upload) or from a copy (any other array). Run this file
// with IGPO_NO_WASM=1 too: the same checks then cover the TypeScript loops at these sizes.

describe('float32 from HEAP_MIN elements (WebAssembly when present)', () => {
  const LARGE = [HEAP_MIN - 1, HEAP_MIN, HEAP_MIN + 1, HEAP_MIN + 3, HEAP_MIN + 7, 4099];
  const ARITH: BinaryOp[] = ['add', 'sub', 'mul', 'div', 'maximum', 'eq'];

  test('the kernels are in use unless IGPO_NO_WASM=1', () => {
    expect(wasmElementwiseAvailable).toBe(process.env.IGPO_NO_WASM !== '1');
  });

  test('equal shapes, single values and broadcast rows match the scalar loop', () => {
    let seed = 3000;
    for (const op of ARITH) {
      for (const n of LARGE) {
        checkBinary(op, [n], [n], 'float32', seed++);
        checkBinary(op, [n], [1], 'float32', seed++);
        checkBinary(op, [], [n], 'float32', seed++);
      }
      for (const [as, bs] of [
        [[8, 33, 17], [17]],
        [[17], [8, 33, 17]],
        [
          [8, 33, 17],
          [8, 33, 1],
        ],
        [
          [8, 33, 1],
          [8, 33, 17],
        ],
        [
          [4, 1, 301],
          [1, 5, 301],
        ],
        [
          [2, 600],
          [2, 1],
        ],
        [
          [1030, 1],
          [1, 3],
        ],
      ]) {
        checkBinary(op, as, bs, 'float32', seed++);
      }
    }
  });

  test('operands already in the shared memory are read in place, and the pool reuses freed blocks', () => {
    const n = 3 * HEAP_MIN + 5;
    const [x, y] = [data('float32', n, 1), data('float32', n, 2)];
    const a = cpu.upload(x) as Float32Array;
    const b = cpu.upload(y) as Float32Array;
    expect(inHeap(a)).toBe(wasmElementwiseAvailable);
    const want = arrayFor('float32', n);
    for (let i = 0; i < n; i++) want[i] = x[i] * y[i];
    const out = cpu.binary('mul', view(a, [n], 'float32'), view(b, [n], 'float32'), [n]) as Float32Array;
    expectSame(out, want, 'mul in place');
    // A freed block comes back for the next array of its size, holding whatever was there: outputs are
    // written in full, and an array still in use keeps its values.
    const offset = a.byteOffset;
    cpu.free(a);
    cpu.free(a); // a second free of one handle is ignored
    const c = cpu.upload(y) as Float32Array;
    if (wasmElementwiseAvailable) expect(c.byteOffset).toBe(offset);
    expectSame(c, y, 'reused block');
    expectSame(out, want, 'output after its input was freed');
    const d = cpu.fill([n], 'float32', 2.5) as Float32Array;
    expect(d.every((v) => v === 2.5)).toBe(true);
    for (const h of [b, c, d, out]) cpu.free(h);
  });

  test('freed neighbours merge: a larger array takes their place instead of growing the memory', () => {
    if (!wasmElementwiseAvailable) return;
    const n = 4 * HEAP_MIN;
    const fill = (m: number) => cpu.fill([m], 'float32', 1) as Float32Array;
    const keep = fill(n); // whatever lies below, so the three blocks are not at the top
    const [a, b, c] = [fill(n), fill(n), fill(n)];
    const guard = fill(n); // above them, so they do not go back to the unused end
    const top = heapBytes();
    for (const h of [a, c, b]) cpu.free(h); // b last: it joins both neighbours
    expect(heapFreeBytes()).toBeGreaterThanOrEqual(3 * blockBytes(4 * n));
    const big = fill(2 * n);
    expect(heapBytes()).toBe(top);
    expect(big.byteOffset).toBe(a.byteOffset);
    for (const h of [keep, guard, big]) cpu.free(h);
  });

  test('arrays of many lengths share blocks: the pool grows with what is live, not with the lengths seen', () => {
    // A training batch padded to its longest row has a new length at almost every step.
    const lengths = Array.from({ length: 400 }, (_, i) => 50_000 + 97 * i);
    const start = heapBytes();
    for (const n of lengths) {
      const a = cpu.fill([n], 'float32', 1) as Float32Array;
      const b = cpu.fill([n], 'float32', 2) as Float32Array;
      const sum = cpu.binary('add', view(a, [n], 'float32'), view(b, [n], 'float32'), [n]) as Float32Array;
      expect(sum[n - 1]).toBe(3);
      for (const h of [a, b, sum]) cpu.free(h);
    }
    const grown = heapBytes() - start;
    if (!wasmElementwiseAvailable) return expect(grown).toBe(0);
    // Three live arrays in each block size the lengths fall into (a handful: four per doubling); exact
    // sizes would keep 400 x 3 blocks, about 330 MB.
    const sizes = new Set(lengths.map((n) => blockBytes(4 * n)));
    expect(sizes.size).toBeLessThanOrEqual(6);
    expect(grown).toBeLessThanOrEqual(3 * [...sizes].reduce((t, b) => t + b, 0));
    for (const n of [1024, 4100, 65_537, 1_000_003]) {
      const b = blockBytes(4 * n);
      expect(b).toBeGreaterThanOrEqual(4 * n);
      expect(b).toBeLessThanOrEqual(1.25 * 4 * n + 64);
      expect(b % 64).toBe(0);
    }
  });

  /**
   * +-2^e (1 + m) for e up to 60, then the same values negated in a shuffled order: the exact sum is 0, and
   * what float64 leaves is rounding error, which another summation order changes visibly.
   */
  function wide(n: number, seed: number): Float32Array {
    const r = rng(seed);
    const half = Math.floor(n / 2);
    const out = new Float32Array(n).fill(1);
    for (let i = 0; i < half; i++) out[i] = (r() < 0.5 ? -1 : 1) * 2 ** Math.floor(r() * 61) * (1 + r());
    const order = Array.from({ length: half }, (_, i) => i).sort(() => r() - 0.5);
    for (let i = 0; i < half; i++) out[half + i] = -out[order[i]];
    return out;
  }

  /** The row sum's order, written out: eight interleaved float64 partial sums, paired, then the tail. */
  function sumInOrder(X: Float32Array, o: number, len: number): number {
    const s = new Float64Array(8);
    let j = 0;
    for (; j + 8 <= len; j += 8) for (let l = 0; l < 8; l++) s[l] += X[o + j + l];
    let v = s[0] + s[2] + (s[4] + s[6]) + (s[1] + s[3] + (s[5] + s[7]));
    for (; j < len; j++) v += X[o + j];
    return v;
  }

  test('row sums keep one summation order at every size, in WebAssembly and in TypeScript', () => {
    let seed = 4000;
    for (const [rows, len] of [
      [1, 1],
      [1, 7],
      [1, 9],
      [1, 1000],
      [1, HEAP_MIN],
      [1, HEAP_MIN + 5],
      [1, 1 << 16],
      [3, 1031],
      [1200, 5],
      [257, 17],
      [9, 127],
    ]) {
      for (const kind of ['plain', 'special', 'wide'] as const) {
        const X =
          kind === 'wide'
            ? wide(rows * len, seed++)
            : (data('float32', rows * len, seed++, kind === 'special') as Float32Array);
        const want = new Float32Array(rows);
        for (let r = 0; r < rows; r++) want[r] = sumInOrder(X, r * len, len);
        const got = cpu.reduce('sum', view(X, [rows, len], 'float32'), [1]) as Float32Array;
        expectSame(got, want, `sum [${rows}, ${len}]`);
      }
    }
  });

  test('reductions over other axes of large inputs match the scalar loop', () => {
    let seed = 5000;
    for (const op of ['sum', 'max', 'min'] as ReduceOp[]) {
      for (const axes of subsets(3)) checkReduce(op, [5, 300, 3], axes, 'float32', seed++);
      checkReduce(op, [3, 400, 5], [2], 'float32', seed++);
      checkReduce(op, [3, 400, 5], [0, 2], 'float32', seed++);
    }
  });
});

// ---------------------------------------------------------------------------------------------------
// Fused kernels with a WebAssembly path for float32 (engine/cpu/fused-wasm.ts): RMSNorm forward and AdamW,
// against their formulas as scalar loops, bit for bit, on both sides of HEAP_MIN.

describe('fused RMSNorm and AdamW', () => {
  const fused = cpu.fused;

  function rmsNormRef(X: TypedArray, W: TypedArray, C: number, eps: number, dtype: DType) {
    const rows = X.length / C;
    const [y, rstd] = [arrayFor(dtype, X.length), arrayFor(dtype, rows)];
    for (let r = 0; r < rows; r++) {
      let ms = 0;
      for (let j = 0; j < C; j++) ms += X[r * C + j] * X[r * C + j];
      const rs = 1 / Math.sqrt(ms / C + eps);
      for (let j = 0; j < C; j++) y[r * C + j] = X[r * C + j] * rs * W[j];
      rstd[r] = rs;
    }
    return { y, rstd };
  }

  test.each(['float32', 'float64'] as DType[])('RMSNorm forward, %s', (dtype) => {
    let seed = 6000;
    for (const [rows, C] of [
      [1, 1],
      [3, 17],
      [1, 1023],
      [1, 1024],
      [33, 33],
      [16, 64],
      [65, 127],
      [257, 3],
    ]) {
      for (const special of [false, true]) {
        const X = data(dtype, rows * C, seed++, special);
        const W = data(dtype, C, seed++, false);
        for (const [x, w] of [
          [X, W],
          [cpu.upload(X), cpu.upload(W)],
        ] as TypedArray[][]) {
          const got = fused.rmsNorm(view(x, [rows, C], dtype), view(w, [C], dtype), 1e-5) as {
            y: TypedArray;
            rstd: TypedArray;
          };
          const want = rmsNormRef(X, W, C, 1e-5, dtype);
          expectSame(got.y, want.y, `rmsNorm y [${rows}, ${C}] ${dtype}`);
          expectSame(got.rstd, want.rstd, `rmsNorm rstd [${rows}, ${C}] ${dtype}`);
        }
      }
    }
  });

  test.each(['float32', 'float64'] as DType[])('AdamW, three steps, %s', (dtype) => {
    let seed = 7000;
    for (const n of [1, 3, 17, HEAP_MIN - 1, HEAP_MIN, HEAP_MIN + 5, 4099]) {
      for (const resident of [false, true]) {
        const init = [data(dtype, n, seed++, false), data(dtype, n, seed++, false)];
        const place = (a: TypedArray) => (resident ? (cpu.upload(a) as TypedArray) : a.slice());
        const [P, M, V] = [place(init[0]), place(arrayFor(dtype, n)), place(arrayFor(dtype, n))];
        const [p, m, v] = [init[0].slice(), arrayFor(dtype, n), arrayFor(dtype, n)];
        const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step: 0 };
        for (let step = 1; step <= 3; step++) {
          const G = data(dtype, n, seed++, step === 3);
          fused.adamw(view(P, [n], dtype), view(place(G), [n], dtype), view(M, [n], dtype), view(V, [n], dtype), {
            ...hp,
            step,
          });
          const [bc1, bc2] = [1 - hp.beta1 ** step, 1 - hp.beta2 ** step];
          for (let i = 0; i < n; i++) {
            m[i] = hp.beta1 * m[i] + (1 - hp.beta1) * G[i];
            v[i] = hp.beta2 * v[i] + (1 - hp.beta2) * G[i] * G[i];
            p[i] = p[i] * (1 - hp.lr * hp.weightDecay) - (hp.lr * (m[i] / bc1)) / (Math.sqrt(v[i] / bc2) + hp.eps);
          }
          const what = `adamw n ${n} step ${step} ${dtype}${resident ? ' (shared memory)' : ''}`;
          expectSame(P, p, `${what} param`);
          expectSame(M, m, `${what} m`);
          expectSame(V, v, `${what} v`);
        }
      }
    }
  });

  test('the WebAssembly fused kernels are in use unless IGPO_NO_WASM=1', () => {
    expect(wasmFusedAvailable).toBe(process.env.IGPO_NO_WASM !== '1');
  });
});
