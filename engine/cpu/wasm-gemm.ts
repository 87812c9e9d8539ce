// The CPU matmul's inner kernel in WebAssembly SIMD: C = A B for A packed in 4-row panels and B in
// 8-column panels (k-major, zero-padded), 4 x 8 outputs per tile held in eight f32x4 accumulators.
// float32 only, accumulating in float32 (as a GPU does); float64 stays on the TypeScript kernel.
// Large products are split between this thread and a worker over the same shared memory (gemm-threads.ts).

import { CONTROL_BYTES, cpuThreads, type Gemm, GemmWorker, KC, runChunked } from './gemm-threads.js';
import { loadWasmBytes, wasmMemory, type WasmMemory } from './wasm.js';

/**
 * The micro-kernel, loops and all. Written in the WebAssembly text format, assembled once at load. Its
 * memory is imported: shared, with a maximum (4 GiB, wasm32's), when the runtime has wasm threads.
 */
const wat = (shared: boolean) => `
(module
  (import "env" "mem" (memory 1 ${shared ? '65536 shared' : ''}))
  ;; C[mp, np] at cp, row stride ldc floats, = A panels at ap ((mp/4) x [k][4]) times B panels at bp ((np/8) x [k][8])
  ;; over kc of the panels' k steps, added to C as it is when acc is 1: a K split in blocks sums each element
  ;; in the same order as one pass, since every partial sum is a float32 either way.
  (func (export "gemm") (param $ap i32) (param $bp i32) (param $cp i32) (param $mp i32) (param $np i32) (param $k i32)
    (param $ldc i32) (param $kc i32) (param $acc i32)
    (local $i i32) (local $j i32) (local $kk i32) (local $pa i32) (local $pb i32) (local $pb0 i32)
    (local $out i32) (local $row i32)
    (local $a v128) (local $b0 v128) (local $b1 v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (local.set $row (i32.shl (local.get $ldc) (i32.const 2)))
    (block $jend (loop $jloop
      (br_if $jend (i32.ge_u (local.get $j) (local.get $np)))
      ;; B panel j/8 starts at float j*k; it stays in L1 while every A panel streams past it.
      (local.set $pb0 (i32.add (local.get $bp) (i32.shl (i32.mul (local.get $j) (local.get $k)) (i32.const 2))))
      (local.set $i (i32.const 0))
      (block $iend (loop $iloop
        (br_if $iend (i32.ge_u (local.get $i) (local.get $mp)))
        (local.set $pa (i32.add (local.get $ap) (i32.shl (i32.mul (local.get $i) (local.get $k)) (i32.const 2))))
        (local.set $pb (local.get $pb0))
        (local.set $out (i32.add (local.get $cp)
          (i32.shl (i32.add (i32.mul (local.get $i) (local.get $ldc)) (local.get $j)) (i32.const 2))))
        (if (local.get $acc)
          (then
            (local.set $c00 (v128.load (local.get $out))) (local.set $c01 (v128.load offset=16 (local.get $out)))
            (local.set $pa (i32.add (local.get $out) (local.get $row)))
            (local.set $c10 (v128.load (local.get $pa))) (local.set $c11 (v128.load offset=16 (local.get $pa)))
            (local.set $pa (i32.add (local.get $pa) (local.get $row)))
            (local.set $c20 (v128.load (local.get $pa))) (local.set $c21 (v128.load offset=16 (local.get $pa)))
            (local.set $pa (i32.add (local.get $pa) (local.get $row)))
            (local.set $c30 (v128.load (local.get $pa))) (local.set $c31 (v128.load offset=16 (local.get $pa))))
          (else
            (local.set $c00 (v128.const i32x4 0 0 0 0)) (local.set $c01 (v128.const i32x4 0 0 0 0))
            (local.set $c10 (v128.const i32x4 0 0 0 0)) (local.set $c11 (v128.const i32x4 0 0 0 0))
            (local.set $c20 (v128.const i32x4 0 0 0 0)) (local.set $c21 (v128.const i32x4 0 0 0 0))
            (local.set $c30 (v128.const i32x4 0 0 0 0)) (local.set $c31 (v128.const i32x4 0 0 0 0))))
        (local.set $pa (i32.add (local.get $ap) (i32.shl (i32.mul (local.get $i) (local.get $k)) (i32.const 2))))
        (local.set $kk (local.get $kc))
        (block $kend (loop $kloop
          (br_if $kend (i32.eqz (local.get $kk)))
          (local.set $b0 (v128.load (local.get $pb)))
          (local.set $b1 (v128.load offset=16 (local.get $pb)))
          (local.set $a (f32x4.splat (f32.load (local.get $pa))))
          (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $a) (local.get $b0))))
          (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $a) (local.get $b1))))
          (local.set $a (f32x4.splat (f32.load offset=4 (local.get $pa))))
          (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $a) (local.get $b0))))
          (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $a) (local.get $b1))))
          (local.set $a (f32x4.splat (f32.load offset=8 (local.get $pa))))
          (local.set $c20 (f32x4.add (local.get $c20) (f32x4.mul (local.get $a) (local.get $b0))))
          (local.set $c21 (f32x4.add (local.get $c21) (f32x4.mul (local.get $a) (local.get $b1))))
          (local.set $a (f32x4.splat (f32.load offset=12 (local.get $pa))))
          (local.set $c30 (f32x4.add (local.get $c30) (f32x4.mul (local.get $a) (local.get $b0))))
          (local.set $c31 (f32x4.add (local.get $c31) (f32x4.mul (local.get $a) (local.get $b1))))
          (local.set $pa (i32.add (local.get $pa) (i32.const 16)))
          (local.set $pb (i32.add (local.get $pb) (i32.const 32)))
          (local.set $kk (i32.sub (local.get $kk) (i32.const 1)))
          (br $kloop)))
        (v128.store (local.get $out) (local.get $c00)) (v128.store offset=16 (local.get $out) (local.get $c01))
        (local.set $out (i32.add (local.get $out) (local.get $row)))
        (v128.store (local.get $out) (local.get $c10)) (v128.store offset=16 (local.get $out) (local.get $c11))
        (local.set $out (i32.add (local.get $out) (local.get $row)))
        (v128.store (local.get $out) (local.get $c20)) (v128.store offset=16 (local.get $out) (local.get $c21))
        (local.set $out (i32.add (local.get $out) (local.get $row)))
        (v128.store (local.get $out) (local.get $c30)) (v128.store offset=16 (local.get $out) (local.get $c31))
        (local.set $i (i32.add (local.get $i) (i32.const 4)))
        (br $iloop)))
      (local.set $j (i32.add (local.get $j) (i32.const 8)))
      (br $jloop))))
  ;; Panels of P rows from X [R, K] at src, element (r, k) at float r*rs + k*ks: dst[(r/P)*K*P + k*P + r%P],
  ;; zero past R (P is 4 or 8). Written front to back; the reads walk at most P rows (or columns) side by side.
  (func (export "pack") (param $src i32) (param $R i32) (param $K i32) (param $rs i32) (param $ks i32)
    (param $P i32) (param $dst i32)
    (local $r0 i32) (local $k i32) (local $p i32) (local $h i32) (local $s i32) (local $rs4 i32) (local $ks4 i32)
    (local.set $rs4 (i32.shl (local.get $rs) (i32.const 2)))
    (local.set $ks4 (i32.shl (local.get $ks) (i32.const 2)))
    (block $rend (loop $rloop
      (br_if $rend (i32.ge_u (local.get $r0) (local.get $R)))
      (local.set $h (i32.sub (local.get $R) (local.get $r0)))
      (if (i32.gt_u (local.get $h) (local.get $P)) (then (local.set $h (local.get $P))))
      (local.set $k (i32.const 0))
      (block $kend (loop $kloop
        (br_if $kend (i32.ge_u (local.get $k) (local.get $K)))
        (local.set $s (i32.add (local.get $src)
          (i32.add (i32.mul (local.get $r0) (local.get $rs4)) (i32.mul (local.get $k) (local.get $ks4)))))
        (local.set $p (i32.const 0))
        ;; A whole panel's row of contiguous floats (B as stored, or A transposed): one or two v128 copies.
        (if (i32.and (i32.eq (local.get $rs) (i32.const 1)) (i32.eq (local.get $h) (local.get $P)))
          (then
            (v128.store (local.get $dst) (v128.load (local.get $s)))
            (if (i32.eq (local.get $P) (i32.const 8))
              (then (v128.store offset=16 (local.get $dst) (v128.load offset=16 (local.get $s)))))
            (local.set $dst (i32.add (local.get $dst) (i32.shl (local.get $P) (i32.const 2))))
            (local.set $p (local.get $P))))
        (block $pend (loop $ploop
          (br_if $pend (i32.ge_u (local.get $p) (local.get $h)))
          (f32.store (local.get $dst) (f32.load (local.get $s)))
          (local.set $s (i32.add (local.get $s) (local.get $rs4)))
          (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br $ploop)))
        (block $zend (loop $zloop
          (br_if $zend (i32.ge_u (local.get $p) (local.get $P)))
          (f32.store (local.get $dst) (f32.const 0))
          (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
          (local.set $p (i32.add (local.get $p) (i32.const 1)))
          (br $zloop)))
        (local.set $k (i32.add (local.get $k) (i32.const 1)))
        (br $kloop)))
      (local.set $r0 (i32.add (local.get $r0) (local.get $P)))
      (br $rloop)))))
`;

