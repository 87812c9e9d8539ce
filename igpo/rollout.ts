// Multi-turn rollouts: G samples per question decoded together with the KV cache, turn by turn, with
// the environment's responses appended (never sampled) and the ground-truth answer's probability scored
// on top of the cache after the prompt and after every tool response (the p_t of the IG reward).
// Not the rewards (reward.ts) or what an algorithm makes of them (algorithms.ts).

import type * as E from '../engine/index.js';
import type { CausalLM, TextTokenizer } from '../model/lm.js';
import { BatchDecoder, type GenerateOptions, type SamplingOptions } from '../model/sample.js';
import type { Retrieval } from './env.js';
import { probeProbability, probeTokens, type Probe } from './reward.js';

/**
 * What a rollout needs of a tokenizer: text and ids, and the protocol's tags as single tokens where the
 * vocabulary has them (the char tokenizer, model/tokenizer.ts). A tokenizer.json has none: its turns
 * stop on the tags' text instead.
 */
export interface AgentTokenizer extends TextTokenizer {
  readonly search?: number;
  readonly searchEnd?: number;
  readonly answerEnd?: number;
}

/** The tags that end an agent's turn: `</search>` and `</answer>`. */
export const TURN_END_TAGS = ['</search>', '</answer>'] as const;

/** How a turn stops: on the tag tokens and eos where the tags are tokens, else on eos and the tags' text. */
export function turnStops(tok: AgentTokenizer): Pick<GenerateOptions, 'stop' | 'stopText'> {
  if (tok.searchEnd !== undefined && tok.answerEnd !== undefined)
    return { stop: [tok.searchEnd, tok.answerEnd, tok.eos] };
  return { stop: [tok.eos], stopText: { texts: TURN_END_TAGS, decode: (ids) => textOf(tok, ids) } };
}

/** What a rollout needs of an environment episode. */
export interface AgentTask {
  /** The text the model is given before its first turn. */
  prompt: string;
  /** The ground truth, for the IG reward (its first form is the one the probe scores). */
  gold: string | readonly string[];
  /** Advances with the agent's turn text. */
  step(turn: string): { done: boolean; observation?: string; reward?: number; reason?: string; retrieval?: Retrieval };
}

export type TurnKind = 'search' | 'answer' | 'ended';

export interface Turn {
  /** Policy tokens exactly as sampled, and their log pi_old. */
  tokens: number[];
  logprobs: number[];
  /** Tokens the environment appended after this turn (masked out of every loss). */
  observation: number[];
  kind: TurnKind;
  /** What a search returned, when the environment says (env.ts's Retrieval). */
  retrieval?: Retrieval;
}

export interface Rollout {
  prompt: number[];
  turns: Turn[];
  /** p_0 (after the prompt) and p_t after each turn that got a tool response; empty if not scored. */
  probs: number[];
  /** probeAt[t]: how many tokens of the episode (prompt, turns, responses) preceded the probe of probs[t]. */
  probeAt: number[];
  /** The tokens the probe teacher-forced after those: its unscored prefix and its scored answer. */
  probe: { prefix: number[]; answer: number[] };
  /** F1 of the answer, or 0 when the episode ended otherwise. */
  outcome: number;
  /** 'answer', or why the episode ended without one ('max-turns', 'length', or the environment's reason). */
  endReason: string;
}

export interface RolloutOptions {
  maxTurns: number;
  maxTurnTokens: number;
  sampling: SamplingOptions;
  /** How p_t is measured (reward.ts); its tokens always fit after the last tool response. */
  probe: Probe;
  /**
   * Score p_t after the prompt and after every tool response, at this softmax temperature: the policy
   * the loss trains (the rollout's sampling temperature). null: not scored (evaluation).
   */
  scoreTemperature: number | null;
}

/**
 * Runs every task to its end in one batch (callers replicate a question G times for a group). Rows whose
 * episode has ended leave the decoder between turns (BatchDecoder.retain), which changes no other row.
 * p_t is scored through the cache: the probe's tokens are forwarded on top of each row's cache and rolled
 * back (BatchDecoder.score), then reduced by probeProbability, the tested definition in reward.ts.
 */
