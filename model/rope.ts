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
