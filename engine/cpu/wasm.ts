// Loading the CPU backend's WebAssembly kernels: each is written in the text format next to the code that
// calls it and assembled once at load by wabt. IGPO_NO_WASM=1, or a runtime without the features a module
// needs, leaves every caller on its TypeScript path.

import wabtInit from 'wabt';

// The few WebAssembly types used (the project's TypeScript lib has no DOM, where they are declared).
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
declare const WebAssembly: {
  instantiate(bytes: Uint8Array, imports?: object): Promise<{ instance: { exports: unknown } }>;
  Memory: new (d: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
};

/** Features a module may use, as wabt names them. */
export interface WasmFeatures {
  simd?: boolean;
  threads?: boolean;
}

/** Whether WebAssembly kernels may be used at all (IGPO_NO_WASM=1 turns them off). */
export const wasmEnabled = process.env.IGPO_NO_WASM !== '1';

/**
 * Assembles and instantiates a module; its exports, or null when WebAssembly is off or the runtime lacks
 * a feature it needs (the caller then keeps its TypeScript path).
 */
export async function loadWasm<T>(
  name: string,
  wat: string,
  features: WasmFeatures = { simd: true },
  imports: object = {},
): Promise<T | null> {
  return (await loadWasmBytes<T>(name, wat, features, imports))?.exports ?? null;
}

/** loadWasm, also returning the assembled module, for a worker thread that instantiates it again. */
export async function loadWasmBytes<T>(
  name: string,
  wat: string,
  features: WasmFeatures = { simd: true },
  imports: object = {},
): Promise<{ exports: T; bytes: Uint8Array } | null> {
  if (!wasmEnabled) return null;
  try {
    const wabt = await wabtInit();
    const mod = wabt.parseWat(`${name}.wat`, wat, features);
    const { buffer } = mod.toBinary({});
    mod.destroy();
    const { instance } = await WebAssembly.instantiate(buffer, imports);
    return { exports: instance.exports as T, bytes: buffer };
  } catch {
    return null;
  }
}

/**
 * A memory of `initial` 64 KiB pages for a module to import, shared between threads (its maximum then
 * fixed up front, as wasm threads require) or not; null where the runtime has no shared memory.
 */
export function wasmMemory(initial: number, maximum: number, shared: boolean): WasmMemory | null {
  try {
    return new WebAssembly.Memory({ initial, maximum, shared });
  } catch {
    return null;
  }
}