export async function collectRollouts(
  model: CausalLM,
  tok: AgentTokenizer,
  tasks: readonly AgentTask[],
  opts: RolloutOptions,
  gen: E.Generator,
  timings?: { generateMs: number; scoreMs: number },
): Promise<Rollout[]> {
  const rollouts: Rollout[] = tasks.map((t) => ({
    prompt: tok.encode(t.prompt),
    turns: [],
    probs: [],
    probeAt: [],
    probe: probeTokens(opts.probe, t.gold, (text) => tok.encode(text)),
    outcome: 0,
    endReason: 'max-turns',
  }));
  const probes = rollouts.map((r) => [...r.probe.prefix, ...r.probe.answer]);
  checkVocabularies(tok, model);
  const dec = new BatchDecoder(
    model,
    rollouts.map((r) => r.prompt),
    tok.pad,
  );
  /** The task of each decoder row: every task at first, then those still running. */
  let live = tasks.map((_, i) => i);
  /** p_t of every live row, on top of each row's cache. */
  const score = async () => {
    if (opts.scoreTemperature === null) return;
    const t0 = performance.now();
    const lps = await dec.score(
      live.map((i) => probes[i]),
      { temperature: opts.scoreTemperature },
    );
    if (timings) timings.scoreMs += performance.now() - t0;
    lps.forEach((lp, b) => {
      const r = rollouts[live[b]];
      r.probs.push(probeProbability(lp, r.probe));
      r.probeAt.push(dec.sequences[b].length);
    });
  };
  try {
    await score();
    for (let turn = 0; turn < opts.maxTurns && live.length > 0; turn++) {
      const t0 = performance.now();
      const gen1 = await dec.generate({
        ...opts.sampling,
        generator: gen,
        maxTokens: opts.maxTurnTokens,
        ...turnStops(tok),
      });
      if (timings) timings.generateMs += performance.now() - t0;
      const obs: (number[] | null)[] = live.map(() => null);
      live.forEach((i, b) => {
        const r = rollouts[i];
        const t: Turn = { tokens: gen1.tokens[b], logprobs: gen1.logprobs[b], observation: [], kind: 'ended' };
        r.turns.push(t);
        const res = tasks[i].step(textOf(tok, t.tokens));
        if (res.retrieval) t.retrieval = res.retrieval;
        if (res.done) {
          r.outcome = res.reward ?? 0;
          r.endReason = res.reason ?? (res.reward !== undefined ? 'answer' : 'ended');
          t.kind = r.endReason === 'answer' ? 'answer' : 'ended';
          return;
        }
        t.kind = 'search';
        t.observation = tok.encode(res.observation ?? '');
        if (dec.sequences[b].length + t.observation.length + probes[i].length > model.blockSize) {
          // No room for the response and the probe: the episode ends here, its IG so far kept.
          r.endReason = 'length';
          t.observation = [];
          return;
        }
        obs[b] = t.observation;
      });
      // Only rows with a response go on; the others are done.
      const keep = obs.flatMap((o, b) => (o !== null ? [b] : []));
      if (keep.length === 0) break;
      dec.retain(keep);
      live = keep.map((b) => live[b]);
      dec.append(keep.map((b) => obs[b]));
      await score();
    }
  } finally {
    dec.dispose();
  }
  return rollouts;
}

/**
 * A tokenizer larger than the model is refused: its ids would index past the embedding. A smaller one is
 * fine: a checkpoint's embedding may be padded beyond its tokenizer (Qwen2.5 has 151936 rows for 151665
 * tokens); such ids, where sampled, decode to no text (textOf).
 */
function checkVocabularies(tok: TextTokenizer, model: CausalLM): void {
  if (tok.vocabSize > model.vocabSize)
    throw new Error(`the tokenizer has ${tok.vocabSize} ids, more than the model's ${model.vocabSize} embeddings`);
}

/** The text of sampled ids; ids past the tokenizer's vocabulary (an embedding's padding rows) give none. */
export function textOf(tok: TextTokenizer, ids: readonly number[]): string {
  return tok.decode(ids.some((i) => i >= tok.vocabSize) ? ids.filter((i) => i < tok.vocabSize) : ids);
}
