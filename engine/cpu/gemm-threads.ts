// The CPU matmul's second thread: a worker that runs the same WebAssembly kernel over the same shared memory,
// handed a product through Atomics so that the engine's matmul stays synchronous. The output's panels go in
// chunks that either thread takes from a shared counter, so a worker that the OS runs late costs nothing but
// its share: this thread takes the rest. Every output element comes from the same kernel calls whichever
// thread makes them, so results are bit-identical to one thread. Not a thread pool: one worker, one job.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { WasmMemory } from './wasm.js';

/**
 * The hand-off block: the first CONTROL_BYTES of the shared memory, as Int32 slots. SEQ counts jobs posted,
 * CLAIM is the last job decided (the worker took it, or this thread finished it first and shut the worker
 * out), DONE the last the worker finished, READY 1 once it listens, NEXT the next chunk to take, and ARGS
 * the job: the kernel's seven arguments, then the axis split (1: columns), panels per chunk and chunks.
 */
export const CONTROL_BYTES = 64;
const SEQ = 0;
const CLAIM = 1;
const DONE = 2;
const READY = 3;
const NEXT = 4;
const ARGS = 5;

/** K goes in blocks of KC steps: a B panel's block (KC x 8 floats, 8 KiB) and an A panel's stay in L1. */
export const KC = 256;

/**
 * Takes chunks until none is left and runs the kernel on each: plain JavaScript, compiled once here and once
 * in the worker, so both threads cut the panels the same way.
 */
const CHUNKS = `(gemm, c) => {
  const ap = c[${ARGS}], bp = c[${ARGS + 1}], cp = c[${ARGS + 2}], mp = c[${ARGS + 3}], np = c[${ARGS + 4}];
  const k = c[${ARGS + 5}], ldc = c[${ARGS + 6}], byCols = c[${ARGS + 7}], per = c[${ARGS + 8}], count = c[${ARGS + 9}];
  for (let i; (i = Atomics.add(c, ${NEXT}, 1)) < count; ) {
    const r0 = byCols ? 0 : i * per * 4;
    const c0 = byCols ? i * per * 8 : 0;
    const h = byCols ? mp : Math.min(per * 4, mp - r0);
    const w = byCols ? Math.min(per * 8, np - c0) : np;
    for (let k0 = 0; k0 < k; k0 += ${KC}) {
      const a = ap + (r0 * k + k0 * 4) * 4;
      const b = bp + (c0 * k + k0 * 8) * 4;
      gemm(a, b, cp + (r0 * ldc + c0) * 4, h, w, k, ldc, Math.min(${KC}, k - k0), k0 > 0 ? 1 : 0);
    }
  }
}`;

export type Gemm = (
  ap: number,
  bp: number,
  cp: number,
  mp: number,
  np: number,
  k: number,
  ldc: number,
  kc: number,
  acc: number,
) => void;
const runChunks = new Function(`return ${CHUNKS}`)() as (gemm: Gemm, ctl: Int32Array) => void;

/**
 * Writes a job into the control block `ctl` (the memory's first CONTROL_BYTES): gemm's arguments, then
 * `count` chunks of `per` panels along the columns (byCols) or the rows.
 */
function setJob(ctl: Int32Array, args: readonly number[], byCols: boolean, per: number, count: number): void {
  for (let i = 0; i < 7; i++) ctl[ARGS + i] = args[i];
  ctl[ARGS + 7] = byCols ? 1 : 0;
  ctl[ARGS + 8] = per;
  ctl[ARGS + 9] = count;
  Atomics.store(ctl, NEXT, 0);
}

/** The job's chunks one after another on this thread: the same kernel calls the two threads make. */
export function runChunked(
  gemm: Gemm,
  ctl: Int32Array,
  args: readonly number[],
  byCols: boolean,
  per: number,
  count: number,
): void {
  setJob(ctl, args, byCols, per, count);
  runChunks(gemm, ctl);
}

