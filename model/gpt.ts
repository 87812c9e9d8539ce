// The decoder: a nanoGPT-sized transformer on the engine, in one file. Pre-norm RMSNorm blocks, rotary
// position embeddings, causal attention through the engine's fused op, a GELU MLP and a tied output head.
// It runs on any backend; sampling, checkpoints and training live in their own files beside it.

import { z } from 'zod';
import * as E from '../engine/index.js';
import type { Tensor } from '../engine/index.js';
import { cachedAttention, openCache, type CacheShape, type CacheUse, type KVCache } from './kvcache.js';
import type { CausalLM, ForwardOptions } from './lm.js';
import { rotaryAngles, ropeTables } from './rope.js';

export interface GPTConfig {
  /** Tokens in the vocabulary (the tokenizer's vocabSize). */
  vocabSize: number;
  /** Longest sequence the position tables cover. */
  blockSize: number;
  nLayer: number;
  nHead: number;
  /** Width of the residual stream; must divide by nHead, and nEmbd / nHead must be even for RoPE. */
  nEmbd: number;
  /** RoPE base (10000 as in RoFormer and LLaMA). */
  ropeBase: number;
  /** RMSNorm epsilon. */
  normEps: number;
  /**
   * Standard deviation of the initial weights; 0.02 (GPT-2's) when absent. GPT-2 tuned it for 768-wide
   * models; a 64-wide model learns attention over long contexts much sooner from about 1/sqrt(nEmbd).
   */
  initStd?: number;
  /**
   * Adds learned embeddings of the n previous tokens (wtePrev.1 .. wtePrev.n, each [V, C]; token 0 before
   * the first) to each position's input. With them one attention layer can copy a span from the context
   * (match the current token and its predecessors against the previous-token parts of earlier positions,
   * an induction head), which a small model otherwise needs two layers and a slow phase change to learn;
   * Olsson et al. (2022, "In-context learning and induction heads") sped that up the same way with
   * "smeared keys". 0 (none) when absent.
   */
  prevTokens?: number;
}

/** The rotary tables' size bound (blockSize x head size): 2^24, 4096 positions of head size 4096. */
const MAX_ROPE_ENTRIES = 2 ** 24;
const count = (max: number, min = 1) => z.number().int().min(min).max(max);
const finitePositive = z.number().positive().refine(Number.isFinite, 'must be finite');

/**
 * What a config may hold: integers where the model counts, positive finite numbers where it scales, and
 * maxima far above anything the project trains but low enough that a corrupted checkpoint is refused at
 * once rather than allocating gigabytes (blockSize sizes the rotary tables, nEmbd every matrix).
 */
export const gptConfigSchema = z
  .strictObject({
    vocabSize: count(1_000_000),
    blockSize: count(65_536),
    nLayer: count(256),
    nHead: count(256),
    nEmbd: count(16_384),
    ropeBase: finitePositive,
    normEps: finitePositive.refine((x) => x < 1, 'must be below 1'),
    initStd: finitePositive.optional(),
    prevTokens: count(16, 0).optional(),
  })
  .refine((c) => c.nEmbd % c.nHead === 0, { message: 'nEmbd must be divisible by nHead', path: ['nEmbd'] })
  .refine((c) => c.nEmbd % c.nHead !== 0 || (c.nEmbd / c.nHead) % 2 === 0, {
    message: 'the head size nEmbd / nHead must be even for rotary embeddings',
    path: ['nHead'],
  })
  .refine((c) => c.blockSize * (c.nEmbd / c.nHead) <= MAX_ROPE_ENTRIES, {
    message: `blockSize x head size must be at most ${MAX_ROPE_ENTRIES} (the rotary tables hold that many entries)`,
    path: ['blockSize'],
  });

/** Checks a config (gptConfigSchema); the error names the field. Returns it typed. */
export function checkConfig(cfg: unknown): GPTConfig {
  const r = gptConfigSchema.safeParse(cfg);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  throw new Error(`GPTConfig: ${issue.path.join('.') || '(top level)'}: ${issue.message}`);
}

/** How a parameter starts: N(0, initStd), N(0, initStd / sqrt(2 nLayer)) (residual projections), or ones. */
type Init = 'normal' | 'residual' | 'ones';

