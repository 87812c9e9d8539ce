// Small Hugging Face-layout models for tests (and for scripts/hf-golden.ts, which writes their PyTorch
// logits): a Llama with grouped-query attention and a tied head, a Qwen2 with q/k/v biases and a separate
// head, their weights from a fixed seed, and a writer of a model directory at float64 (the oracle's input).

import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as E from '../../engine/index.js';
import { hfConfigJson, parseHFConfig, type HFConfig } from '../../model/hf/config.js';
import { HFDecoder, type HFDecoderOptions } from '../../model/hf/decoder.js';
import { saveSafetensors, type SafeTensor } from '../../model/safetensors.js';

export const TINY_LLAMA: HFConfig = parseHFConfig({
  model_type: 'llama',
  vocab_size: 37,
  hidden_size: 32,
  intermediate_size: 48,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  rope_theta: 5000,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 64,
  tie_word_embeddings: true,
  eos_token_id: 2,
});

export const TINY_QWEN2: HFConfig = parseHFConfig({
  model_type: 'qwen2',
  vocab_size: 41,
  hidden_size: 24,
  intermediate_size: 40,
  num_hidden_layers: 2,
  num_attention_heads: 6,
  num_key_value_heads: 2,
  rope_theta: 1_000_000,
  rms_norm_eps: 1e-6,
  max_position_embeddings: 64,
  tie_word_embeddings: false,
  eos_token_id: 3,
});

export const TINY_MODELS = { llama: TINY_LLAMA, qwen2: TINY_QWEN2 } as const;

/** The fixed ids both models are scored on. */
export const GOLDEN_IDS = [1, 5, 9, 2, 30, 17, 4, 22, 8, 13, 0, 36];

/** The model with its seeded weights: std 0.3 (so that the logits are far from uniform), norms at 1. */
export function tinyModel(cfg: HFConfig, opts: HFDecoderOptions = {}): HFDecoder {
  const m = HFDecoder.random(cfg, { ...opts, generator: new E.Generator(20261203), std: 0.3 });
  return m;
}

/** Writes DIR/config.json and DIR/model.safetensors with the model's parameters at their own dtype. */
export async function writeModelDir(dir: string, m: HFDecoder): Promise<void> {
  const tensors: Record<string, SafeTensor> = {};
  for (const [name, t] of m.params) {
    const data = await t.data();
    tensors[name] = { dtype: t.dtype as 'float32' | 'float64', shape: [...t.shape], data: data as Float64Array };
  }
  await saveSafetensors(join(dir, 'model.safetensors'), tensors);
  await writeFile(join(dir, 'config.json'), JSON.stringify(hfConfigJson(m.cfg), null, 2));
}
