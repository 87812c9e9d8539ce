// The WebAssembly peer: TensorFlow.js with tfjs-backend-wasm (its C++ kernels, XNNPACK among them, compiled to
// WebAssembly), set up once in Node; the cpu and autodiff suites time it beside tfjs-backend-cpu.
//
// tfjs-core keeps one engine per process: the 'cpu' and 'wasm' peers share it, and a tensor belongs to the
// backend that was active when it was made. A suite that uses both calls tf.setBackend before making a
// peer's inputs and before timing it (the harness's `select`); otherwise tfjs would copy tensors between
// backends inside the timed call.
//
// Which binary runs: tfjs picks the SIMD build when WebAssembly SIMD validates (it does in Node 20) and the
// threaded SIMD build only where its thread check passes; under Node that check answers no (tfjs turns
// threads off there), and forcing it fails, since the threaded build starts its workers from a Blob URL.
// So here: SIMD on one thread, like our CPU backend on one JavaScript thread. `variant` says what ran.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type * as tfc from '@tensorflow/tfjs-core';

export interface TfjsWasm {
  tf: typeof tfc;
  /** For reports: "tfjs-wasm 4.22.0". */
  name: string;
  /** The binary that was loaded and its thread count, e.g. "tfjs-backend-wasm-simd.wasm, 1 thread". */
  variant: string;
}

let ready: Promise<TfjsWasm> | null = null;

/**
 * Why this peer is off, or null when it runs (the default). Env TFJS_WASM=off turns it off, for a run that
 * cannot load the package: the esbuild bundle of ../shared/tools/gpu-bundle.sh carries neither the .wasm
 * files nor the `__dirname` that the package's Node loader reads.
 */
export function tfjsWasmOff(): string | null {
  return process.env.TFJS_WASM === 'off' ? 'the tfjs-wasm peer is off (env TFJS_WASM=off)' : null;
}

/** tfjs-core with the 'wasm' backend active (left active: call tf.setBackend to go back to another). */
export function tfjsWasm(): Promise<TfjsWasm> {
  ready ??= setUp().catch((e: unknown) => {
    ready = null;
    const why =
      e instanceof Error ? e.message : typeof e === 'object' && e && 'message' in e ? String(e.message) : String(e);
    throw new Error(
      `tfjs-wasm peer: @tensorflow/tfjs-backend-wasm could not be loaded (${why}). It is a ` +
        `devDependency: run npm ci; ` +
        'to run without this peer (a bundled run), set env TFJS_WASM=off.',
    );
  });
  return ready;
}

/** The folder with the package's .wasm files, from Node's resolution of the package (its main is in dist/). */
function wasmDir(): string {
  const main = createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm');
  const dir = dirname(main);
  const missing = ['tfjs-backend-wasm.wasm', 'tfjs-backend-wasm-simd.wasm'].filter((f) => !existsSync(join(dir, f)));
  if (missing.length) throw new Error(`${missing.join(', ')} not found in ${dir}`);
  return dir;
}

async function setUp(): Promise<TfjsWasm> {
  const dir = wasmDir();
  const tf = await import('@tensorflow/tfjs-core');
  // Importing the package registers the 'wasm' backend and its kernels with the shared engine.
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // A prefix: tfjs appends the file name of the build it picks. Node's loader reads it from disk.
  wasm.setWasmPaths(dir.endsWith('/') ? dir : `${dir}/`);
  // Production mode only silences tfjs's warnings.
  tf.enableProdMode();
  if (!(await tf.setBackend('wasm'))) throw new Error("tf.setBackend('wasm') returned false");
  await tf.ready();
  const simd = Boolean(await tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'));
  const threaded = Boolean(await tf.env().getAsync('WASM_HAS_MULTITHREAD_SUPPORT'));
  const file =
    simd && threaded
      ? 'tfjs-backend-wasm-threaded-simd.wasm'
      : simd
        ? 'tfjs-backend-wasm-simd.wasm'
        : 'tfjs-backend-wasm.wasm';
  const threads = wasm.getThreadsCount();
  return { tf, name: `tfjs-wasm ${tf.version_core}`, variant: `${file}, ${threads} thread${threads === 1 ? '' : 's'}` };
}