/**
 * Every parameter of a config, in order, with its shape and initialisation: what the constructor builds
 * and what a checkpoint must hold, known without allocating anything.
 */
export function parameterLayout(cfg: GPTConfig): [name: string, shape: number[], init: Init][] {
  const { nEmbd: C, nLayer: L, vocabSize: V } = cfg;
  const out: [string, number[], Init][] = [['wte', [V, C], 'normal']];
  for (let j = 1; j <= (cfg.prevTokens ?? 0); j++) out.push([`wtePrev.${j}`, [V, C], 'normal']);
  for (let l = 0; l < L; l++) {
    out.push(
      [`h.${l}.ln1`, [C], 'ones'],
      [`h.${l}.wq`, [C, C], 'normal'],
      [`h.${l}.wk`, [C, C], 'normal'],
      [`h.${l}.wv`, [C, C], 'normal'],
      [`h.${l}.wo`, [C, C], 'residual'],
      [`h.${l}.ln2`, [C], 'ones'],
      [`h.${l}.fc`, [C, 4 * C], 'normal'],
      [`h.${l}.proj`, [4 * C, C], 'residual'],
    );
  }
  out.push(['lnf', [C], 'ones']);
  return out;
}

export class GPT implements CausalLM {
  readonly cfg: GPTConfig;
  /** Every parameter by its checkpoint name. */
  readonly params: Map<string, Tensor>;
  private readonly ropeCos: Tensor; // (blockSize, hs/2)
  private readonly ropeSin: Tensor;

  constructor(
    cfg: GPTConfig,
    opts: { generator?: E.Generator; device?: E.Device; dtype?: 'float32' | 'float64' } = {},
  ) {
    checkConfig(cfg);
    this.cfg = cfg;
    const g = opts.generator ?? new E.Generator(0);
    const common = { device: opts.device, dtype: opts.dtype ?? 'float32', generator: g, requiresGrad: true } as const;
    // GPT-2 initialisation: N(0, initStd), residual projections scaled by 1/sqrt(2 nLayer), norms at 1.
    const std = cfg.initStd ?? 0.02;
    const residStd = std / Math.sqrt(2 * cfg.nLayer);
    this.params = new Map<string, Tensor>(
      parameterLayout(cfg).map(([name, shape, init]) => [
        name,
        init === 'ones'
          ? E.ones(shape, { device: opts.device, dtype: common.dtype, requiresGrad: true })
          : E.randn(shape, { ...common, std: init === 'residual' ? residStd : std }),
      ]),
    );
    [this.ropeCos, this.ropeSin] = ropeTables(
      cfg.blockSize,
      cfg.nEmbd / cfg.nHead,
      cfg.ropeBase,
      opts.device,
      common.dtype,
    );
  }

