// The metrics of an RL step that test the paper's claims: advantage collapse as the paper means it
// (a group's outcome rewards all equal) beside all-zero advantages, IG's share of the normalised signal,
// IG against F1, ground-truth entropy reduction (its Fig. 4), and IG by whether the answer's fact was
// retrieved. Pure functions over rollouts and arrays; the trainer (trainer.ts) calls them once a step.

import { informationGains } from './reward.js';
import type { Rollout } from './rollout.js';
import type { Packed } from './update.js';

/** The mean, or null for no values (JSON has no NaN). */
export const meanOrNull = (xs: readonly number[]): number | null =>
  xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : null;
const mean = meanOrNull;

/**
 * The paper's advantage collapse (its Fig. 1): the fraction of groups whose outcome rewards are all
 * equal, so that an outcome-only algorithm (GRPO) learns nothing from them; TRL logs it as
 * frac_reward_zero_std. It depends on the outcomes alone, so it means the same for every algorithm.
 */
export function collapsedGroups(outcomes: readonly (readonly number[])[]): number {
  if (outcomes.length === 0) throw new Error('collapsedGroups: no groups');
  return outcomes.filter((g) => g.every((x) => x === g[0])).length / outcomes.length;
}

/**
 * Groups (consecutive runs of `groupSize` rows) whose policy tokens' advantages are all exactly 0: no
 * learning signal. Not the paper's collapse: any non-zero IG in a group z-scores to order 1, so for IGPO
 * this is about 0 by construction whatever the outcomes are.
 */
export function zeroAdvantageGroups(packed: Packed, advantages: ArrayLike<number>, groupSize: number): number {
  let zero = 0;
  for (let from = 0; from < packed.B; from += groupSize) {
    let all = true;
    for (let i = from * packed.L; i < Math.min(packed.B, from + groupSize) * packed.L && all; i++)
      if (packed.mask[i] === 1 && advantages[i] !== 0) all = false;
    if (all) zero++;
  }
  return zero;
}

/**
 * How much of the group-normalised signal IG carries: over the step, the sum of the squared normalised
 * turn rewards (before the discounted sum) of the turns that carry an IG term (searches that got a tool
 * response, so a p_t after them), over that sum for every turn. With joint
 * normalisation a group's normalised rewards have mean 0, so this is IG turns' share of their variance.
 * normalized[i][t] is rollout i's, in the order of `rollouts`. null when every normalised reward is 0.
 */
export function igShare(normalized: readonly (readonly number[])[], rollouts: readonly Rollout[]): number | null {
  if (normalized.length !== rollouts.length)
    throw new Error(`igShare: ${normalized.length} rows of rewards for ${rollouts.length} rollouts`);
  let ig = 0;
  let all = 0;
  normalized.forEach((row, i) =>
    row.forEach((a, t) => {
      all += a * a;
      if (t < rollouts[i].probs.length - 1) ig += a * a; // a turn with a p_t after it: an IG term
    }),
  );
  return all > 0 ? ig / all : null;
}

/** Pearson's correlation; null when there are fewer than 2 points or one side does not vary. */
export function pearson(xs: readonly number[], ys: readonly number[]): number | null {
  if (xs.length !== ys.length) throw new Error(`pearson: ${xs.length} xs and ${ys.length} ys`);
  const n = xs.length;
  if (n < 2) return null;
  const mx = xs.reduce((s, x) => s + x, 0) / n;
  const my = ys.reduce((s, y) => s + y, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (xs[i] - mx) * (ys[i] - my);
    sxx += (xs[i] - mx) ** 2;
    syy += (ys[i] - my) ** 2;
  }
  return sxx > 0 && syy > 0 ? sxy / Math.sqrt(sxx * syy) : null;
}

/** A rollout's IG per search turn that got a tool response, in probability space (informationGains). */
export const rolloutGains = (r: Rollout): number[] => informationGains(r.probs);

/**
 * The paper's Fig. 4: the mean over rollouts of log p_last - log p_0, the drop in the ground truth's
 * entropy (-log p) from the question alone to after the last tool response. Rollouts that got no tool
 * response (one p_t) are left out; null when none did.
 */
export function gtEntropyReduction(rollouts: readonly Rollout[]): number | null {
  return mean(
    rollouts
      .filter((r) => r.probs.length >= 2)
      .map((r) => Math.log(r.probs[r.probs.length - 1]) - Math.log(r.probs[0])),
  );
}

export interface FactIG {
  /** Mean summed IG (p_last - p_0) of rollouts shown the fact that holds the answer by a tool response. */
  found: number | null;
  /** The same for rollouts that got a tool response but never the answer's fact. */
  notFound: number | null;
  /** Mean IG of the search turns that first returned the answer's fact. */
  factTurn: number | null;
  /** Mean IG of every other search turn that got a response. */
  otherTurns: number | null;
}

/**
 * IG by whether the search found the answer: factTurns[i] is the turn of rollout i whose search first
 * returned the fact that holds the gold answer (Episode.answerFactTurn), or null. If IG measures the
 * answer becoming more likely, found > notFound and factTurn > otherTurns.
 */
export function igByAnswerFact(rollouts: readonly Rollout[], factTurns: readonly (number | null)[]): FactIG {
  if (factTurns.length !== rollouts.length)
    throw new Error(`igByAnswerFact: ${factTurns.length} fact turns for ${rollouts.length} rollouts`);
  const sums: [number[], number[]] = [[], []];
  const turns: [number[], number[]] = [[], []];
  rollouts.forEach((r, i) => {
    const gains = rolloutGains(r);
    if (gains.length === 0) return;
    // A fact returned by a last search that got no response (out of turns) was never shown to the policy.
    const saw = factTurns[i] !== null && factTurns[i]! < gains.length;
    sums[saw ? 0 : 1].push(gains.reduce((s, g) => s + g, 0));
    gains.forEach((g, t) => turns[t === factTurns[i] ? 0 : 1].push(g));
  });
  return { found: mean(sums[0]), notFound: mean(sums[1]), factTurn: mean(turns[0]), otherTurns: mean(turns[1]) };
}
