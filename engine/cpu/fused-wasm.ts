// Float32 RMSNorm forward and the AdamW step in WebAssembly, over the shared memory of heap.ts: the same
// float64 operations as fused.ts's TypeScript loops, in the same order, rounded to float32 where those
// store, so the results are theirs bit for bit. Not here: float64, and any kernel that calls Math.exp or
// Math.log, whose results WebAssembly has no way to reproduce.

import { freeHeap, HEAP_MIN, heapFloat32, heapMemory, inHeap, resident } from './heap.js';
import { loadWasm } from './wasm.js';

const f32 = (p: string) => `(f64.promote_f32 (f32.load (local.get ${p})))`;
const bump = (p: string, by: string) => `(local.set ${p} (i32.add (local.get ${p}) ${by}))`;

const WAT = `
(module
  (import "env" "mem" (memory 16 32768 shared))
  ;; Per row of C: ms = sum x^2 (in order), rs = 1 / sqrt(ms / C + eps), y = x * rs * w, rstd = rs.
  (func (export "rmsnorm") (param $x i32) (param $w i32) (param $y i32) (param $rstd i32) (param $rows i32)
    (param $C i32) (param $eps f64)
    (local $r i32) (local $j i32) (local $px i32) (local $pw i32) (local $ms f64) (local $rs f64) (local $v f64)
    (block $rend (loop $rloop
      (br_if $rend (i32.ge_u (local.get $r) (local.get $rows)))
      (local.set $ms (f64.const 0))
      (local.set $px (local.get $x)) (local.set $j (local.get $C))
      (block $e1 (loop $l1
        (br_if $e1 (i32.eqz (local.get $j)))
        (local.set $v ${f32('$px')})
        (local.set $ms (f64.add (local.get $ms) (f64.mul (local.get $v) (local.get $v))))
        ${bump('$px', '(i32.const 4)')} (local.set $j (i32.sub (local.get $j) (i32.const 1)))
        (br $l1)))
      (local.set $rs (f64.div (f64.const 1) (f64.sqrt (f64.add
        (f64.div (local.get $ms) (f64.convert_i32_u (local.get $C))) (local.get $eps)))))
      (local.set $px (local.get $x)) (local.set $pw (local.get $w)) (local.set $j (local.get $C))
      (block $e2 (loop $l2
        (br_if $e2 (i32.eqz (local.get $j)))
        (f32.store (local.get $y) (f32.demote_f64 (f64.mul (f64.mul ${f32('$px')} (local.get $rs)) ${f32('$pw')})))
        ${bump('$px', '(i32.const 4)')} ${bump('$pw', '(i32.const 4)')} ${bump('$y', '(i32.const 4)')}
        (local.set $j (i32.sub (local.get $j) (i32.const 1)))
        (br $l2)))
      (f32.store (local.get $rstd) (f32.demote_f64 (local.get $rs)))
      ${bump('$rstd', '(i32.const 4)')} (local.set $x (local.get $px))
      (local.set $r (i32.add (local.get $r) (i32.const 1)))
      (br $rloop))))

  ;; m = b1 m + c1 g; v = b2 v + c2 g g (both stored as float32 and read back); p = p decay - lr (m / bc1) /
  ;; (sqrt(v / bc2) + eps).
  (func (export "adamw") (param $p i32) (param $g i32) (param $m i32) (param $v i32) (param $n i32)
    (param $b1 f64) (param $c1 f64) (param $b2 f64) (param $c2 f64) (param $decay f64) (param $lr f64)
    (param $bc1 f64) (param $bc2 f64) (param $eps f64)
    (local $gv f64)
    (block $end (loop $loop
      (br_if $end (i32.eqz (local.get $n)))
      (local.set $gv ${f32('$g')})
      (f32.store (local.get $m) (f32.demote_f64 (f64.add (f64.mul (local.get $b1) ${f32('$m')})
        (f64.mul (local.get $c1) (local.get $gv)))))
      (f32.store (local.get $v) (f32.demote_f64 (f64.add (f64.mul (local.get $b2) ${f32('$v')})
        (f64.mul (f64.mul (local.get $c2) (local.get $gv)) (local.get $gv)))))
      (f32.store (local.get $p) (f32.demote_f64 (f64.sub (f64.mul ${f32('$p')} (local.get $decay))
        (f64.div (f64.mul (local.get $lr) (f64.div ${f32('$m')} (local.get $bc1)))
          (f64.add (f64.sqrt (f64.div ${f32('$v')} (local.get $bc2))) (local.get $eps))))))
      ${['$p', '$g', '$m', '$v'].map((q) => bump(q, '(i32.const 4)')).join(' ')}
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $loop))))
)`;

interface Kernels {
  rmsnorm: (x: number, w: number, y: number, rstd: number, rows: number, C: number, eps: number) => void;
  adamw: (
    p: number,
    g: number,
    m: number,
    v: number,
    n: number,
    ...hp: [number, number, number, number, number, number, number, number, number]
  ) => void;
}

const kernels = heapMemory
  ? await loadWasm<Kernels>('fused', WAT, { simd: true, threads: true }, { env: { mem: heapMemory } })
  : null;

/** Whether these kernels run (as elementwise.ts's: WebAssembly with shared memory, IGPO_NO_WASM unset). */
export const wasmFusedAvailable = kernels !== null;

/** Runs fn on the arrays' offsets in the shared memory, copying in (and back, for `written`) what lives elsewhere. */
function withResident(arrays: Float32Array[], written: Set<Float32Array>, fn: (at: number[]) => void): boolean {
  const scratch: Float32Array[] = [];
  try {
    const res = arrays.map((a) => resident(a, scratch));
    if (res.some((r) => r === null)) return false;
    fn(res.map((r) => r!.byteOffset));
    res.forEach((r, i) => {
      if (r !== arrays[i] && written.has(arrays[i])) arrays[i].set(r!);
    });
    return true;
  } finally {
    for (const s of scratch) freeHeap(s);
  }
}

/** RMSNorm of X [rows, C] by W: y and rstd (views in the shared memory), or null when not taken. */
export function wasmRmsNorm(
  X: Float32Array,
  W: Float32Array,
  C: number,
  eps: number,
): { y: Float32Array; rstd: Float32Array } | null {
  if (!kernels || X.length < HEAP_MIN || C === 0) return null;
  const rows = X.length / C;
  const y = heapFloat32(X.length, 0);
  const rstd = heapFloat32(rows, 0);
  const ok =
    inHeap(y) &&
    inHeap(rstd) &&
    withResident([X, W], new Set(), ([x, w]) => kernels.rmsnorm(x, w, y.byteOffset, rstd.byteOffset, rows, C, eps));
  if (ok) return { y, rstd };
  freeHeap(y);
  freeHeap(rstd);
  return null;
}

/** One AdamW step in place (fused.ts's hyper-parameters, already derived); false when not taken. */
export function wasmAdamW(
  P: Float32Array,
  G: Float32Array,
  M: Float32Array,
  V: Float32Array,
  hp: { beta1: number; beta2: number; decay: number; lr: number; bc1: number; bc2: number; eps: number },
): boolean {
  if (!kernels || P.length < HEAP_MIN) return false;
  const { beta1, beta2, decay, lr, bc1, bc2, eps } = hp;
  return withResident([P, G, M, V], new Set([P, M, V]), ([p, g, m, v]) =>
    kernels.adamw(p, g, m, v, P.length, beta1, 1 - beta1, beta2, 1 - beta2, decay, lr, bc1, bc2, eps),
  );
}