  p(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`GPT: no parameter named '${name}'`);
    return t;
  }

  parameters(): Tensor[] {
    return [...this.params.values()];
  }

  /** Parameters, counting the tied embedding once. */
  numParams(): number {
    return this.parameters().reduce((n, t) => n + t.size, 0);
  }

  get device(): E.Device {
    return this.p('wte').device;
  }

  get blockSize(): number {
    return this.cfg.blockSize;
  }

  get dtype(): 'float32' | 'float64' {
    return this.p('wte').dtype as 'float32' | 'float64';
  }

  get vocabSize(): number {
    return this.cfg.vocabSize;
  }

  get hiddenSize(): number {
    return this.cfg.nEmbd;
  }

  get prevTokens(): number {
    return this.cfg.prevTokens ?? 0;
  }

  /**
   * The same weights in storage of its own (an optimizer updates a model in place); `frozen` turns its
   * gradients off (a reference model).
   */
  clone(opts: { frozen?: boolean } = {}): GPT {
    const m = new GPT(this.cfg, { device: this.device, dtype: this.p('wte').dtype as 'float32' | 'float64' });
    for (const [name, p] of m.params) {
      const src = E.tidy(() => E.noGrad(() => this.p(name).clone())); // tidy: clone's lifted scalar 1 is freed too
      p.assign(src);
      src.dispose();
      if (opts.frozen) p.requiresGrad = false;
    }
    return m;
  }

  /** Frees the parameters and the rotary tables. */
  dispose(): void {
    E.dispose([...this.params.values(), this.ropeCos, this.ropeSin]);
  }

  /** ids (B, T) int32 -> logits (B, T, V), and the extended cache and final hidden states when asked. */
  forward(ids: Tensor, opts: ForwardOptions = {}): { logits: Tensor; cache?: KVCache; hidden?: Tensor } {
    const tables = { cos: this.ropeCos, sin: this.ropeSin, blockSize: this.cfg.blockSize };
    const rot = rotaryAngles('GPT.forward', ids, opts, tables); // (B, T, hs/2) each
    const [B, T] = ids.shape;

    let x = E.embedding(ids, this.p('wte')); // (B, T, C)
    const n = this.cfg.prevTokens ?? 0;
    if (n > 0) {
      if (opts.cache && !opts.history)
        throw new Error(
          `GPT.forward: a model with prevTokens ${n} decoding on a cache needs opts.history (the ${n} tokens ` +
            `before the new ones)`,
        );
      const history = opts.history ?? E.zeros([B, n], { dtype: 'int32', device: ids.device });
      if (history.shape[0] !== B || history.shape[1] !== n || history.dtype !== 'int32')
        throw new Error(
          `GPT.forward: history must be (B, ${n}) int32 for ids ${E.fmt(ids.shape)}, got ${E.fmt(history.shape)} ` +
            `${history.dtype}`,
        );
      const context = E.cat([history, ids], 1); // (B, n + T)
      for (let j = 1; j <= n; j++) x = x.add(E.embedding(context.narrow(1, n - j, T), this.p(`wtePrev.${j}`)));
    }
    const use = openCache('GPT.forward', ids, opts, this.p('wte').requiresGrad, this.cacheShape());
    let h = E.rmsNorm(x, this.p('h.0.ln1'), this.cfg.normEps); // (B, T, C); later blocks' come with the residual add
    for (let l = 0; l < this.cfg.nLayer; l++) [x, h] = this.block(l, x, h, rot, use);
    const logits = E.matmulT(h, this.p('wte'), false, true); // (B, T, V), tied head
    const hidden = opts.returnHidden ? { hidden: h } : {}; // (B, T, C)
    if (!use.write) return { logits, ...hidden };
    use.write.length = use.past + T;
    return { logits, cache: use.write, ...hidden };
  }

  /**
   * Block l: x + attention(h), then + mlp(RMSNorm(.)). x is the residual stream (B, T, C) and h its norm;
   * returns both for the next block (h normed with the next block's weight, or the final norm's).
   */
  private block(l: number, x: Tensor, h: Tensor, rot: Rotation, use: CacheUse): [x: Tensor, h: Tensor] {
    const eps = this.cfg.normEps;
    const [x1, m] = E.addRmsNorm(x, this.attention(l, h, rot, use), this.p(`h.${l}.ln2`), eps);
    const next = l + 1 < this.cfg.nLayer ? this.p(`h.${l + 1}.ln1`) : this.p('lnf');
    return E.addRmsNorm(x1, this.mlp(l, m), next, eps);
  }

  /** Causal self-attention of block l on h (B, T, C): heads with RoPE on q and k, the cache, wo. */
  private attention(l: number, h: Tensor, rot: Rotation, use: CacheUse): Tensor {
    const [B, T, C] = h.shape;
    const w = (name: string) => this.p(`h.${l}.${name}`);
    const [q, k, v] = E.qkvHeads(h, w('wq'), w('wk'), w('wv'), rot.cos, rot.sin, this.cfg.nHead); // (B, nh, T, hs)
    const y = cachedAttention(q, k, v, l, use); // (B, nh, T, hs)
    return y.transpose(1, 2).reshape([B, T, C]).matmul(w('wo'));
  }

  /** The MLP of block l: (B, T, C) -> 4C -> GELU -> C. */
  private mlp(l: number, m: Tensor): Tensor {
    return m
      .matmul(this.p(`h.${l}.fc`))
      .gelu()
      .matmul(this.p(`h.${l}.proj`));
  }

  private cacheShape(): CacheShape {
    const { nHead, nEmbd, nLayer } = this.cfg;
    return { layers: nLayer, heads: nHead, headSize: nEmbd / nHead, device: this.device, dtype: this.ropeCos.dtype };
  }
}

/** Each token's rotary angles, (B, T, hs/2) each. */
interface Rotation {
  cos: Tensor;
  sin: Tensor;
}