type PackFn = (src: number, R: number, K: number, rs: number, ks: number, P: number, dst: number) => void;
interface Exports {
  gemm: Gemm;
  pack: PackFn;
}

/**
 * The control block at the start of a kernel memory (gemm-threads.ts lays it out), viewed afresh: growing a
 * memory that is not shared detaches its old buffer.
 */
const control = (mem: WasmMemory) => new Int32Array(mem.buffer, 0, CONTROL_BYTES / 4);

/** The kernel on a shared memory, with its bytes for the worker; or on a memory of its own; or null. */
async function load(): Promise<(Exports & { mem: WasmMemory; worker: GemmWorker | null }) | null> {
  // A process started with IGPO_THREADS=1 never needs the worker: it gets the memory of its own too.
  const shared = process.env.IGPO_THREADS === '1' ? null : wasmMemory(1, 65536, true);
  if (shared) {
    const m = await loadWasmBytes<Exports>('gemm', wat(true), { simd: true, threads: true }, { env: { mem: shared } });
    if (m) return { ...m.exports, mem: shared, worker: new GemmWorker(m.bytes, shared) };
  }
  const own = wasmMemory(1, 65536, false);
  const m = own && (await loadWasmBytes<Exports>('gemm', wat(false), { simd: true }, { env: { mem: own } }));
  return m ? { ...m.exports, mem: own!, worker: null } : null;
}

