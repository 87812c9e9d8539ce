// Float32 storage for the CPU backend inside one shared WebAssembly memory, so that the WebAssembly kernels
// (elementwise.ts) read their operands where they lie instead of copying them in. A small allocator: free
// blocks are kept by offset, merged with free neighbours, and taken best fit; the memory never shrinks.
//
// Why shared: growing an unshared memory detaches its buffer, and every Float32Array over it would go empty;
// a shared memory grows in place, so a view handed out stays valid for good. Why a pool at all: a fresh
// typed array of 4 MB costs more in page faults (on first write) than the add that fills it.

import { arrayFor } from '../dtype.js';
import { loadWasm, type WasmMemory } from './wasm.js';

/** Up to 2 GiB (32768 pages of 64 KiB); past that, storage falls back to ordinary typed arrays. */
const MAX_PAGES = 32768;
const WAT = `(module (memory (export "mem") 16 ${MAX_PAGES} shared))`;

/** The first bytes hold a zero row offset (elementwise.ts's single-row calls); blocks start after them. */
export const ZERO_OFFSETS = 0;
const BASE = 64;
/** Block sizes are multiples of a cache line, so blocks never share one. */
const ALIGN = 64;
/** Smaller arrays stay ordinary typed arrays: pooling them saves nothing and costs bookkeeping per op. */
export const HEAP_MIN = 1024;

const exports_ = await loadWasm<{ mem: WasmMemory }>('heap', WAT, { simd: true, threads: true });

/** The shared memory, for kernels to import; null with WebAssembly off (IGPO_NO_WASM=1) or unavailable. */
export const heapMemory: WasmMemory | null = exports_?.mem ?? null;

let top = BASE;
/** Free blocks, sorted by offset, none adjacent to another (they are merged) or to `top` (it moves down). */
const freeOffsets: number[] = [];
const freeSizes: number[] = [];
/** Every view handed out and not yet freed, with its block's size in bytes. */
const blocks = new WeakMap<object, number>();
// A view dropped without free() (a tensor never disposed) returns its block once the collector takes it.
const reclaim = new FinalizationRegistry<[number, number]>(([offset, bytes]) => release(offset, bytes));

/** Index of the first free block at or after `offset`. */
function freeIndex(offset: number): number {
  let lo = 0;
  let hi = freeOffsets.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (freeOffsets[mid] < offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function release(offset: number, bytes: number): void {
  const i = freeIndex(offset);
  let start = offset;
  let end = offset + bytes;
  let from = i;
  let to = i;
  if (i > 0 && freeOffsets[i - 1] + freeSizes[i - 1] === start) start = freeOffsets[(from = i - 1)];
  if (i < freeOffsets.length && freeOffsets[i] === end) end += freeSizes[to++];
  if (end === top) {
    top = start; // the tail goes back to the unused end
    freeOffsets.splice(from, to - from);
    freeSizes.splice(from, to - from);
  } else {
    freeOffsets.splice(from, to - from, start);
    freeSizes.splice(from, to - from, end - start);
  }
}

/**
 * The block size for a request: four sizes per doubling, so a block serves every request up to a quarter
 * below it. Blocks of exact sizes would be kept for one shape each: batches padded to their longest row
 * give a new size at every length, and the memory grew to its 2 GiB cap within a minute of training.
 */
export function blockBytes(bytes: number): number {
  if (bytes <= 16 * ALIGN) return Math.ceil(bytes / ALIGN) * ALIGN;
  const quarter = 2 ** (Math.floor(Math.log2(bytes)) - 2);
  return Math.ceil(bytes / quarter) * quarter;
}

/** Bytes the pool has carved out of the memory so far (in use or free for reuse), for tests and reports. */
export function heapBytes(): number {
  return top - BASE;
}

/** Bytes in free blocks below the top, for tests. */
export function heapFreeBytes(): number {
  return freeSizes.reduce((t, b) => t + b, 0);
}

/** Byte offset of a block of `bytes` (a blockBytes size), or -1 when the memory cannot grow that far. */
function take(bytes: number): number {
  let best = -1;
  for (let i = 0; i < freeSizes.length; i++) {
    if (freeSizes[i] >= bytes && (best < 0 || freeSizes[i] < freeSizes[best])) best = i;
    if (best >= 0 && freeSizes[best] === bytes) break;
  }
  if (best >= 0) {
    const at = freeOffsets[best];
    if (freeSizes[best] === bytes) {
      freeOffsets.splice(best, 1);
      freeSizes.splice(best, 1);
    } else {
      freeOffsets[best] += bytes;
      freeSizes[best] -= bytes;
    }
    return at;
  }
  const mem = heapMemory!;
  const need = top + bytes - mem.buffer.byteLength;
  if (need > 0) {
    try {
      mem.grow(Math.ceil(need / 65536));
    } catch {
      return -1;
    }
  }
  const at = top;
  top += bytes;
  return at;
}

/**
 * An uninitialised Float32Array of n elements in the shared memory (n >= min and WebAssembly on), else a
 * zeroed ordinary one. Only for outputs that are written in full.
 */
export function heapFloat32(n: number, min = HEAP_MIN): Float32Array {
  // arrayFor refuses a size the process cannot allocate in one line.
  if (!heapMemory || n < min) return arrayFor('float32', n) as Float32Array;
  const bytes = blockBytes(n * 4);
  const at = take(bytes);
  if (at < 0) return arrayFor('float32', n) as Float32Array;
  const view = new Float32Array(heapMemory.buffer, at, n);
  blocks.set(view, bytes);
  reclaim.register(view, [at, bytes], view);
  return view;
}

/** Whether `x` is a view heapFloat32 handed out (and not freed): kernels then read it in place. */
export function inHeap(x: object): boolean {
  return blocks.has(x);
}

/** Returns a view's block for reuse; anything else (an ordinary array, a view already freed) is left alone. */
export function freeHeap(x: object): void {
  const bytes = blocks.get(x);
  if (bytes === undefined) return;
  blocks.delete(x);
  reclaim.unregister(x);
  release((x as Float32Array).byteOffset, bytes);
}

/**
 * x in the shared memory for a kernel call: itself if it lives there, else a copy added to `scratch` (for
 * the caller to free); null when no block can be had.
 */
export function resident(x: Float32Array, scratch: Float32Array[]): Float32Array | null {
  if (inHeap(x)) return x;
  const copy = heapFloat32(x.length, 0);
  if (!inHeap(copy)) return null;
  copy.set(x);
  scratch.push(copy);
  return copy;
}
