// Multi-turn rollouts: G samples per question decoded together with the KV cache, turn by turn, with
// the environment's responses appended (never sampled) and the ground-truth answer's probability scored
// on top of the cache after the prompt and after every tool response (the p_t of the IG reward).

import type * as E from '../engine/index.js';
import type { GPT } from '../model/gpt.js';
import { BatchDecoder, type SamplingOptions } from '../model/sample.js';
import type { Tokenizer } from '../model/tokenizer.js';
import { answerProbability } from './reward.js';

/** What a rollout needs of an environment episode. */
export interface AgentTask {
  /** The text the model is given before its first turn. */
  prompt: string;
  /** The ground truth, for the IG reward (its first form is the one scored). */
  gold: string | readonly string[];
  /** Advances with the agent's turn text. */
  step(turn: string): { done: boolean; observation?: string; reward?: number; reason?: string };
}

export type TurnKind = 'search' | 'answer' | 'ended';

export interface Turn {
  /** Policy tokens exactly as sampled, and their log pi_old. */
  tokens: number[];
  logprobs: number[];
  /** Tokens the environment appended after this turn (masked out of every loss). */
  observation: number[];
  kind: TurnKind;
}

export interface Rollout {
  prompt: number[];
  turns: Turn[];
  /** p_0 (after the prompt) and p_t after each turn that got a tool response; empty if not scored. */
  probs: number[];
  /** F1 of the answer, or 0 when the episode ended otherwise. */
  outcome: number;
  /** 'answer', or why the episode ended without one ('max-turns', 'length', or the environment's reason). */
  endReason: string;
}

export interface RolloutOptions {
  maxTurns: number;
  maxTurnTokens: number;
  sampling: SamplingOptions;
  /** Score p_t (the IG reward needs it; GRPO does not). */
  scoreAnswers: boolean;
}

/** The wrapped answer the policy would emit: `<answer>gold</answer>`. */
export function wrappedAnswer(tok: Tokenizer, gold: string | readonly string[]): number[] {
  const g = typeof gold === 'string' ? gold : gold[0];
  return [tok.answer, ...tok.encode(g), tok.answerEnd];
}

/**
 * Runs every task to its end in one batch (callers replicate a question G times for a group). Rows whose
 * episode has ended leave the decoder between turns (BatchDecoder.retain), which changes no other row.
 */
export async function collectRollouts(model: GPT, tok: Tokenizer, tasks: readonly AgentTask[], opts: RolloutOptions, gen: E.Generator, timings?: { generateMs: number; scoreMs: number }): Promise<Rollout[]> {
  const rollouts: Rollout[] = tasks.map((t) => ({ prompt: tok.encode(t.prompt), turns: [], probs: [], outcome: 0, endReason: 'max-turns' }));
  const answers = tasks.map((t) => wrappedAnswer(tok, t.gold));
  const dec = new BatchDecoder(model, rollouts.map((r) => r.prompt), tok.pad);
  /** The task of each decoder row: every task at first, then those still running. */
  let live = tasks.map((_, i) => i);
  /** p_t of the rows marked, on top of each row's cache. */
  const score = async (rows: boolean[]) => {
    if (!opts.scoreAnswers || !rows.some(Boolean)) return;
    const t0 = performance.now();
    const lps = await dec.score(live.map((i, b) => (rows[b] ? answers[i] : null)));
    if (timings) timings.scoreMs += performance.now() - t0;
    lps.forEach((lp, b) => rows[b] && rollouts[live[b]].probs.push(answerProbability(lp)));
  };
  try {
    await score(live.map(() => true));
    for (let turn = 0; turn < opts.maxTurns && live.length > 0; turn++) {
      const t0 = performance.now();
      const gen1 = await dec.generate({ ...opts.sampling, generator: gen, maxTokens: opts.maxTurnTokens, stop: [tok.searchEnd, tok.answerEnd, tok.eos] });
      if (timings) timings.generateMs += performance.now() - t0;
      const obs: (number[] | null)[] = live.map(() => null);
      live.forEach((i, b) => {
        const r = rollouts[i];
        const t: Turn = { tokens: gen1.tokens[b], logprobs: gen1.logprobs[b], observation: [], kind: 'ended' };
        r.turns.push(t);
        const res = tasks[i].step(tok.decode(t.tokens));
        if (res.done) {
          r.outcome = res.reward ?? 0;
          r.endReason = res.reason ?? (res.reward !== undefined ? 'answer' : 'ended');
          t.kind = r.endReason === 'answer' ? 'answer' : 'ended';
          return;
        }
        t.kind = 'search';
        t.observation = tok.encode(res.observation ?? '');
        if (dec.sequences[b].length + t.observation.length + answers[i].length > model.cfg.blockSize) {
          // No room for the response and another turn: the episode ends here, its IG so far kept.
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
      const kept = keep.map((b) => obs[b]);
      dec.append(kept);
      await score(kept.map(() => true));
    }
  } finally {
    dec.dispose();
  }
  return rollouts;
}

/** IGPO's reward ablation (the paper's Table 3): F1 + IG, F1 only (GRPO), IG only. */
export type RewardAlgo = 'igpo' | 'grpo' | 'ig';
/** Every algorithm the trainer runs: the reward ablation and the paper's baselines (its Tables 1 and 2; see baselines.ts). */
export type Algo = RewardAlgo | 'rloo' | 'ppo' | 'reinforce++' | 'gspo' | 'gigpo';
export const ALGOS: readonly Algo[] = ['igpo', 'grpo', 'ig', 'rloo', 'ppo', 'reinforce++', 'gspo', 'gigpo'];

/**
 * Turn rewards of one rollout for an algorithm: IG_t = p_t - p_{t-1} for the turns that got a tool
 * response, and the outcome on the last turn ('grpo': outcome only; 'ig': IG only). A last turn that
 * was itself a search (the episode ran out of turns or room) keeps its IG, added to the outcome of 0.
 */
export function turnRewards(r: Rollout, algo: RewardAlgo, opts: { logSpace?: boolean } = {}): number[] {
  const T = r.turns.length;
  const f = opts.logSpace ? (p: number) => Math.log(Math.max(p, 1e-30)) : (p: number) => p;
  const ig = (t: number) => (algo === 'grpo' || t + 1 >= r.probs.length ? 0 : f(r.probs[t + 1]) - f(r.probs[t]));
  return Array.from({ length: T }, (_, t) => {
    const gain = r.turns[t].kind === 'search' ? ig(t) : 0;
    return t === T - 1 ? gain + (algo === 'ig' ? 0 : r.outcome) : gain;
  });
}
