// Batched decoding with a KV cache: sample turn by turn, append tokens that were not sampled (a tool's
// response) with one forward, and score a continuation teacher-forced on top of the cache then roll back.
// Rows of a batch advance in shared cache slots; a row with nothing to add gets a masked padding slot.

import * as E from '../engine/index.js';
import type { Tensor } from '../engine/index.js';
import { disposeCache, type KVCache } from './kvcache.js';
import type { CausalLM } from './lm.js';

export interface SamplingOptions {
  /** Softmax temperature; 0 is greedy. Log-probs are those of softmax(logits / temperature). */
  temperature?: number;
  /** Keep only the k most likely tokens (0: all). */
  topK?: number;
  /** Keep the smallest set of tokens whose probability reaches p (1: all). */
  topP?: number;
  /** Tokens never drawn (their logits count as -Infinity): constrained decoding, for inference-only baselines. */
  banned?: readonly number[];
  generator?: E.Generator;
}

export interface GenerateOptions extends SamplingOptions {
  /** Longest turn, for all rows or per row. */
  maxTokens: number | readonly number[];
  /** Token ids that end a row's turn (included in its output). */
  stop?: readonly number[];
  /**
   * Texts that end a row's turn once its sampled tokens' text ends with one (`</search>` where a tag spans
   * several tokens, as in a BPE vocabulary); `decode` turns ids into text.
   */
  stopText?: { texts: readonly string[]; decode: (ids: readonly number[]) => string };
  /** Rows to sample for; the others wait (default: all). */
  active?: readonly boolean[];
}

export interface Generated {
  /** Per row: the sampled ids, exactly as sampled. */
  tokens: number[][];
  /** Per row: log pi_old(token) under the sampling distribution's softmax (before top-k/top-p). */
  logprobs: number[][];
  /** Per row: the token that ended the turn (a stop token, or a stop text's last), or null (length limit, inactive). */
  stoppedBy: (number | null)[];
}

/**
 * Draws one token from logits with temperature, top-k and top-p (never a banned one); returns it and
 * its log-prob under softmax(logits / temperature), banned tokens' logits taken as -Infinity.
 * Host-side, in float64: the logits of one row are a few hundred numbers.
 */
export function sampleToken(
  raw: ArrayLike<number>,
  opts: SamplingOptions,
  g: E.Generator,
): { token: number; logprob: number } {
  const V = raw.length;
  let logits = raw;
  if (opts.banned?.length) {
    const masked = Float64Array.from(raw);
    for (const j of opts.banned) masked[j] = -Infinity;
    logits = masked;
  }
  const temp = opts.temperature ?? 1;
  let best = 0;
  for (let j = 1; j < V; j++) if (logits[j] > logits[best]) best = j;
  const t = temp > 0 ? temp : 1;
  let lse = 0;
  const m = logits[best] / t;
  for (let j = 0; j < V; j++) lse += Math.exp(logits[j] / t - m);
  lse = m + Math.log(lse);
  const logprob = (j: number) => logits[j] / t - lse;
  if (temp <= 0) return { token: best, logprob: logprob(best) };
  // Candidates by descending probability, cut by top-k then top-p, then drawn proportionally.
  let order = Array.from({ length: V }, (_, j) => j).sort((a, b) => logits[b] - logits[a]);
  if (opts.banned?.length) order = order.filter((j) => logits[j] > -Infinity);
  if (opts.topK && opts.topK > 0) order = order.slice(0, opts.topK);
  const topP = opts.topP ?? 1;
  if (topP < 1) {
    let cum = 0;
    let n = 0;
    while (n < order.length && cum < topP) cum += Math.exp(logprob(order[n++]));
    order = order.slice(0, Math.max(1, n));
  }
  const probs = order.map((j) => Math.exp(logprob(j)));
  let u = g.random() * probs.reduce((a, b) => a + b, 0);
  for (let i = 0; i < order.length; i++) {
    u -= probs[i];
    if (u < 0) return { token: order[i], logprob: logprob(order[i]) };
  }
  const last = order[order.length - 1];
  return { token: last, logprob: logprob(last) };
}

/**
 * A batch of sequences being decoded together. Construct with the prompts (one forward over all of
 * them), then call generate / append / score in any order; dispose() frees the cache.
 */
export class BatchDecoder {
  /** Per row: every real token so far (prompt, sampled, appended). */
  private seqs: number[][];
  private cache: KVCache | undefined;
  /** (B, V): logits after each row's last real token. */
  private last: Tensor | undefined;

