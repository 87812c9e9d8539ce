// The decoder: a nanoGPT-sized transformer on the engine, in one file. Pre-norm RMSNorm blocks, rotary
// position embeddings, causal attention through the engine's fused op, a GELU MLP and a tied output head.
// It runs on any backend; sampling, checkpoints and training live in their own files beside it.

import * as E from '../engine/index.js';
import type { Tensor } from '../engine/index.js';

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

export function checkConfig(cfg: GPTConfig): void {
  const bad = (msg: string) => {
    throw new Error(`GPTConfig: ${msg} (got ${JSON.stringify(cfg)})`);
  };
  for (const k of ['vocabSize', 'blockSize', 'nLayer', 'nHead', 'nEmbd'] as const) {
    if (!Number.isInteger(cfg[k]) || cfg[k] < 1) bad(`${k} must be a positive integer`);
  }
  if (cfg.nEmbd % cfg.nHead !== 0) bad('nEmbd must be divisible by nHead');
  if ((cfg.nEmbd / cfg.nHead) % 2 !== 0) bad('the head size nEmbd / nHead must be even for rotary embeddings');
}

/** Keys and values of every layer for the tokens seen so far, plus which cache slots are padding. */
export interface KVCache {
  /** Per layer: (B, nh, S, hs). */
  k: Tensor[];
  v: Tensor[];
  /** (B, S): 0 for a real token, -Infinity for a padding slot that no query may see. */
  keyBias: Tensor;
}

export interface ForwardOptions {
  /** Position of each token (B, T) int32; defaults to 0..T-1 after the cache's length. */
  pos?: Tensor;
  /** Attend over these earlier tokens too (decoding); the result's cache includes the new tokens. */
  cache?: KVCache;
  /** (B, T): 0 for real tokens, -Infinity for padding slots; needed only when a cache is built. */
  keyBias?: Tensor;
  /** Build and return the cache of this forward (sampling); off for training. */
  returnCache?: boolean;
  /** Also return the final hidden states (B, T, C) after the last norm (a value head reads them). */
  returnHidden?: boolean;
  /**
   * For a model with prevTokens = n: the n tokens before the first new one (B, n) int32, oldest first,
   * 0 where there are none; defaults to zeros, which is right only without a cache (a decoder passes its own).
   */
  history?: Tensor;
}

export class GPT {
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
    const { nEmbd: C, nLayer: L, vocabSize: V } = cfg;
    // GPT-2 initialisation: N(0, initStd), residual projections scaled by 1/sqrt(2 nLayer), norms at 1.
    const std = cfg.initStd ?? 0.02;
    const normal = (shape: number[], s = std) => E.randn(shape, { ...common, std: s });
    const ones = (n: number) => E.ones([n], { device: opts.device, dtype: common.dtype, requiresGrad: true });
    const residStd = std / Math.sqrt(2 * L);
    this.params = new Map<string, Tensor>([['wte', normal([V, C])]]);
    for (let j = 1; j <= (cfg.prevTokens ?? 0); j++) this.params.set(`wtePrev.${j}`, normal([V, C]));
    for (let l = 0; l < L; l++) {
      this.params.set(`h.${l}.ln1`, ones(C));
      this.params.set(`h.${l}.wq`, normal([C, C]));
      this.params.set(`h.${l}.wk`, normal([C, C]));
      this.params.set(`h.${l}.wv`, normal([C, C]));
      this.params.set(`h.${l}.wo`, normal([C, C], residStd));
      this.params.set(`h.${l}.ln2`, ones(C));
      this.params.set(`h.${l}.fc`, normal([C, 4 * C]));
      this.params.set(`h.${l}.proj`, normal([4 * C, C], residStd));
    }
    this.params.set('lnf', ones(C));
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

