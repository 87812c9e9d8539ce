// The decoder of Hugging Face's Llama and Qwen2 checkpoints, in named blocks as gpt.ts: RMSNorm before
// attention and MLP, rotary embeddings with the config's rope_theta (the half-split rotation HF's
// rotate_half does), grouped-query attention (num_key_value_heads), a SwiGLU MLP, biases on q, k and v where
// the config has them (Qwen2), and a tied or separate lm_head. Parameters keep HF's names and layout
// (linear weights [out, in]), so a checkpoint loads and saves without renaming or transposing. Not the
// loader of files (weights.ts, config.ts) and not the tokenizer (tokenizer.ts).

import * as E from '../../engine/index.js';
import type { Tensor } from '../../engine/index.js';
import { cachedAttention, openCache, type CacheShape, type CacheUse, type KVCache } from '../kvcache.js';
import type { CausalLM, ForwardOptions } from '../lm.js';
import { rotaryAngles, ropeTables } from '../rope.js';
import { hfParameterLayout, readHFConfig, type HFConfig } from './config.js';
import { eachHFWeight, writeHFWeights } from './weights.js';

/** Positions the rotary tables cover when the caller names no blockSize (configs often allow 32k or more). */
export const DEFAULT_HF_BLOCK_SIZE = 4096;

export interface HFDecoderOptions {
  device?: E.Device;
  dtype?: 'float32' | 'float64';
  /** Longest sequence this instance reads: at most max_position_embeddings; DEFAULT_HF_BLOCK_SIZE by default. */
  blockSize?: number;
}

export class HFDecoder implements CausalLM {
  readonly cfg: HFConfig;
  /** Every parameter by its HF name (no lm_head.weight when the head is tied to the embedding). */
  readonly params: Map<string, Tensor>;
  readonly blockSize: number;
  readonly prevTokens = 0;
  private readonly ropeCos: Tensor; // (blockSize, headDim/2)
  private readonly ropeSin: Tensor;

  /** A decoder over given parameters (HF names and shapes, checked against the config's layout). */
  constructor(cfg: HFConfig, params: Map<string, Tensor>, opts: { blockSize?: number } = {}) {
    this.cfg = cfg;
    const layout = hfParameterLayout(cfg);
    for (const [name, shape] of layout) {
      const t = params.get(name);
      if (!t) throw new Error(`HFDecoder: missing parameter '${name}'`);
      if (!E.sameShape(t.shape, shape))
        throw new Error(`HFDecoder: parameter '${name}' is ${E.fmt(t.shape)}, the config needs ${E.fmt(shape)}`);
    }
    if (params.size !== layout.length)
      throw new Error(`HFDecoder: ${params.size} parameters given, the config has ${layout.length}`);
    this.params = params;
    this.blockSize = Math.min(cfg.maxPositionEmbeddings, opts.blockSize ?? DEFAULT_HF_BLOCK_SIZE);
    const embed = this.p('model.embed_tokens.weight');
    const dtype = embed.dtype as 'float32' | 'float64';
    [this.ropeCos, this.ropeSin] = ropeTables(this.blockSize, cfg.headDim, cfg.ropeTheta, embed.device, dtype);
  }

  /** Random weights (N(0, std), norms at 1) in the config's layout: for tests and benchmarks of shapes. */
  static random(cfg: HFConfig, opts: HFDecoderOptions & { generator?: E.Generator; std?: number } = {}): HFDecoder {
    const g = opts.generator ?? new E.Generator(0);
    const dtype = opts.dtype ?? 'float32';
    const params = new Map<string, Tensor>();
    for (const [name, shape] of hfParameterLayout(cfg)) {
      const o = { device: opts.device, dtype, requiresGrad: true } as const;
      params.set(
        name,
        name.endsWith('norm.weight') ? E.ones(shape, o) : E.randn(shape, { ...o, generator: g, std: opts.std ?? 0.02 }),
      );
    }
    return new HFDecoder(cfg, params, opts);
  }

