// The CPU backend's float32 add, sub, mul and div (equal shapes, a single value, broadcast rows) and its
// float32 row sums, in WebAssembly SIMD over the shared memory of heap.ts. Results are the TypeScript loops'
// bit for bit: an f32 add, sub, mul or div rounds as the float64 one rounded to float32 does, and a row
// sum keeps the TypeScript loop's eight float64 partial sums and the order it adds them in (backend.ts).
// Not here: other dtypes and ops, which stay on the compiled TypeScript loops of backend.ts.

import { freeHeap, HEAP_MIN, heapFloat32, heapMemory, inHeap, resident, ZERO_OFFSETS } from './heap.js';
import type { Rows } from './strided.js';
import { loadWasm } from './wasm.js';

export type WasmBinaryOp = 'add' | 'sub' | 'mul' | 'div';
const OPS: readonly WasmBinaryOp[] = ['add', 'sub', 'mul', 'div'];
/** Row steps (a's, b's) that a kernel exists for: both operands along the row, or one read once per row. */
const STEPS = ['11', '10', '01'] as const;

/**
 * out[k++] = a[ra[r] + j * sa] OP b[rb[r] + j * sb] for each row r and j < len: four lanes at a time, then
 * one at a time. An operand with step 0 is loaded once per row (splat).
 */
function rowsFunc(op: WasmBinaryOp, sa: boolean, sb: boolean): string {
  const get = (p: string, step: boolean, v: string) => (step ? `(v128.load (local.get ${p}))` : `(local.get ${v})`);
  const bump = (p: string, step: boolean, by: number) =>
    step ? `(local.set ${p} (i32.add (local.get ${p}) (i32.const ${by})))` : '';
  const start = (p: string, base: string, table: string) =>
    `(local.set ${p} (i32.add (local.get ${base}) (i32.shl (i32.load (i32.add (local.get ${table}) ` +
    `(i32.shl (local.get $r) (i32.const 2)))) (i32.const 2))))`;
  return `
  (func (export "${op}_${sa ? 1 : 0}${sb ? 1 : 0}")
    (param $a i32) (param $b i32) (param $o i32) (param $len i32) (param $ra i32) (param $rb i32) (param $rows i32)
    (local $r i32) (local $pa i32) (local $pb i32) (local $k i32) (local $va v128) (local $vb v128)
    (block $rend (loop $rloop
      (br_if $rend (i32.ge_u (local.get $r) (local.get $rows)))
      ${start('$pa', '$a', '$ra')}
      ${start('$pb', '$b', '$rb')}
      ${sa ? '' : '(local.set $va (v128.load32_splat (local.get $pa)))'}
      ${sb ? '' : '(local.set $vb (v128.load32_splat (local.get $pb)))'}
      (local.set $k (local.get $len))
      (block $vend (loop $vloop
        (br_if $vend (i32.lt_u (local.get $k) (i32.const 4)))
        (v128.store (local.get $o) (f32x4.${op} ${get('$pa', sa, '$va')} ${get('$pb', sb, '$vb')}))
        (local.set $o (i32.add (local.get $o) (i32.const 16))) ${bump('$pa', sa, 16)} ${bump('$pb', sb, 16)}
        (local.set $k (i32.sub (local.get $k) (i32.const 4)))
        (br $vloop)))
      (block $send (loop $sloop
        (br_if $send (i32.eqz (local.get $k)))
        (f32.store (local.get $o) (f32.${op} (f32.load (local.get $pa)) (f32.load (local.get $pb))))
        (local.set $o (i32.add (local.get $o) (i32.const 4))) ${bump('$pa', sa, 4)} ${bump('$pb', sb, 4)}
        (local.set $k (i32.sub (local.get $k) (i32.const 1)))
        (br $sloop)))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rloop))))`;
}

/**
 * out[r] (float64) = the sum of row r of x ([rows, len], contiguous): partial sums s0..s7 take x[j + l] for
 * j a multiple of 8 (f64x2 lanes: s0 s1 | s2 s3 | s4 s5 | s6 s7), are added as ((s0 + s2) + (s4 + s6)) +
 * ((s1 + s3) + (s5 + s7)), and the last len % 8 values follow one by one.
 */
