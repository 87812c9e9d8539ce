// A Hugging Face model directory's config.json, for the two families the decoder (decoder.ts) implements:
// Llama (model_type "llama": SmolLM, TinyLlama, Llama 2/3) and Qwen2 ("qwen2": Qwen2, Qwen2.5). Fields the
// decoder does not implement (rope_scaling, sliding windows, other activations) are refused by name.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

export type HFModelType = 'llama' | 'qwen2';

/** The config in the decoder's terms (camelCase, defaults filled in). */
export interface HFConfig {
  modelType: HFModelType;
  vocabSize: number;
  hiddenSize: number;
  intermediateSize: number;
  numLayers: number;
  numHeads: number;
  /** Key/value heads (grouped-query attention); numHeads when absent. */
  numKVHeads: number;
  /** hidden_size / num_attention_heads unless head_dim says otherwise. */
  headDim: number;
  ropeTheta: number;
  rmsNormEps: number;
  maxPositionEmbeddings: number;
  tieWordEmbeddings: boolean;
  /** Biases on q, k and v (Qwen2 always; Llama when attention_bias is true). */
  qkvBias: boolean;
  bosTokenId?: number;
  /** The first of eos_token_id when it is a list. */
  eosTokenId?: number;
}

const count = (max: number) => z.number().int().min(1).max(max);
const positive = z.number().positive().refine(Number.isFinite, 'must be finite');
const tokenId = z.number().int().min(0);

/** config.json as HF writes it; unknown keys pass (HF configs carry many), unsupported values are refused. */
const schema = z
  .looseObject({
    model_type: z.enum(['llama', 'qwen2'], { message: 'model_type must be "llama" or "qwen2"' }),
    vocab_size: count(1_000_000),
    hidden_size: count(65_536),
    intermediate_size: count(262_144),
    num_hidden_layers: count(512),
    num_attention_heads: count(1024),
    num_key_value_heads: count(1024).optional(),
    head_dim: count(1024).optional(),
    rope_theta: positive.optional(),
    rms_norm_eps: positive.optional(),
    max_position_embeddings: count(1_048_576).optional(),
    tie_word_embeddings: z.boolean().optional(),
    attention_bias: z.boolean().optional(),
    mlp_bias: z.literal(false, { message: 'mlp_bias is not supported' }).optional(),
    hidden_act: z.literal('silu', { message: 'only hidden_act "silu" (SwiGLU) is supported' }).optional(),
    rope_scaling: z.null({ message: 'rope_scaling is not supported' }).optional(),
    use_sliding_window: z.literal(false, { message: 'use_sliding_window is not supported' }).optional(),
    bos_token_id: tokenId.nullable().optional(),
    eos_token_id: z
      .union([tokenId, z.array(tokenId).min(1)])
      .nullable()
      .optional(),
  })
  .refine((c) => c.num_attention_heads % (c.num_key_value_heads ?? c.num_attention_heads) === 0, {
    message: 'num_attention_heads must be a multiple of num_key_value_heads',
    path: ['num_key_value_heads'],
  })
  .refine((c) => c.head_dim !== undefined || c.hidden_size % c.num_attention_heads === 0, {
    message: 'hidden_size must be divisible by num_attention_heads',
    path: ['hidden_size'],
  })
  .refine((c) => (c.head_dim ?? c.hidden_size / c.num_attention_heads) % 2 === 0, {
    message: 'the head size must be even for rotary embeddings',
    path: ['head_dim'],
  });