/**
 * The worker's code, plain JavaScript run with `eval: true`, so that it starts the same way under tsx,
 * vitest and the built package (no TypeScript loader, no file to resolve). It instantiates the module on
 * the shared memory and then waits for jobs for as long as the process lives.
 */
const WORKER = `
const { workerData } = require('node:worker_threads');
const { bytes, mem } = workerData;
const gemm = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { mem } }).exports.gemm;
const ctl = new Int32Array(mem.buffer, 0, ${CONTROL_BYTES / 4});
const chunks = ${CHUNKS};
Atomics.store(ctl, ${READY}, 1);
let seen = 0;
for (;;) {
  Atomics.wait(ctl, ${SEQ}, seen);
  const seq = Atomics.load(ctl, ${SEQ});
  if (seq === seen) continue;
  seen = seq;
  // Too late: the main thread finished this job and shut this thread out of it.
  if (Atomics.compareExchange(ctl, ${CLAIM}, seq - 1, seq) !== seq - 1) continue;
  chunks(gemm, ctl);
  Atomics.store(ctl, ${DONE}, seq);
  Atomics.notify(ctl, ${DONE});
}
`;

/** Threads the CPU matmul may use: env IGPO_THREADS (1 turns the worker off), else 2 where there are 2 cores. */
export function cpuThreads(): number {
  const env = process.env.IGPO_THREADS;
  if (env !== undefined && env !== '') {
    const n = Number(env);
    if (!Number.isInteger(n) || n < 1) throw new Error(`IGPO_THREADS: expected a whole number >= 1, got '${env}'`);
    return Math.min(n, 2);
  }
  return Math.min(availableParallelism(), 2);
}

/** The second thread over `mem`, started on first use. */
export class GemmWorker {
  private worker: Worker | null = null;
  private failed = false;
  private seq = 0;
  private readonly ctl: Int32Array;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly mem: WasmMemory,
  ) {
    this.ctl = new Int32Array(mem.buffer, 0, CONTROL_BYTES / 4);
  }

  /**
   * Whether a job can be handed off now. The first call starts the worker and answers false: it takes tens
   * of milliseconds to start, and the products meanwhile run on one thread, with the same results.
   */
  ready(): boolean {
    if (this.failed) return false;
    if (!this.worker) {
      this.start();
      return false;
    }
    return Atomics.load(this.ctl, READY) === 1;
  }

  /** Starts the worker if need be and resolves once it listens (true) or cannot (false). */
  async started(): Promise<boolean> {
    const deadline = performance.now() + 5000;
    while (!this.ready()) {
      if (this.failed || performance.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 5));
    }
    return true;
  }

  private start(): void {
    try {
      const w = new Worker(WORKER, { eval: true, workerData: { bytes: this.bytes, mem: this.mem } });
      // A CLI exits when its work is done; the worker, blocked in Atomics.wait, must not keep it alive.
      w.unref();
      w.on('error', () => (this.failed = true));
      w.on('exit', () => (this.failed = true));
      this.worker = w;
    } catch {
      this.failed = true;
    }
  }

  /**
   * Runs gemm(args) over both threads, in `count` chunks of `per` panels along the columns (byCols) or the
   * rows, and returns when every chunk is written. Call only when ready() said yes.
   */
  run(gemm: Gemm, args: readonly number[], byCols: boolean, per: number, count: number): void {
    const { ctl } = this;
    setJob(ctl, args, byCols, per, count);
    const seq = ++this.seq;
    Atomics.store(ctl, SEQ, seq);
    Atomics.notify(ctl, SEQ);
    runChunks(gemm, ctl);
    // Every chunk is taken. If the worker has not claimed the job yet, it never will: nothing to wait for.
    if (Atomics.compareExchange(ctl, CLAIM, seq - 1, seq) === seq - 1) return;
    while (Atomics.load(ctl, DONE) !== seq) Atomics.wait(ctl, DONE, seq - 1);
  }
}
