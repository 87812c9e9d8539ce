// Rotary position embeddings' tables, shared by both decoders: cos and sin of position * base^(-2i/hs) for
// i < hs/2, the half-split form (RoFormer's angles; the rotation itself is the engine's, E.qkvHeads and
// E.rope). Hugging Face's Llama and Qwen2 use the same angles (inv_freq = base^(-2i/hs)) and the same split.

import * as E from '../engine/index.js';
import type { Tensor } from '../engine/index.js';

/** cos and sin tables (positions, hs/2), computed in float64 and kept out of tidy scopes. */
export function ropeTables(
  positions: number,
  hs: number,
  base: number,
  device: E.Device | undefined,
  dtype: 'float32' | 'float64',
): [cos: Tensor, sin: Tensor] {
  const half = hs / 2;
  const cos = new Float64Array(positions * half);
  const sin = new Float64Array(positions * half);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * base ** (-i / half);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  const make = (a: Float64Array) =>
    E.keep(E.tensor(dtype === 'float64' ? a : Float32Array.from(a), [positions, half], { device }));
  return [make(cos), make(sin)];
}

/**
 * A forward's rotary angles, (B, T, hs/2) each, from its token positions: opts.pos, or 0..T-1 after the
 * cache's used slots. Checks ids (B, T) int32, the positions' shape, and that the sequence fits blockSize.
 */
export function rotaryAngles(
  who: string,
  ids: Tensor,
  opts: { pos?: Tensor; cache?: { length: number } },
  tables: { cos: Tensor; sin: Tensor; blockSize: number },
): { cos: Tensor; sin: Tensor } {
  if (ids.ndim !== 2 || ids.dtype !== 'int32')
    throw new Error(`${who}: ids must be (B, T) int32, got ${E.fmt(ids.shape)} ${ids.dtype}`);
  const [B, T] = ids.shape;
  const past = opts.cache?.length ?? 0;
  if (!opts.pos && past + T > tables.blockSize)
    throw new Error(`${who}: ${past} cached + ${T} new tokens exceed blockSize ${tables.blockSize}`);
  const pos = opts.pos ?? E.arange(T, { device: ids.device }).add(past).reshape([1, T]).expand([B, T]);
  if (pos.shape[0] !== B || pos.shape[1] !== T)
    throw new Error(`${who}: pos ${E.fmt(pos.shape)} must match ids ${E.fmt(ids.shape)}`);
  return { cos: E.indexSelect(tables.cos, 0, pos), sin: E.indexSelect(tables.sin, 0, pos) };
}