  /** Rotary embedding of x (B, nh, T, hs) at positions given by cos/sin (B, 1, T, hs/2). */
  private rope(x: Tensor, cos: Tensor, sin: Tensor): Tensor {
    const half = x.shape[3] / 2;
    const x1 = x.narrow(-1, 0, half);
    const x2 = x.narrow(-1, half, half);
    return E.cat([x1.mul(cos).sub(x2.mul(sin)), x1.mul(sin).add(x2.mul(cos))], -1);
  }

  /** ids (B, T) int32 -> logits (B, T, V), and the extended cache and final hidden states when asked. */
  forward(ids: Tensor, opts: ForwardOptions = {}): { logits: Tensor; cache?: KVCache; hidden?: Tensor } {
    const { nHead: nh, nEmbd: C, nLayer: L } = this.cfg;
    const hs = C / nh;
    if (ids.ndim !== 2 || ids.dtype !== 'int32')
      throw new Error(`GPT.forward: ids must be (B, T) int32, got ${E.fmt(ids.shape)} ${ids.dtype}`);
    const [B, T] = ids.shape;
    const past = opts.cache ? opts.cache.keyBias.shape[1] : 0;
    if (!opts.pos && past + T > this.cfg.blockSize)
      throw new Error(`GPT.forward: ${past} cached + ${T} new tokens exceed blockSize ${this.cfg.blockSize}`);
    const pos = opts.pos ?? E.arange(T, { device: ids.device }).add(past).reshape([1, T]).expand([B, T]);
    if (pos.shape[0] !== B || pos.shape[1] !== T)
      throw new Error(`GPT.forward: pos ${E.fmt(pos.shape)} must match ids ${E.fmt(ids.shape)}`);
    const want = opts.returnCache || opts.cache;
    const cos = E.indexSelect(this.ropeCos, 0, pos).reshape([B, 1, T, hs / 2]);
    const sin = E.indexSelect(this.ropeSin, 0, pos).reshape([B, 1, T, hs / 2]);
    const newBias = opts.keyBias ?? E.zeros([B, T], { device: ids.device, dtype: this.ropeCos.dtype });
    const keyBias = opts.cache ? E.cat([opts.cache.keyBias, newBias], 1) : (opts.keyBias ?? undefined);
    const ks: Tensor[] = [];
    const vs: Tensor[] = [];

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
    for (let l = 0; l < L; l++) {
      const h = E.rmsNorm(x, this.p(`h.${l}.ln1`), this.cfg.normEps);
      const heads = (w: string) => h.matmul(this.p(w)).reshape([B, T, nh, hs]).transpose(1, 2); // (B, nh, T, hs)
      const q = this.rope(heads(`h.${l}.wq`), cos, sin);
      let k = this.rope(heads(`h.${l}.wk`), cos, sin);
      let v = heads(`h.${l}.wv`);
      if (opts.cache) {
        k = E.cat([opts.cache.k[l], k], 2); // (B, nh, past + T, hs)
        v = E.cat([opts.cache.v[l], v], 2);
      }
      if (want) {
        ks.push(k);
        vs.push(v);
      }
      const y = E.scaledDotProductAttention(q, k, v, { keyBias }); // (B, nh, T, hs)
      x = x.add(
        y
          .transpose(1, 2)
          .reshape([B, T, C])
          .matmul(this.p(`h.${l}.wo`)),
      );
      const m = E.rmsNorm(x, this.p(`h.${l}.ln2`), this.cfg.normEps);
      x = x.add(
        m
          .matmul(this.p(`h.${l}.fc`))
          .gelu()
          .matmul(this.p(`h.${l}.proj`)),
      );
    }
    x = E.rmsNorm(x, this.p('lnf'), this.cfg.normEps);
    const logits = E.matmulT(x, this.p('wte'), false, true); // (B, T, V), tied head
    const hidden = opts.returnHidden ? { hidden: x } : {}; // (B, T, C)
    if (!want) return { logits, ...hidden };
    return { logits, cache: { k: ks, v: vs, keyBias: keyBias ?? newBias }, ...hidden };
  }
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
