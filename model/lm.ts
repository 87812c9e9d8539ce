// What the RL loop needs of a language model and of its tokenizer, whichever architecture backs them: the
// project's own decoder (gpt.ts, char-level tokenizer) or a Hugging Face checkpoint (Llama, Qwen2).

import * as E from '../engine/index.js';
import type { Tensor } from '../engine/index.js';
import type { KVCache } from './kvcache.js';

/** A causal decoder: ids in, next-token logits out, with a KV cache for decoding. */
export interface CausalLM {
  /** Longest sequence (cached and new tokens together) the model reads. */
  readonly blockSize: number;
  readonly vocabSize: number;
  /** Width of the final hidden states (a value head reads them). */
  readonly hiddenSize: number;
  /** Learned embeddings of this many previous tokens (gpt.ts's prevTokens); 0 for models without them. */
  readonly prevTokens: number;
  /** Every parameter by its checkpoint name. */
  readonly params: Map<string, Tensor>;
  readonly device: E.Device;
  /** The parameters' dtype (float64 on the CPU for exact checks, float32 otherwise). */
  readonly dtype: 'float32' | 'float64';
  parameters(): Tensor[];
  /** Parameters, counting a tied embedding once. */
  numParams(): number;
  /** ids (B, T) int32 -> logits (B, T, V), and the extended cache and final hidden states when asked. */
  forward(ids: Tensor, opts?: ForwardOptions): { logits: Tensor; cache?: KVCache; hidden?: Tensor };
  /** The same weights in storage of its own; `frozen` turns its gradients off (a reference model). */
  clone(opts?: { frozen?: boolean }): CausalLM;
  dispose(): void;
}

/** Text to ids and back: the char-level tokenizer (tokenizer.ts) or a tokenizer.json. */
export interface TextTokenizer {
  readonly vocabSize: number;
  /** The id a batch pads with (never attended to). */
  readonly pad: number;
  /** The id that ends a sequence. */
  readonly eos: number;
  encode(text: string): number[];
  decode(ids: Iterable<number>): string;
}

export interface ForwardOptions {
  /** Position of each token (B, T) int32; defaults to 0..T-1 after the cache's length. */
  pos?: Tensor;
  /**
   * Attend over these earlier tokens too (decoding): the new tokens' keys and values are written into it in
   * place at slots length.. (it grows when full) and its length advances; the result's cache is this one.
   * Inference only: refused while gradients are recorded for the model.
   */
  cache?: KVCache;
  /** (B, T): 0 for real tokens, -Infinity for padding slots; needed only when a cache is built. */
  keyBias?: Tensor;
  /** Build and return a cache holding this forward's tokens (sampling); off for training. */
  returnCache?: boolean;
  /** Also return the final hidden states (B, T, C) after the last norm (a value head reads them). */
  returnHidden?: boolean;
  /**
   * For a model with prevTokens = n: the n tokens before the first new one (B, n) int32, oldest first,
   * 0 where there are none; defaults to zeros, which is right only without a cache (a decoder passes its own).
   */
  history?: Tensor;
}

/**
 * log p(ids[i] | ids[0..i-1]) for i = 1..n-1 under the model (one forward of the whole sequence, no
 * gradient), in the model's dtype. Ids are checked against the vocabulary and the block size.
 */
export async function sequenceLogProbs(model: CausalLM, ids: readonly number[]): Promise<number[]> {
  if (ids.length < 2) throw new Error(`logprobs: need at least 2 ids, got ${ids.length}`);
  if (ids.length > model.blockSize)
    throw new Error(`logprobs: ${ids.length} ids exceed the model's block size ${model.blockSize}`);
  const bad = ids.findIndex((i) => !Number.isInteger(i) || i < 0 || i >= model.vocabSize);
  if (bad >= 0) throw new Error(`logprobs: id ${ids[bad]} at position ${bad} is not in [0, ${model.vocabSize})`);
  const n = ids.length;
  const lp = E.tidy(() =>
    E.noGrad(() => {
      const x = E.tensor(Int32Array.from(ids), [1, n], { device: model.device });
      const { logits } = model.forward(x); // (1, n, V)
      const targets = E.tensor(Int32Array.from(ids.slice(1)), [n - 1], { device: model.device });
      return E.targetLogProb(logits.reshape([n, model.vocabSize]).narrow(0, 0, n - 1), targets);
    }),
  );
  const out = Array.from(await lp.data());
  lp.dispose();
  return out;
}