const SUM_ROWS = `
  (func (export "sum_rows") (param $x i32) (param $out i32) (param $len i32) (param $rows i32)
    (local $r i32) (local $k i32) (local $v v128) (local $s f64)
    (local $s01 v128) (local $s23 v128) (local $s45 v128) (local $s67 v128)
    (block $rend (loop $rloop
      (br_if $rend (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $s01 (v128.const f64x2 0 0)) (local.set $s23 (v128.const f64x2 0 0))
      (local.set $s45 (v128.const f64x2 0 0)) (local.set $s67 (v128.const f64x2 0 0))
      (local.set $k (local.get $len))
      (block $vend (loop $vloop
        (br_if $vend (i32.lt_u (local.get $k) (i32.const 8)))
        (local.set $v (v128.load (local.get $x)))
        (local.set $s01 (f64x2.add (local.get $s01) (f64x2.promote_low_f32x4 (local.get $v))))
        (local.set $s23 (f64x2.add (local.get $s23) (f64x2.promote_low_f32x4
          (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))))
        (local.set $v (v128.load offset=16 (local.get $x)))
        (local.set $s45 (f64x2.add (local.get $s45) (f64x2.promote_low_f32x4 (local.get $v))))
        (local.set $s67 (f64x2.add (local.get $s67) (f64x2.promote_low_f32x4
          (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v)))))
        (local.set $x (i32.add (local.get $x) (i32.const 32)))
        (local.set $k (i32.sub (local.get $k) (i32.const 8)))
        (br $vloop)))
      ;; lane 0: (s0 + s2) + (s4 + s6), lane 1: (s1 + s3) + (s5 + s7)
      (local.set $v (f64x2.add (f64x2.add (local.get $s01) (local.get $s23))
        (f64x2.add (local.get $s45) (local.get $s67))))
      (local.set $s (f64.add (f64x2.extract_lane 0 (local.get $v)) (f64x2.extract_lane 1 (local.get $v))))
      (block $send (loop $sloop
        (br_if $send (i32.eqz (local.get $k)))
        (local.set $s (f64.add (local.get $s) (f64.promote_f32 (f32.load (local.get $x)))))
        (local.set $x (i32.add (local.get $x) (i32.const 4)))
        (local.set $k (i32.sub (local.get $k) (i32.const 1)))
        (br $sloop)))
      (f64.store (i32.add (local.get $out) (i32.shl (local.get $r) (i32.const 3))) (local.get $s))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rloop))))`;

const WAT = `
(module
  (import "env" "mem" (memory 16 32768 shared))
  ${OPS.flatMap((op) => STEPS.map((s) => rowsFunc(op, s[0] === '1', s[1] === '1'))).join('\n')}
  ${SUM_ROWS})`;

type RowsKernel = (a: number, b: number, o: number, len: number, ra: number, rb: number, rows: number) => void;
type Kernels = Record<`${WasmBinaryOp}_${(typeof STEPS)[number]}`, RowsKernel> & {
  sum_rows: (x: number, out: number, len: number, rows: number) => void;
};

const kernels = heapMemory
  ? await loadWasm<Kernels>('elementwise', WAT, { simd: true, threads: true }, { env: { mem: heapMemory } })
  : null;

/** Whether these kernels run (WebAssembly SIMD and shared memory present, IGPO_NO_WASM unset). */
export const wasmElementwiseAvailable = kernels !== null;

/** Int32 row offsets in the shared memory (a scratch block), or the shared zero offset for a single row. */
function offsets(starts: Int32Array, scratch: Float32Array[]): number | null {
  if (starts.length === 1 && starts[0] === 0) return ZERO_OFFSETS;
  const block = heapFloat32(starts.length, 0);
  if (!inHeap(block)) return null;
  new Int32Array(block.buffer, block.byteOffset, starts.length).set(starts);
  scratch.push(block);
  return block.byteOffset;
}

/**
 * out = A op B for float32 walked as `rows` (stridedRows of the broadcast), as a view in the shared memory;
 * null when these kernels do not take the call (the caller's TypeScript loop then does).
 */
export function wasmBinary(op: string, A: Float32Array, B: Float32Array, n: number, rows: Rows): Float32Array | null {
  const [sa, sb] = rows.steps;
  const key = `${op}_${sa}${sb}`;
  if (!kernels || n < HEAP_MIN || !(key in kernels)) return null;
  const scratch: Float32Array[] = [];
  try {
    const out = heapFloat32(n, 0);
    if (!inHeap(out)) return null;
    const [a, b] = [resident(A, scratch), resident(B, scratch)];
    const [ra, rb] = [offsets(rows.starts[0], scratch), offsets(rows.starts[1], scratch)];
    if (!a || !b || ra === null || rb === null) {
      freeHeap(out);
      return null;
    }
    kernels[key as keyof Kernels](
      a.byteOffset,
      b.byteOffset,
      out.byteOffset,
      rows.length,
      ra,
      rb,
      rows.starts[0].length,
    );
    return out;
  } finally {
    for (const s of scratch) freeHeap(s);
  }
}

/** Sums of the `rows` contiguous rows of `len` float32 in X, in float64; null when not taken. */
export function wasmRowSums(X: Float32Array, len: number, rows: number): Float64Array | null {
  if (!kernels || X.length < HEAP_MIN) return null;
  const scratch: Float32Array[] = [];
  try {
    const out = heapFloat32(2 * rows, 0);
    if (!inHeap(out)) return null;
    scratch.push(out);
    const x = resident(X, scratch);
    if (!x) return null;
    kernels.sum_rows(x.byteOffset, out.byteOffset, len, rows);
    return new Float64Array(out.buffer, out.byteOffset, rows).slice();
  } finally {
    for (const s of scratch) freeHeap(s);
  }
}