  constructor(
    readonly model: CausalLM,
    prompts: readonly (readonly number[])[],
    readonly padId = 0,
  ) {
    if (prompts.length === 0 || prompts.some((p) => p.length === 0))
      throw new Error('BatchDecoder: every row needs a non-empty prompt');
    this.seqs = prompts.map(() => []);
    this.feed(prompts);
  }

  /** Rows in the batch. */
  get B(): number {
    return this.seqs.length;
  }

  /** Per row: every real token so far (prompt, sampled, appended). */
  get sequences(): number[][] {
    return this.seqs;
  }

  /**
   * Keeps only the given rows, in that order (their cache, last logits and tokens), and frees the rest:
   * rows that are finished stop costing a share of every later forward. Each kept row decodes exactly as
   * it would have in the full batch.
   */
  retain(rows: readonly number[]): void {
    if (
      rows.length === 0 ||
      rows.some((r, i) => !Number.isInteger(r) || r < 0 || r >= this.B || (i > 0 && r <= rows[i - 1]))
    ) {
      throw new Error(
        `BatchDecoder.retain: rows must be increasing indices in [0, ${this.B}) and not empty, got ` +
          `[${rows.join(', ')}]`,
      );
    }
    if (rows.length === this.B) return;
    E.tidy(() => {
      const idx = E.tensor(Int32Array.from(rows), [rows.length], { device: this.model.device });
      const pick = (t: Tensor) => E.keep(E.indexSelect(t, 0, idx));
      const cache = this.cache!;
      const last = this.last!;
      this.cache = { k: cache.k.map(pick), v: cache.v.map(pick), keyBias: pick(cache.keyBias), length: cache.length };
      this.last = pick(last);
      disposeCache(cache);
      last.dispose();
    });
    this.seqs = rows.map((r) => this.seqs[r]);
  }

  /** Slots used so far (real tokens plus padding). */
  get slots(): number {
    return this.cache?.length ?? 0;
  }

  /**
   * Pads the chunks to one length and runs one forward on top of the cache, which it writes the chunks'
   * keys into (the first call builds it); returns the logits and the cache.
   */
  private forwardChunks(chunks: readonly (readonly number[] | null)[]): {
    logits: Tensor;
    cache: KVCache;
    lens: number[];
  } {
    const lens = chunks.map((c) => c?.length ?? 0);
    const T = Math.max(1, ...lens);
    const ids = new Int32Array(this.B * T).fill(this.padId);
    const pos = new Int32Array(this.B * T);
    const n = this.model.prevTokens;
    const history = new Int32Array(this.B * n); // the n tokens before each row's chunk (a prevTokens model reads them)
    const bias = new Float32Array(this.B * T).fill(-Infinity);
    for (let b = 0; b < this.B; b++) {
      const start = this.sequences[b].length;
      for (let t = 0; t < T; t++) {
        const i = b * T + t;
        if (t < lens[b]) {
          ids[i] = chunks[b]![t];
          pos[i] = start + t;
          bias[i] = 0;
        } else pos[i] = Math.min(start, this.model.blockSize - 1); // a masked pad; its position is never seen
      }
      for (let j = 0; j < n; j++) history[b * n + j] = this.sequences[b][start - n + j] ?? 0;
      if (start + lens[b] > this.model.blockSize)
        throw new Error(
          `BatchDecoder: row ${b} would hold ${start + lens[b]} tokens, more than blockSize ` +
            `${this.model.blockSize}`,
        );
    }
    const device = this.model.device;
    const dtype = this.model.dtype;
    const { logits, cache } = E.noGrad(() =>
      this.model.forward(E.tensor(ids, [this.B, T], { device }), {
        pos: E.tensor(pos, [this.B, T], { device }),
        ...(n > 0 ? { history: E.tensor(history, [this.B, n], { device }) } : {}),
        keyBias: E.tensor(dtype === 'float64' ? Float64Array.from(bias) : bias, [this.B, T], { device }),
        cache: this.cache,
        returnCache: true,
      }),
    );
    return { logits, cache: cache!, lens };
  }

  /** Appends tokens per row (null or [] for none) with one forward, keeping the cache: prompts and tool responses. */
  private feed(chunks: readonly (readonly number[] | null)[]): void {
    E.tidy(() => {
      const { logits, cache, lens } = this.forwardChunks(chunks);
      const [B, T, V] = logits.shape;
      // New last logits: position lens[b] of [old last, chunk logits...] per row.
      const prev = this.last
        ? this.last.reshape([B, 1, V])
        : E.zeros([B, 1, V], { device: logits.device, dtype: logits.dtype });
      const all = E.cat([prev, logits], 1).reshape([B * (T + 1), V]);
      const rows = E.tensor(Int32Array.from(lens.map((n, b) => b * (T + 1) + n)), [B], { device: logits.device });
      const last = E.indexSelect(all, 0, rows);
      this.last?.dispose();
      this.cache = cache; // the same cache after the first call, written in place
      this.last = E.keep(last);
    });
    chunks.forEach((c, b) => c && this.seqs[b].push(...c));
  }

