// The paper's baselines (its Tables 1 and 2) on IGPO's own code path: the maths of each as an advantage
// estimator (estimator.ts's contract) or as turn rewards (StepSearch), plus a policy-loss variant where
// the algorithm has one (GSPO's sequence-level ratio; PPO's critic lives in value.ts). Pure functions over
// arrays and one loss on tensors; the registry that names them is algorithms.ts, the training loop
// trainer.ts and update.ts.

import * as E from '../engine/index.js';
import type { Tensor } from '../engine/index.js';
import { groupOutcomeAdvantages } from './advantage.js';
import type { AdvantageEstimator } from './estimator.js';
import { checkLossInputs, withPenalties, type PolicyLossFn } from './loss.js';
import type { Rollout } from './rollout.js';
import type { Packed } from './update.js';
import { batchNormalize, defaultValueOptions, policyPositions, type ValueOptions } from './value.js';

// ---------------------------------------------------------------------------------------------------
// RLOO.

/**
 * RLOO (Kool et al. 2019, "Buy 4 REINFORCE samples, get a baseline for free!"; Ahmadian et al. 2024, "Back
 * to Basics"): A_i = r_i - (1 / (G - 1)) sum_{j != i} r_j = (G / (G - 1)) (r_i - mean r), no std scaling.
 * r_i is the outcome reward (F1); every turn of rollout i gets A_i.
 * Deviations: a group of one has no baseline and gets 0; an all-equal group gives exact zeros (not rounding
 * noise); the loss is the shared PPO-clipped surrogate (Ahmadian et al. use REINFORCE without clipping, one
 * step per batch; with miniBatches = 1 the first step is exactly that at ratio 1).
 */
export function rlooAdvantages(rewards: readonly number[]): number[] {
  const G = rewards.length;
  if (G < 2 || rewards.every((r) => r === rewards[0])) return rewards.map(() => 0);
  const sum = rewards.reduce((s, r) => s + r, 0);
  return rewards.map((r) => r - (sum - r) / (G - 1));
}

// ---------------------------------------------------------------------------------------------------
// REINFORCE++.

/**
 * REINFORCE++'s per-token returns (Hu 2025, "REINFORCE++: A Simple and Efficient Approach for Aligning LLMs"):
 * r_t = outcome * [t is the rollout's last policy token] - klCoef * (log pi_old - log pi_ref)_t (the k1 KL
 * folded into the reward), and G_t = sum_{k >= t} gamma^(k - t) r_k over the rollout's policy tokens (tool
 * responses skipped). Packed layout (logp, refLogp: (B * L)); 0 off the mask. outcomes[b]: row b's outcome (F1).
 * Deviation: none from the paper's token-level KL reward (gamma = 1 as there).
 */
export function klShapedReturns(
  packed: Packed,
  outcomes: readonly number[],
  logp: ArrayLike<number>,
  refLogp: ArrayLike<number>,
  opts: { klCoef: number; gamma: number },
): Float64Array {
  if (outcomes.length !== packed.B)
    throw new Error(`klShapedReturns: ${outcomes.length} outcomes for ${packed.B} rows`);
  const out = new Float64Array(packed.B * packed.L);
  policyPositions(packed).forEach((pos, b) => {
    let acc = 0;
    for (let k = pos.length - 1; k >= 0; k--) {
      const i = pos[k];
      const r = (k === pos.length - 1 ? outcomes[b] : 0) - opts.klCoef * (logp[i] - refLogp[i]);
      out[i] = acc = r + opts.gamma * acc;
    }
  });
  return out;
}

export interface ReinforcePPOptions {
  /** beta of the KL reward; the KL loss term is off for REINFORCE++ (lossOptionsFor). */
  klCoef: number;
  gamma: number;
  eps: number;
}

/**
 * REINFORCE++ (Hu 2025): the KL-shaped returns above, normalised over the whole batch (every policy token of
 * every group in the step: global, not per group, so no group collapses to zero advantages).
 * Deviations: beta = 0.001, the KL strength of the other algorithms here (the paper's runs use 0.01 and up);
 * population std; the loss is the shared PPO-clipped surrogate (as the paper's) with its dual clip and
 * entropy bonus, and no KL loss term.
 */
