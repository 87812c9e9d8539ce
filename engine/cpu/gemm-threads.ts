// The CPU matmul's second thread: a worker that runs the same WebAssembly kernel over the same shared memory
// on part of the output's panels, handed its share through Atomics so that the engine's matmul stays
// synchronous. Every output element is computed by the same code in the same order whichever thread takes
// it, so results are bit-identical to one thread. Not a thread pool: one worker, one job at a time.

import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { WasmMemory } from './wasm.js';

/**
 * The hand-off block: the first CONTROL_BYTES of the shared memory, as Int32 slots. SEQ counts jobs posted,
 * CLAIM is the job the worker took (or -1: the main thread gave up on it), DONE the job it finished, READY
 * 1 once it is listening, and ARGS the kernel's arguments.
 */
export const CONTROL_BYTES = 64;
const SEQ = 0;
const CLAIM = 1;
const DONE = 2;
const READY = 3;
const ARGS = 4;

/**
 * The worker's code, plain JavaScript run with `eval: true`, so that it starts the same way under tsx,
 * vitest and the built package (no TypeScript loader, no file to resolve). It instantiates the module on
 * the shared memory and then waits for jobs for as long as the process lives.
 */
const WORKER = `
const { workerData } = require('node:worker_threads');
const { bytes, mem, nargs } = workerData;
const gemm = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { mem } }).exports.gemm;
const ctl = new Int32Array(mem.buffer, 0, ${CONTROL_BYTES / 4});
Atomics.store(ctl, ${READY}, 1);
let seen = 0;
for (;;) {
  Atomics.wait(ctl, ${SEQ}, seen);
  const seq = Atomics.load(ctl, ${SEQ});
  if (seq === seen) continue;
  seen = seq;
  // The main thread may have given the job up (and turned threads off) if this thread was slow to start.
  if (Atomics.compareExchange(ctl, ${CLAIM}, seq - 1, seq) !== seq - 1) break;
  gemm(...ctl.subarray(${ARGS}, ${ARGS} + nargs));
  Atomics.store(ctl, ${DONE}, seq);
  Atomics.notify(ctl, ${DONE});
}
`;

/**
 * How long the main thread waits for the worker to take a job before doing it itself and staying on one
 * thread from then on: far above a wake-up on a loaded machine (tens of milliseconds), so only a worker
 * that died or never started runs into it.
 */
const CLAIM_TIMEOUT_MS = 2000;

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

/** The second thread over `mem`, started on first use; `run` is false until it is listening. */
export class GemmWorker {
  private worker: Worker | null = null;
  private failed = false;
  private seq = 0;
  private readonly ctl: Int32Array;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly mem: WasmMemory,
    private readonly nargs: number,
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
    const deadline = performance.now() + CLAIM_TIMEOUT_MS;
    while (!this.ready()) {
      if (this.failed || performance.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 5));
    }
    return true;
  }

  private start(): void {
    try {
      const w = new Worker(WORKER, { eval: true, workerData: { bytes: this.bytes, mem: this.mem, nargs: this.nargs } });
      // A CLI exits when its work is done; the worker, blocked in Atomics.wait, must not keep it alive.
      w.unref();
      w.on('error', () => (this.failed = true));
      w.on('exit', () => (this.failed = true));
      this.worker = w;
    } catch {
      this.failed = true;
    }
  }

  /** Posts kernel(args) to the worker; `finish` waits for it. Call only when ready() said yes. */
  post(args: readonly number[]): void {
    const { ctl } = this;
    for (let i = 0; i < args.length; i++) ctl[ARGS + i] = args[i];
    this.seq++;
    Atomics.store(ctl, SEQ, this.seq);
    Atomics.notify(ctl, SEQ);
  }

  /**
   * Waits for the job posted last. Returns false when the worker never took it (it then never will, and
   * threads stay off): the caller computes that share itself.
   */
  finish(): boolean {
    const { ctl, seq } = this;
    const deadline = performance.now() + CLAIM_TIMEOUT_MS;
    while (Atomics.load(ctl, DONE) !== seq) {
      if (Atomics.load(ctl, CLAIM) === seq) {
        Atomics.wait(ctl, DONE, seq - 1);
        continue;
      }
      const left = deadline - performance.now();
      if (left > 0) {
        Atomics.wait(ctl, DONE, seq - 1, left);
      } else if (Atomics.compareExchange(ctl, CLAIM, seq - 1, -1) === seq - 1) {
        this.failed = true;
        return false;
      }
    }
    return true;
  }
}