// null without SIMD in this runtime: the TypeScript kernel does the work.
const kernel = await load();

/** Whether the WebAssembly kernel is in use (IGPO_NO_WASM=1 turns it off). */
export const wasmGemmAvailable = kernel !== null;

/** Whether a second thread can take part of large products here (shared memory and workers exist). */
export const wasmGemmThreaded = kernel?.worker != null;

/** Threads the matmul runs on now: cpuThreads() where a worker can be used, else 1. */
export function matmulThreads(): number {
  return wasmGemmThreaded ? cpuThreads() : 1;
}

/** Products split across two threads so far (tests check that the split path ran). */
export const splitCount = { value: 0 };

/** Resolves true once the worker listens (starting it), false where there is none or it cannot start. */
export function threadsReady(): Promise<boolean> {
  return kernel?.worker ? kernel.worker.started() : Promise.resolve(false);
}

/**
 * Products of at least this many FLOP (2 mp np K, about 0.9 ms on one thread) are split across two threads
 * when cpuThreads() says 2; below it the worker's wake-up is too large a share of the work. Measured on the
 * 2-core development machine with nothing else running, one thread's time over two's, [M, 128] @ [128, 512]:
 * 0.96 at 8.4 MFLOP, 1.28 at 16.8, 1.49 at 33.6, 1.70 at 67.1 (1.54-1.60 at [256|512, 256] @ [256, 512]).
 */