export function reinforcePPEstimator(opts: ReinforcePPOptions): AdvantageEstimator {
  return {
    needsRefLogp: true,
    estimate(batch) {
      if (!batch.refLogp || !batch.logp)
        throw new Error('reinforce++: the estimator needs log pi_old and log pi_ref of the batch');
      const returns = klShapedReturns(batch.packed, batch.outcomes.flat(), batch.logp, batch.refLogp, opts);
      return { advantages: batchNormalize(returns, batch.packed.mask, opts.eps) };
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// GSPO.

/**
 * GSPO's sequence ratio s_i = (pi(y_i) / pi_old(y_i))^(1/|y_i|) = exp(mean over row i's policy tokens of
 * (logp - oldLogp)), (B, T) -> (B). Deviation: none; a row without policy tokens gets 1.
 */
export function sequenceRatio(logp: Tensor, oldLogp: Tensor, mask: Tensor): Tensor {
  return logp
    .sub(oldLogp)
    .mul(mask)
    .sum(1)
    .div(E.maximum(mask.sum(1), 1))
    .exp();
}

/**
 * GSPO's loss (Zheng et al. 2025, "Group Sequence Policy Optimization"): with s_i the sequence ratio above and
 * A_i the rollout's advantage, -(1/B) sum_i min(s_i A_i, clip(s_i, 1 - clipLow, 1 + clipHigh) A_i), plus the
 * shared k3 KL and entropy terms (loss.ts), aggregated over tokens as for the other algorithms.
 * A_i is read from the tokens: the mean of row i's policy-token advantages (equal under GSPO's group advantages).
 * Deviations: the "sequence" is a rollout's policy tokens across all its turns (tool responses excluded);
 * no dual clip (the paper has none); the KL and entropy terms, which the paper omits, are kept for parity.
 */
export const gspoLoss: PolicyLossFn = (inp, opts) => {
  checkLossInputs('gspoLoss', inp);
  const { logp, oldLogp, advantages, mask } = inp;
  const [B, T] = logp.shape;
  const s = sequenceRatio(logp, oldLogp, mask); // (B)
  const A = advantages
    .mul(mask)
    .sum(1)
    .div(E.maximum(mask.sum(1), 1)); // (B)
  const pg1 = A.neg().mul(s);
  const pg = E.maximum(pg1, A.neg().mul(E.minimum(E.maximum(s, 1 - opts.clipLow), 1 + opts.clipHigh))); // (B)
  const perToken = (x: Tensor) => x.reshape([B, 1]).expand([B, T]);
  return withPenalties(pg.mean(), perToken(pg), perToken(E.ne(pg, pg1)), inp, opts);
};

// ---------------------------------------------------------------------------------------------------
// GiGPO.

/**
 * The anchor state before each turn of a rollout (its environment state): the prompt and the tool responses
 * returned so far, as token ids. Turn t's key covers the observations of turns 0..t-1, so turns with equal
 * keys are at the same turn index and have seen exactly the same environment text.
 * Deviation: GiGPO's anchor is the environment's observation; here the environment's state is the
 * question plus the retrieved facts so far, so the key is that history (the agent's own think text is its
 * action, not the state; including it would leave almost every anchor group a singleton).
 */
export function anchorKeys(r: Rollout): string[] {
  let key = r.prompt.join(',');
  return r.turns.map((t) => {
    const k = key;
    key += `|${t.observation.join(',')}`;
    return k;
  });
}

/** The step-level groups of a group of rollouts: anchor key -> the [rollout, turn] pairs that share it. */
export function anchorGroups(group: readonly Rollout[]): Map<string, [number, number][]> {
  const out = new Map<string, [number, number][]>();
  group.forEach((r, i) =>
    anchorKeys(r).forEach((k, t) => {
      const members = out.get(k);
      if (members) members.push([i, t]);
      else out.set(k, [[i, t]]);
    }),
  );
  return out;
}

export interface GiGPOOptions {
  /** Weight of the step-level advantage (the paper's omega = 1). */
  omega: number;
  /** Discount of the step returns (the paper's gamma = 0.95). */
  gamma: number;
  /** F_norm: 'std' (the paper's default, as GRPO) or 'mean' (F_norm = 1, the code's mean_norm). */
  norm: 'std' | 'mean';
  eps: number;
}

function normalize(xs: readonly number[], norm: 'std' | 'mean', eps: number): number[] {
  if (xs.every((x) => x === xs[0])) return xs.map(() => 0);
  if (norm === 'std') return groupOutcomeAdvantages(xs, eps);
  const m = xs.reduce((s, x) => s + x, 0) / xs.length;
  return xs.map((x) => x - m);
}

/**
 * GiGPO (Feng et al. 2025, "Group-in-Group Policy Optimization for LLM Agent Training"): A = A^E + omega A^S.
 * A^E_i: the episode-level group advantage of the outcome reward outcomes[i] (normalised in the group of G rollouts).
 * A^S_{i,t}: the step return R_{i,t} = sum_{k >= t} gamma^(k - t) r_{i,k} (here the outcome on the last turn,
 * so gamma^(T_i - 1 - t) F1_i) normalised within its anchor group (anchorGroups); a singleton anchor gives 0.
 * Deviations: population std (the authors' code uses the sample std); anchor states as in anchorKeys.
 */
export function gigpoAdvantages(
  group: readonly Rollout[],
  outcomes: readonly number[],
  opts: GiGPOOptions,
): number[][] {
  if (outcomes.length !== group.length)
    throw new Error(`gigpoAdvantages: ${outcomes.length} outcomes for ${group.length} rollouts`);
  const episode = normalize(outcomes, opts.norm, opts.eps);
  const returns = group.map((r, i) => r.turns.map((_, t) => opts.gamma ** (r.turns.length - 1 - t) * outcomes[i]));
  const step = group.map((r) => r.turns.map(() => 0));
  for (const members of anchorGroups(group).values()) {
    const a = normalize(
      members.map(([i, t]) => returns[i][t]),
      opts.norm,
      opts.eps,
    );
    members.forEach(([i, t], k) => (step[i][t] = a[k]));
  }
  return group.map((r, i) => r.turns.map((_, t) => episode[i] + opts.omega * step[i][t]));
}

// ---------------------------------------------------------------------------------------------------
// StepSearch.

export interface StepSearchOptions {
  /** Weight of the information-gain step reward. */
  gain: number;
  /** Weight of the redundancy penalty. */
  redundancy: number;
}

/**
 * StepSearch's turn rewards (Wang et al. 2025, "StepSearch: Igniting LLMs Search Ability via Step-Wise
 * Proximal Policy Optimization", arXiv 2505.15107): each search turn earns its information gain about the
 * question's gold facts minus a penalty for retrieving again what an earlier search retrieved; the last
 * turn adds the outcome reward. Here the gain is the fraction of the question's chain facts this search
 * returned for the first time (newNeeded / neededTotal) and the penalty the fraction of its results that
 * an earlier search had returned (repeated / returned), from the environment's Retrieval.
 * Deviations: the paper scores retrieved documents by their similarity to the gold documents and keeps
 * the best so far per gold document; the environment knows its gold facts, so similarity is exact match.
 * The paper adds a search-keyword reward to the outcome and trains with PPO and a critic (StePPO); here
 * there is no keyword reward, and the rewards go through IGPO's group normalisation and discounted sum,
 * so that StepSearch and IGPO differ only in where their step rewards come from. Weights are 1 and 1.
 */
export function stepSearchRewards(r: Rollout, outcome: number, opts: StepSearchOptions): number[] {
  return r.turns.map((t, k) => {
    const q = t.retrieval;
    const step = q
      ? opts.gain * (q.neededTotal > 0 ? q.newNeeded / q.neededTotal : 0) -
        opts.redundancy * (q.returned > 0 ? q.repeated / q.returned : 0)
      : 0;
    return k === r.turns.length - 1 ? step + outcome : step;
  });
}

// ---------------------------------------------------------------------------------------------------
// Settings.

/** The baselines' own settings; IGPO and its ablations ignore them. */
export interface BaselineOptions {
  reinforcePP: ReinforcePPOptions;
  /** GSPO's sequence-level clip range (the paper's 3e-4 / 4e-4). */
  gspo: { clipLow: number; clipHigh: number };
  gigpo: GiGPOOptions;
  ppo: ValueOptions;
  stepsearch: StepSearchOptions;
}

export const defaultBaselineOptions: BaselineOptions = {
  reinforcePP: { klCoef: 0.001, gamma: 1, eps: 1e-6 },
  gspo: { clipLow: 3e-4, clipHigh: 4e-4 },
  gigpo: { omega: 1, gamma: 0.95, norm: 'std', eps: 1e-6 },
  ppo: defaultValueOptions,
  stepsearch: { gain: 1, redundancy: 1 },
};
