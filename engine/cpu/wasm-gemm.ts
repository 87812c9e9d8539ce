// The CPU matmul's inner kernel in WebAssembly SIMD: C = A B for A packed in 4-row panels and B in
// 8-column panels (k-major, zero-padded), 4 x 8 outputs per tile held in eight f32x4 accumulators.
// float32 only, accumulating in float32 (as a GPU does); float64 stays on the TypeScript kernel.
// Large products are split between this thread and a worker over the same shared memory (gemm-threads.ts).

import { CONTROL_BYTES, cpuThreads, GemmWorker } from './gemm-threads.js';
import { loadWasmBytes, wasmMemory, type WasmMemory } from './wasm.js';

/**
 * The micro-kernel, loops and all. Written in the WebAssembly text format, assembled once at load. Its
 * memory is imported: shared, with a maximum (4 GiB, wasm32's), when the runtime has wasm threads.
 */
const wat = (shared: boolean) => `
(module
  (import "env" "mem" (memory 1 ${shared ? '65536 shared' : ''}))
  ;; C[mp, np] at cp, row stride ldc floats, = A panels at ap ((mp/4) x [k][4]) times B panels at bp ((np/8) x [k][8]).
  (func (export "gemm") (param $ap i32) (param $bp i32) (param $cp i32) (param $mp i32) (param $np i32) (param $k i32)
    (param $ldc i32)
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
        (local.set $c00 (v128.const i32x4 0 0 0 0)) (local.set $c01 (v128.const i32x4 0 0 0 0))
        (local.set $c10 (v128.const i32x4 0 0 0 0)) (local.set $c11 (v128.const i32x4 0 0 0 0))
        (local.set $c20 (v128.const i32x4 0 0 0 0)) (local.set $c21 (v128.const i32x4 0 0 0 0))
        (local.set $c30 (v128.const i32x4 0 0 0 0)) (local.set $c31 (v128.const i32x4 0 0 0 0))
        (local.set $kk (local.get $k))
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
        (local.set $out (i32.add (local.get $cp)
          (i32.shl (i32.add (i32.mul (local.get $i) (local.get $ldc)) (local.get $j)) (i32.const 2))))
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
      (br $jloop)))))
`;

type GemmFn = (ap: number, bp: number, cp: number, mp: number, np: number, k: number, ldc: number) => void;

/** The kernel on a shared memory, with its bytes for the worker; or on a memory of its own; or null. */
async function load(): Promise<{ gemm: GemmFn; mem: WasmMemory; worker: GemmWorker | null } | null> {
  const shared = wasmMemory(1, 65536, true);
  if (shared) {
    const m = await loadWasmBytes<{ gemm: GemmFn }>(
      'gemm',
      wat(true),
      { simd: true, threads: true },
      { env: { mem: shared } },
    );
    if (m) return { gemm: m.exports.gemm, mem: shared, worker: new GemmWorker(m.bytes, shared, 7) };
  }
  const own = wasmMemory(1, 65536, false);
  const m = own && (await loadWasmBytes<{ gemm: GemmFn }>('gemm', wat(false), { simd: true }, { env: { mem: own } }));
  return m ? { gemm: m.exports.gemm, mem: own!, worker: null } : null;
}

// null without SIMD in this runtime: the TypeScript kernel does the work.
const kernel = await load();

/** Whether the WebAssembly kernel is in use (IGPO_NO_WASM=1 turns it off). */
export const wasmGemmAvailable = kernel !== null;

/** Whether a second thread can take part of large products here (shared memory and workers exist). */
export const wasmGemmThreaded = kernel?.worker != null;

/** Products split across two threads so far (tests check that the split path ran). */
export const splitCount = { value: 0 };

/** Resolves true once the worker listens (starting it), false where there is none or it cannot start. */
export function threadsReady(): Promise<boolean> {
  return kernel?.worker ? kernel.worker.started() : Promise.resolve(false);
}

/**
 * Products of at least this many FLOP (2 mp np K) are split across two threads when cpuThreads() says 2.
 * Below it the hand-off (a wake-up of the worker and of this thread, each tens of microseconds) costs more
 * than half the work saves.
 */
export const SPLIT_FLOP = 2 ** 22;

/** Float32 views of the kernel's memory for the packed operands and the padded output, grown on demand. */
export function wasmBuffers(
  aFloats: number,
  bFloats: number,
  cFloats: number,
): { Ap: Float32Array; Bp: Float32Array; Cp: Float32Array } {
  const k = kernel!;
  const bytes = CONTROL_BYTES + (aFloats + bFloats + cFloats) * 4;
  const have = k.mem.buffer.byteLength;
  if (bytes > have) k.mem.grow(Math.ceil((bytes - have) / 65536));
  const buf = k.mem.buffer;
  return {
    Ap: new Float32Array(buf, CONTROL_BYTES, aFloats),
    Bp: new Float32Array(buf, CONTROL_BYTES + aFloats * 4, bFloats),
    Cp: new Float32Array(buf, CONTROL_BYTES + (aFloats + bFloats) * 4, cFloats),
  };
}

/**
 * Cp[mp, np] = panels of Ap times panels of Bp (mp a multiple of 4, np of 8), views from wasmBuffers. A
 * large product goes to two threads, split along its longer side at a panel boundary; each output element
 * is one call of the same kernel either way.
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
  const { gemm, worker } = kernel!;
  const [ap, bp, cp] = [Ap.byteOffset, Bp.byteOffset, Cp.byteOffset];
  const rowPanels = mp / 4;
  const colPanels = np / 8;
  if (threads < 2 || !worker || 2 * mp * np * K < SPLIT_FLOP || Math.max(rowPanels, colPanels) < 2 || !worker.ready()) {
    gemm(ap, bp, cp, mp, np, K, np);
    return;
  }
  splitCount.value++;
  // This thread takes the first half of the panels, the worker the rest.
  let theirs: number[];
  if (colPanels >= rowPanels) {
    const n0 = Math.ceil(colPanels / 2) * 8;
    theirs = [ap, bp + n0 * K * 4, cp + n0 * 4, mp, np - n0, K, np];
    worker.post(theirs);
    gemm(ap, bp, cp, mp, n0, K, np);
  } else {
    const m0 = Math.ceil(rowPanels / 2) * 4;
    theirs = [ap + m0 * K * 4, bp, cp + m0 * np * 4, mp - m0, np, K, np];
    worker.post(theirs);
    gemm(ap, bp, cp, m0, np, K, np);
  }
  if (!worker.finish()) gemm(...(theirs as Parameters<GemmFn>));
}