  /** Appends tokens that were not sampled (a tool's response), per row; null or [] leaves a row as it is. */
  append(chunks: readonly (readonly number[] | null)[]): void {
    if (chunks.length !== this.B) throw new Error(`BatchDecoder.append: got ${chunks.length} rows, expected ${this.B}`);
    if (chunks.some((c) => c && c.length > 0)) this.feed(chunks);
  }

  /** Samples up to maxTokens per active row, one shared step at a time, until every row has stopped. */
  async generate(opts: GenerateOptions): Promise<Generated> {
    const g = opts.generator ?? E.getGenerator();
    const stop = new Set(opts.stop ?? []);
    const limit = (b: number) =>
      Math.min(
        typeof opts.maxTokens === 'number' ? opts.maxTokens : opts.maxTokens[b],
        this.model.blockSize - this.sequences[b].length,
      );
    const limits = Array.from({ length: this.B }, (_, b) => limit(b));
    const running = Array.from({ length: this.B }, (_, b) => (opts.active?.[b] ?? true) && limits[b] > 0);
    const out: Generated = {
      tokens: running.map(() => []),
      logprobs: running.map(() => []),
      stoppedBy: running.map(() => null),
    };
    for (let step = 0; running.some(Boolean); step++) {
      const logits = await this.last!.data();
      const V = logits.length / this.B;
      const chunk = running.map((on, b) => {
        if (!on) return null;
        const { token, logprob } = sampleToken(logits.subarray(b * V, (b + 1) * V), opts, g);
        out.tokens[b].push(token);
        out.logprobs[b].push(logprob);
        if (stop.has(token) || (opts.stopText && endsWithStopText(out.tokens[b], opts.stopText))) {
          out.stoppedBy[b] = token;
          running[b] = false;
        } else if (step + 1 >= limits[b]) running[b] = false;
        return [token];
      });
      this.feed(chunk);
    }
    return out;
  }

  /**
   * Teacher-forced log-probs of a continuation per row on top of the cache, which is left as it was:
   * result[b][j] = log p(cont[b][j] | sequence b, cont[b][<j]) under softmax(logits / temperature)
   * (1 by default; the policy a rollout samples from). null or [] gives [].
   */
  async score(conts: readonly (readonly number[] | null)[], opts: { temperature?: number } = {}): Promise<number[][]> {
    const temperature = opts.temperature ?? 1;
    if (!(temperature > 0)) throw new Error(`BatchDecoder.score: the temperature must be positive, got ${temperature}`);
    if (conts.length !== this.B) throw new Error(`BatchDecoder.score: got ${conts.length} rows, expected ${this.B}`);
    const lens = conts.map((c) => c?.length ?? 0);
    const T = Math.max(0, ...lens);
    if (T === 0) return conts.map(() => []);
    const used = this.slots;
    const lp = E.tidy(() => {
      // Only the first T-1 continuation tokens need a forward: the first is predicted from `last`. It writes
      // their keys past the cache's length, which is then set back: the next write overwrites them.
      const { logits, cache } = this.forwardChunks(conts.map((c) => (c ? c.slice(0, -1) : null)));
      cache.length = used;
      const [B, , V] = logits.shape;
      const pred = E.cat([this.last!.reshape([B, 1, V]), logits], 1).narrow(1, 0, T); // (B, T, V)
      const targets = new Int32Array(B * T).fill(-1);
      conts.forEach((c, b) => c?.forEach((id, j) => (targets[b * T + j] = id)));
      const out = E.targetLogProb(
        temperature === 1 ? pred : pred.mul(1 / temperature),
        E.tensor(targets, [B, T], { device: logits.device }),
      );
      return out;
    });
    const data = await lp.data();
    lp.dispose();
    return lens.map((n, b) => Array.from(data.subarray(b * T, b * T + n)));
  }

  dispose(): void {
    disposeCache(this.cache);
    this.last?.dispose();
    this.cache = undefined;
    this.last = undefined;
  }
}

/** Tokens decoded to check a stop text: enough for any tag, whatever the vocabulary splits it into. */
const STOP_TAIL_TOKENS = 32;

/** Whether the text of the last few tokens ends with one of the stop texts. */
function endsWithStopText(tokens: readonly number[], s: NonNullable<GenerateOptions['stopText']>): boolean {
  const tail = s.decode(tokens.slice(-STOP_TAIL_TOKENS));
  return s.texts.some((t) => tail.endsWith(t));
}