export const SPLIT_FLOP = 2 ** 24;

/**
 * Float32 views of the kernel's memory, grown on demand: the packed operands, the padded output, and a
 * staging area where an operand is copied (one memcpy) to be packed by `pack`, the kernel's own loop.
 */
export function wasmBuffers(
  aFloats: number,
  bFloats: number,
  cFloats: number,
  stageFloats: number,
): { Ap: Float32Array; Bp: Float32Array; Cp: Float32Array; S: Float32Array } {
  const k = kernel!;
  const bytes = CONTROL_BYTES + (aFloats + bFloats + cFloats + stageFloats) * 4;
  const have = k.mem.buffer.byteLength;
  if (bytes > have) k.mem.grow(Math.ceil((bytes - have) / 65536));
  const buf = k.mem.buffer;
  let at = CONTROL_BYTES;
  const view = (n: number) => new Float32Array(buf, (at += n * 4) - n * 4, n);
  return { Ap: view(aFloats), Bp: view(bFloats), Cp: view(cFloats), S: view(stageFloats) };
}

/**
 * Packs op(X) [R, K], staged in S (element (r, k) at r*rs + k*ks), into panels of P rows in dst: the
 * layout matmul.ts's packPanels makes, for the WebAssembly kernel, by a loop in WebAssembly.
 */
export function wasmPack(S: Float32Array, R: number, K: number, rs: number, ks: number, P: number, dst: Float32Array) {
  kernel!.pack(S.byteOffset, R, K, rs, ks, P, dst.byteOffset);
}

/** Chunks a split product is cut into: enough that a thread the OS runs late leaves the other little to do. */
const CHUNKS = 8;

/**
 * Bytes of A panels that one pass over every B panel may stream: a quarter of a 2 MiB L2. Past it the rows
 * go in blocks of this size, each block's panels reused by every B panel from L2 instead of read again
 * from L3 or memory (at 1024^3, unblocked, A's 4 MiB are read 128 times).
 */
const A_BLOCK_BYTES = 1 << 19;

/**
 * Cp[mp, np] = panels of Ap times panels of Bp (mp a multiple of 4, np of 8), views from wasmBuffers. The
 * work goes in chunks of panels: blocks of rows when A's panels outgrow A_BLOCK_BYTES, else along the
 * longer side; a large product's chunks are shared by two threads. Each output element is summed over K
 * in order, in blocks of KC, by the same kernel calls however the chunks fall.
 */
export function wasmGemm(
  Ap: Float32Array,
  Bp: Float32Array,
  Cp: Float32Array,
  mp: number,
  np: number,
  K: number,
  threads = cpuThreads(),
): void {
  const { gemm, worker, mem } = kernel!;
  const args = [Ap.byteOffset, Bp.byteOffset, Cp.byteOffset, mp, np, K, np] as const;
  const rowPanels = mp / 4;
  const blockPanels = Math.max(1, Math.floor(A_BLOCK_BYTES / (16 * Math.min(K, KC))));
  const blocked = rowPanels > blockPanels;
  const byCols = !blocked && np / 8 >= rowPanels;
  const panels = byCols ? np / 8 : rowPanels;
  const per = blocked ? blockPanels : Math.ceil(panels / CHUNKS);
  const count = Math.ceil(panels / per);
  if (threads > 1 && worker && 2 * mp * np * K >= SPLIT_FLOP && count > 1 && worker.ready()) {
    splitCount.value++;
    worker.run(gemm, args, byCols, per, count);
  } else if (blocked) {
    runChunked(gemm, control(mem), args, byCols, per, count);
  } else {
    runChunked(gemm, control(mem), args, byCols, panels, 1);
  }
}