/** Checks a parsed config.json; the error names the file and the field. */
export function parseHFConfig(json: unknown, file = 'config.json'): HFConfig {
  const r = schema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new Error(`${file}: ${issue.path.join('.') || '(top level)'}: ${issue.message}`);
  }
  const c = r.data;
  const eos = Array.isArray(c.eos_token_id) ? c.eos_token_id[0] : (c.eos_token_id ?? undefined);
  return {
    modelType: c.model_type,
    vocabSize: c.vocab_size,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numLayers: c.num_hidden_layers,
    numHeads: c.num_attention_heads,
    numKVHeads: c.num_key_value_heads ?? c.num_attention_heads,
    headDim: c.head_dim ?? c.hidden_size / c.num_attention_heads,
    ropeTheta: c.rope_theta ?? 10_000,
    rmsNormEps: c.rms_norm_eps ?? 1e-6,
    maxPositionEmbeddings: c.max_position_embeddings ?? 2048,
    tieWordEmbeddings: c.tie_word_embeddings ?? false,
    qkvBias: c.model_type === 'qwen2' || (c.attention_bias ?? false),
    ...(c.bos_token_id != null && { bosTokenId: c.bos_token_id }),
    ...(eos !== undefined && { eosTokenId: eos }),
  };
}

/** Reads and checks DIR/config.json. */
export async function readHFConfig(dir: string): Promise<HFConfig> {
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not JSON (${(e as Error).message})`, { cause: e });
  }
  return parseHFConfig(json, file);
}

/** The config back as config.json holds it (what a saved checkpoint writes). */
export function hfConfigJson(c: HFConfig): Record<string, unknown> {
  return {
    architectures: [c.modelType === 'llama' ? 'LlamaForCausalLM' : 'Qwen2ForCausalLM'],
    model_type: c.modelType,
    vocab_size: c.vocabSize,
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numHeads,
    num_key_value_heads: c.numKVHeads,
    head_dim: c.headDim,
    rope_theta: c.ropeTheta,
    rms_norm_eps: c.rmsNormEps,
    max_position_embeddings: c.maxPositionEmbeddings,
    tie_word_embeddings: c.tieWordEmbeddings,
    hidden_act: 'silu',
    ...(c.modelType === 'llama' && { attention_bias: c.qkvBias }),
    ...(c.bosTokenId !== undefined && { bos_token_id: c.bosTokenId }),
    ...(c.eosTokenId !== undefined && { eos_token_id: c.eosTokenId }),
    torch_dtype: 'float32',
  };
}

/**
 * Every tensor a checkpoint of this config holds, by its HF name, with its shape ([out, in] for linear
 * weights, as torch stores them): what the loader checks and what a saved checkpoint writes.
 */
export function hfParameterLayout(c: HFConfig): [name: string, shape: number[]][] {
  const { hiddenSize: C, intermediateSize: I, vocabSize: V, headDim: D } = c;
  const q = c.numHeads * D;
  const kv = c.numKVHeads * D;
  const out: [string, number[]][] = [['model.embed_tokens.weight', [V, C]]];
  for (let l = 0; l < c.numLayers; l++) {
    const p = `model.layers.${l}`;
    out.push([`${p}.input_layernorm.weight`, [C]]);
    out.push([`${p}.self_attn.q_proj.weight`, [q, C]]);
    if (c.qkvBias) out.push([`${p}.self_attn.q_proj.bias`, [q]]);
    out.push([`${p}.self_attn.k_proj.weight`, [kv, C]]);
    if (c.qkvBias) out.push([`${p}.self_attn.k_proj.bias`, [kv]]);
    out.push([`${p}.self_attn.v_proj.weight`, [kv, C]]);
    if (c.qkvBias) out.push([`${p}.self_attn.v_proj.bias`, [kv]]);
    out.push([`${p}.self_attn.o_proj.weight`, [C, q]]);
    out.push([`${p}.post_attention_layernorm.weight`, [C]]);
    out.push([`${p}.mlp.gate_proj.weight`, [I, C]]);
    out.push([`${p}.mlp.up_proj.weight`, [I, C]]);
    out.push([`${p}.mlp.down_proj.weight`, [C, I]]);
  }
  out.push(['model.norm.weight', [C]]);
  if (!c.tieWordEmbeddings) out.push(['lm_head.weight', [V, C]]);
  return out;
}
