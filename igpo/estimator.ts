// The advantage-estimator contract every RL algorithm fills (algorithms.ts): one step's rollouts grouped
// by question in, an advantage per policy token out; and the two ways turn-level advantages reach tokens.
// Not any estimator itself (advantage.ts, baselines.ts, value.ts) and not the training loop (trainer.ts).

import type { Rollout } from './rollout.js';
import type { Packed } from './update.js';

/** One RL step's rollouts, grouped by question (groups[q]: its G rollouts, packed in this order). */
export interface StepBatch {
  groups: readonly (readonly Rollout[])[];
  /** outcomes[q][i]: the outcome reward of groups[q][i] (its F1, or the format penalty; algorithms.ts). */
  outcomes: readonly (readonly number[])[];
  packed: Packed;
  /**
   * (B * L) log pi_ref, and log pi_old recomputed by the same no-grad forward (not the sampler's values), at
   * every packed position, when the estimator asks for them (needsRefLogp): their difference is exactly 0
   * where the two models are equal, as at the first step, instead of float noise that a normalisation blows up.
   */
  refLogp?: Float32Array;
  logp?: Float32Array;
  /** (B * L) the critic's V_old at every packed position, when the estimator asks for it (needsValues). */
  values?: Float32Array;
}

export interface StepAdvantages {
  /** (B * L) the advantage of each position's target token; 0 off the policy-token mask. */
  advantages: Float32Array;
  /** (B * L) value targets, for an estimator with a critic (PPO). */
  returns?: Float32Array;
  /**
   * Per rollout (in batch order) per turn: the group-normalised turn rewards before the discounted sum,
   * for estimators built on turn rewards (IGPO and its ablations); the metrics read IG's share from them.
   */
  normalizedTurnRewards?: number[][];
}

/** Rewards and baselines -> per-token advantages for one step. */
export interface AdvantageEstimator {
  readonly needsRefLogp?: boolean;
  /** The trainer gives such an estimator a critic (value.ts) and its values. */
  readonly needsValues?: boolean;
  estimate(batch: StepBatch): StepAdvantages;
}

/** Every policy token of turn t of rollout i carries perTurn[i][t]. */
export function broadcastTurns(packed: Packed, perTurn: readonly (readonly number[])[]): Float32Array {
  if (perTurn.length !== packed.B) throw new Error(`broadcastTurns: ${perTurn.length} rollouts for ${packed.B} rows`);
  const out = new Float32Array(packed.B * packed.L);
  for (let b = 0; b < packed.B; b++) {
    for (let j = 0; j < packed.L; j++) {
      const i = b * packed.L + j;
      const t = packed.turn[i];
      if (t < 0) continue;
      if (t >= perTurn[b].length)
        throw new Error(`broadcastTurns: rollout ${b} has ${perTurn[b].length} turn advantages, token needs turn ${t}`);
      out[i] = perTurn[b][t];
    }
  }
  return out;
}

/**
 * A turn-level estimator: f gives, per group (its rollouts and their outcome rewards), an advantage per
 * rollout per turn (RLOO, GSPO, GiGPO).
 */
export function turnLevel(
  f: (group: readonly Rollout[], outcomes: readonly number[]) => number[][],
): AdvantageEstimator {
  return {
    estimate: (batch) => ({
      advantages: broadcastTurns(
        batch.packed,
        batch.groups.flatMap((g, q) => f(g, batch.outcomes[q])),
      ),
    }),
  };
}

/** An outcome-level advantage per rollout, given to every turn of the rollout. */
export const perRollout = (group: readonly Rollout[], a: readonly number[]): number[][] =>
  group.map((r, i) => r.turns.map(() => a[i]));
