// The KV cache both decoders share (gpt.ts, hf/decoder.ts): buffers written in place that grow by doubling,
// opened by a forward that builds or extends one, and attention that reads the cache's used slots where a
// cache was passed in. Not sampling (sample.ts), which decides what goes into a cache and when it rolls back.

import * as E from '../engine/index.js';
import type { Tensor } from '../engine/index.js';

/**
 * Keys and values of every layer for the tokens seen so far, plus which slots are padding. Written in place:
 * buffers of some capacity whose first `length` slots are used, copied into buffers twice as large when
 * full, so a decoded token costs a write of its own keys rather than a copy of all of them. Its tensors are
 * exempt from tidy scopes (keep); disposeCache frees them.
 */
export interface KVCache {
  /** Per layer: (B, nh, capacity, hs). */
  k: Tensor[];
  v: Tensor[];
  /** (B, capacity): 0 for a real token, -Infinity for a padding slot that no query may see. */
  keyBias: Tensor;
  /** Slots used (real tokens and padding); a decoder may lower it to roll back, the slots past it are unread. */
  length: number;
}

/** The shape of a model's cache: layers, heads per layer and head size, on a device and dtype. */
export interface CacheShape {
  layers: number;
  heads: number;
  headSize: number;
  device: E.Device;
  dtype: E.DType;
}

/** A cache for B rows with no slot used, with room for `need`. */
export function emptyCache(s: CacheShape, B: number, need: number): KVCache {
  const cap = capacityFor(need);
  const o = { device: s.device, dtype: s.dtype };
  const kv = () => E.keep(E.zeros([B, s.heads, cap, s.headSize], o));
  return {
    k: Array.from({ length: s.layers }, kv),
    v: Array.from({ length: s.layers }, kv),
    keyBias: E.keep(E.zeros([B, cap], o)),
    length: 0,
  };
}

/** The capacity for `need` slots: `cap` doubled until it holds them, from 16 for a new cache. */
function capacityFor(need: number, cap = 16): number {
  while (cap < need) cap *= 2;
  return cap;
}

/**
 * Makes room for `need` slots: when the capacity is short, every buffer is copied into one of twice the
 * size (or more, for a long chunk), so a write costs O(1) copied slots amortised and at most half is unused.
 */
function reserveSlots(cache: KVCache, need: number): void {
  const cap = cache.keyBias.shape[1];
  if (need <= cap) return;
  const extra = capacityFor(need, cap) - cap;
  const grow = (t: Tensor, dim: number) => {
    const after = t.shape.map((_, i) => (i === dim ? extra : 0));
    const g = E.keep(E.noGrad(() => E.pad(t, new Array<number>(t.ndim).fill(0), after)));
    t.dispose();
    return g;
  };
  cache.k = cache.k.map((t) => grow(t, 2));
  cache.v = cache.v.map((t) => grow(t, 2));
  cache.keyBias = grow(cache.keyBias, 1);
}

/** Frees a cache's tensors. */
export function disposeCache(cache: KVCache | undefined): void {
  if (cache) E.dispose([cache.k, cache.v, cache.keyBias]);
}

/**
 * Where a forward's keys and values go and what its attention reads: `write` is the cache the new keys are
 * written into (a passed-in one, or a new one when asked to return a cache), `read` whether attention reads
 * that cache (only a passed-in one: a new cache holds exactly this forward's keys), `past` the slots used
 * before this forward, `keyBias` the padding bias of this forward's own tokens.
 */
export interface CacheUse {
  write?: KVCache;
  read: boolean;
  past: number;
  keyBias?: Tensor;
}

/**
 * Opens a forward's cache: refuses a cache under recorded gradients (keys are written in place, off the
 * tape), makes a new cache when asked, makes room for T more slots and writes their padding bias.
 */
export function openCache(
  who: string,
  ids: Tensor,
  opts: { cache?: KVCache; returnCache?: boolean; keyBias?: Tensor },
  trainable: boolean,
  shape: CacheShape,
): CacheUse {
  const [B, T] = ids.shape;
  const past = opts.cache?.length ?? 0;
  if (opts.cache && E.isGradEnabled() && trainable)
    throw new Error(
      `${who}: decoding on a KV cache is inference only (keys are written into it in place, off the tape); ` +
        'run it under E.noGrad',
    );
  const write = opts.cache ?? (opts.returnCache ? emptyCache(shape, B, T) : undefined);
  if (write) {
    reserveSlots(write, past + T);
    const newBias = opts.keyBias ?? E.zeros([B, T], { device: ids.device, dtype: shape.dtype });
    E.noGrad(() => E.writeInto(write.keyBias, newBias, 1, past));
  }
  return {
    ...(write && { write }),
    read: opts.cache !== undefined,
    past,
    ...(opts.keyBias && { keyBias: opts.keyBias }),
  };
}

/**
 * Causal attention of layer l's q over its keys and values, (B, nh, T, hs) each: this forward's alone, or,
 * on a passed-in cache, the cache's first past + T slots where they lie (k and v written there first).
 */
export function cachedAttention(q: Tensor, k: Tensor, v: Tensor, l: number, use: CacheUse): Tensor {
  const c = use.write;
  const T = q.shape[2];
  if (c)
    E.noGrad(() => {
      E.writeInto(c.k[l], k, 2, use.past); // slots [past, past + T) of (B, nh, capacity, hs)
      E.writeInto(c.v[l], v, 2, use.past);
    });
  return c && use.read
    ? E.scaledDotProductAttention(q, c.k[l], c.v[l], { keyBias: c.keyBias, kvLen: use.past + T })
    : E.scaledDotProductAttention(q, k, v, { keyBias: use.keyBias });
}