  /** Reads DIR/config.json and its weights (weights.ts: single file or sharded, F32/F16/BF16). */
  static async load(dir: string, opts: HFDecoderOptions = {}): Promise<HFDecoder> {
    const cfg = await readHFConfig(dir);
    const dtype = opts.dtype ?? 'float32';
    const params = new Map<string, Tensor>();
    try {
      // Each tensor into the engine as it is read: one tensor's host copy at a time beside the model.
      await eachHFWeight(
        dir,
        cfg,
        (name, w) =>
          void params.set(name, E.tensor(w.data, w.shape, { device: opts.device, dtype, requiresGrad: true })),
        { dtype },
      );
      return new HFDecoder(cfg, params, opts);
    } catch (e) {
      E.dispose([...params.values()]);
      throw e;
    }
  }

  /** Writes DIR/config.json and DIR/model.safetensors in HF's layout (F32), which transformers loads. */
  async save(dir: string): Promise<void> {
    const tensors = new Map<string, { shape: number[]; data: Float32Array | Float64Array }>();
    for (const [name, t] of this.params)
      tensors.set(name, { shape: [...t.shape], data: (await t.data()) as Float32Array | Float64Array });
    await writeHFWeights(dir, this.cfg, tensors);
  }

  p(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`HFDecoder: no parameter named '${name}'`);
    return t;
  }

  parameters(): Tensor[] {
    return [...this.params.values()];
  }

  /** Parameters, counting a tied embedding once. */
  numParams(): number {
    return this.parameters().reduce((n, t) => n + t.size, 0);
  }

  get device(): E.Device {
    return this.p('model.embed_tokens.weight').device;
  }

  get dtype(): 'float32' | 'float64' {
    return this.p('model.embed_tokens.weight').dtype as 'float32' | 'float64';
  }

  get vocabSize(): number {
    return this.cfg.vocabSize;
  }

  get hiddenSize(): number {
    return this.cfg.hiddenSize;
  }

  /** The same weights in storage of its own; `frozen` turns its gradients off (a reference model). */
  clone(opts: { frozen?: boolean } = {}): HFDecoder {
    const params = new Map<string, Tensor>();
    for (const [name, t] of this.params) {
      const c = E.keep(E.tidy(() => E.noGrad(() => t.clone())));
      c.requiresGrad = !opts.frozen;
      params.set(name, c);
    }
    return new HFDecoder(this.cfg, params, { blockSize: this.blockSize });
  }

  /** Frees the parameters and the rotary tables. */
  dispose(): void {
    E.dispose([...this.params.values(), this.ropeCos, this.ropeSin]);
  }

  /** ids (B, T) int32 -> logits (B, T, V), and the extended cache and final hidden states when asked. */
  forward(ids: Tensor, opts: ForwardOptions = {}): { logits: Tensor; cache?: KVCache; hidden?: Tensor } {
    const tables = { cos: this.ropeCos, sin: this.ropeSin, blockSize: this.blockSize };
    const rot = rotaryAngles('HFDecoder.forward', ids, opts, tables); // (B, T, headDim/2) each
    const T = ids.shape[1];
    const embed = this.p('model.embed_tokens.weight');
    const use = openCache('HFDecoder.forward', ids, opts, embed.requiresGrad, this.cacheShape());
    let x = E.embedding(ids, embed); // (B, T, C)
    let h = E.rmsNorm(x, this.p('model.layers.0.input_layernorm.weight'), this.cfg.rmsNormEps);
    for (let l = 0; l < this.cfg.numLayers; l++) [x, h] = this.block(l, x, h, rot, use);
    const head = this.cfg.tieWordEmbeddings ? embed : this.p('lm_head.weight'); // (V, C)
    const logits = E.matmulT(h, head, false, true); // (B, T, V)
    const hidden = opts.returnHidden ? { hidden: h } : {}; // (B, T, C), after the final norm
    if (!use.write) return { logits, ...hidden };
    use.write.length = use.past + T;
    return { logits, cache: use.write, ...hidden };
  }

  /**
   * Decoder layer l: x + self_attn(h), then + mlp(post_attention_layernorm(.)). x is the residual stream
   * (B, T, C) and h its norm; returns both for the next layer (h normed with the next input_layernorm, or
   * with model.norm after the last layer).
   */
  private block(l: number, x: Tensor, h: Tensor, rot: Rotation, use: CacheUse): [x: Tensor, h: Tensor] {
    const eps = this.cfg.rmsNormEps;
    const layer = `model.layers.${l}`;
    const [x1, m] = E.addRmsNorm(
      x,
      this.attention(l, h, rot, use),
      this.p(`${layer}.post_attention_layernorm.weight`),
      eps,
    );
    const next =
      l + 1 < this.cfg.numLayers ? this.p(`model.layers.${l + 1}.input_layernorm.weight`) : this.p('model.norm.weight');
    return E.addRmsNorm(x1, this.mlp(l, m), next, eps);
  }

  /**
   * Grouped-query self-attention of layer l on h (B, T, C): q from numHeads heads, k and v from numKVHeads,
   * each key head shared by numHeads / numKVHeads query heads (repeated before attention, and so stored in
   * the cache: the cache holds numHeads heads), RoPE on q and k, then o_proj.
   */
  private attention(l: number, h: Tensor, rot: Rotation, use: CacheUse): Tensor {
    const [B, T] = h.shape;
    const { numHeads: nh, numKVHeads: nkv, headDim: D, qkvBias } = this.cfg;
    const w = (name: string) => this.p(`model.layers.${l}.self_attn.${name}`);
    const heads = (proj: string, n: number) => {
      let y = E.matmulT(h, w(`${proj}.weight`), false, true); // (B, T, n * D)
      if (qkvBias) y = y.add(w(`${proj}.bias`));
      return y.reshape([B, T, n, D]).transpose(1, 2); // (B, n, T, D)
    };
    const q = E.rope(heads('q_proj', nh), rot.cos, rot.sin);
    const k = repeatHeads(E.rope(heads('k_proj', nkv), rot.cos, rot.sin), nh / nkv);
    const v = repeatHeads(heads('v_proj', nkv), nh / nkv);
    const y = cachedAttention(q, k, v, l, use); // (B, nh, T, D)
    return E.matmulT(y.transpose(1, 2).reshape([B, T, nh * D]), w('o_proj.weight'), false, true); // (B, T, C)
  }

  /** The SwiGLU MLP of layer l: down_proj(silu(gate_proj(m)) * up_proj(m)), C -> intermediate -> C. */
  private mlp(l: number, m: Tensor): Tensor {
    const w = (name: string) => this.p(`model.layers.${l}.mlp.${name}.weight`);
    const gate = E.matmulT(m, w('gate_proj'), false, true); // (B, T, I)
    const up = E.matmulT(m, w('up_proj'), false, true);
    return E.matmulT(gate.silu().mul(up), w('down_proj'), false, true); // (B, T, C)
  }

  private cacheShape(): CacheShape {
    const { numLayers, numHeads, headDim } = this.cfg;
    return { layers: numLayers, heads: numHeads, headSize: headDim, device: this.device, dtype: this.ropeCos.dtype };
  }
}

/** Each token's rotary angles, (B, T, headDim/2) each. */
interface Rotation {
  cos: Tensor;
  sin: Tensor;
}

/** (B, n, T, D) -> (B, n * g, T, D), each head repeated g times in a row (HF's repeat_kv). */
function repeatHeads(x: Tensor, g: number): Tensor {
  if (g === 1) return x;
  const [B, n, T, D] = x.shape;
  return x
    .reshape([B, n, 1, T, D])
    .expand([B, n, g, T, D])
    .reshape([B, n * g, T, D]);
}
