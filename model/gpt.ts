// The decoder: a nanoGPT-sized transformer on the engine, in one file. Pre-norm RMSNorm blocks, rotary
// position embeddings, causal attention through the engine's fused op, a GELU MLP and a tied output head.
// It runs on any backend; sampling, checkpoints and training live in their own files beside it.

import { z } from 'zod';
import * as E from '../engine/index.js';
import type { Tensor } from '../engine/index.js';
import type { CausalLM } from './lm.js';

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
    [this.ropeCos, this.ropeSin] = ropeTables(cfg, opts.device, common.dtype);
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
    const { nHead: nh, nEmbd: C, nLayer: L } = this.cfg;
    if (ids.ndim !== 2 || ids.dtype !== 'int32')
      throw new Error(`GPT.forward: ids must be (B, T) int32, got ${E.fmt(ids.shape)} ${ids.dtype}`);
    const [B, T] = ids.shape;
    const past = opts.cache?.length ?? 0;
    if (!opts.pos && past + T > this.cfg.blockSize)
      throw new Error(`GPT.forward: ${past} cached + ${T} new tokens exceed blockSize ${this.cfg.blockSize}`);
    const pos = opts.pos ?? E.arange(T, { device: ids.device }).add(past).reshape([1, T]).expand([B, T]);
    if (pos.shape[0] !== B || pos.shape[1] !== T)
      throw new Error(`GPT.forward: pos ${E.fmt(pos.shape)} must match ids ${E.fmt(ids.shape)}`);
    const cos = E.indexSelect(this.ropeCos, 0, pos); // (B, T, hs/2)
    const sin = E.indexSelect(this.ropeSin, 0, pos);

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
    if (opts.cache && E.isGradEnabled() && this.p('wte').requiresGrad)
      throw new Error(
        'GPT.forward: decoding on a KV cache is inference only (keys are written into it in place, off the tape); ' +
          'run it under E.noGrad',
      );
    const cache = opts.cache ?? (opts.returnCache ? this.emptyCache(B, T) : undefined);
    if (cache) {
      reserveSlots(cache, past + T);
      const newBias = opts.keyBias ?? E.zeros([B, T], { device: ids.device, dtype: this.ropeCos.dtype });
      E.noGrad(() => E.writeInto(cache.keyBias, newBias, 1, past));
    }
    const eps = this.cfg.normEps;
    let h = E.rmsNorm(x, this.p('h.0.ln1'), eps); // (B, T, C); later blocks' come with the residual add
    for (let l = 0; l < L; l++) {
      const w = (name: string) => this.p(`h.${l}.${name}`);
      const [q, k, v] = E.qkvHeads(h, w('wq'), w('wk'), w('wv'), cos, sin, nh); // (B, nh, T, hs), q and k rotated
      if (cache)
        E.noGrad(() => {
          E.writeInto(cache.k[l], k, 2, past); // slots [past, past + T) of (B, nh, capacity, hs)
          E.writeInto(cache.v[l], v, 2, past);
        });
      // On a cache, attention reads its first past + T slots where they lie.
      const c = opts.cache;
      const y = c
        ? E.scaledDotProductAttention(q, c.k[l], c.v[l], { keyBias: c.keyBias, kvLen: past + T })
        : E.scaledDotProductAttention(q, k, v, { keyBias: opts.keyBias }); // (B, nh, T, hs)
      let m: Tensor;
      [x, m] = E.addRmsNorm(x, y.transpose(1, 2).reshape([B, T, C]).matmul(w('wo')), w('ln2'), eps);
      const next = l + 1 < L ? this.p(`h.${l + 1}.ln1`) : this.p('lnf');
      [x, h] = E.addRmsNorm(x, m.matmul(w('fc')).gelu().matmul(w('proj')), next, eps); // h: the next block's input
    }
    const logits = E.matmulT(h, this.p('wte'), false, true); // (B, T, V), tied head
    const hidden = opts.returnHidden ? { hidden: h } : {}; // (B, T, C)
    if (!cache) return { logits, ...hidden };
    cache.length = past + T;
    return { logits, cache, ...hidden };
  }

  /** A cache for B rows with no slot used, with room for `need`. */
  private emptyCache(B: number, need: number): KVCache {
    const { nHead: nh, nEmbd: C, nLayer: L } = this.cfg;
    const cap = capacityFor(need);
    const o = { device: this.device, dtype: this.ropeCos.dtype };
    const kv = () => E.keep(E.zeros([B, nh, cap, C / nh], o));
    return {
      k: Array.from({ length: L }, kv),
      v: Array.from({ length: L }, kv),
      keyBias: E.keep(E.zeros([B, cap], o)),
      length: 0,
    };
  }
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

/** cos and sin of position * base^(-2i/hs), (blockSize, hs/2). */
function ropeTables(cfg: GPTConfig, device: E.Device | undefined, dtype: 'float32' | 'float64'): [Tensor, Tensor] {
  const half = cfg.nEmbd / cfg.nHead / 2;
  const cos = new Float64Array(cfg.blockSize * half);
  const sin = new Float64Array(cfg.blockSize * half);
  for (let p = 0; p < cfg.blockSize; p++) {
    for (let i = 0; i < half; i++) {
      const angle = p * cfg.ropeBase ** (-i / half);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  const make = (a: Float64Array) =>
    E.keep(E.tensor(dtype === 'float64' ? a : Float32Array.from(a), [cfg.blockSize, half], { device }));
  return [make(cos), make(sin)];
}

/** Frees a cache's tensors. */
export function disposeCache(cache: KVCache | undefined): void {
  if (cache) E.dispose([cache.k, cache.v, cache.keyBias]);
}
