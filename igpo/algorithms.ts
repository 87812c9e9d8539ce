// Every RL algorithm the trainer runs, one registry entry each: its turn rewards, its advantage estimator,
// its loss options and its display name (the paper's row). Adding an algorithm is adding an entry here.
// Not the maths (reward.ts, advantage.ts, baselines.ts, value.ts) and not the loop (trainer.ts).

import { discountedSums, groupOutcomeAdvantages, normalizeGroupRewards } from './advantage.js';
import {
  defaultBaselineOptions,
  gigpoAdvantages,
  gspoLoss,
  reinforcePPEstimator,
  rlooAdvantages,
  stepSearchRewards,
  type BaselineOptions,
} from './baselines.js';
import { broadcastTurns, perRollout, turnLevel, type AdvantageEstimator } from './estimator.js';
import { defaultLossOptions, type PolicyLossFn, type PolicyLossOptions } from './loss.js';
import { informationGains, THINK_PROBE, type Probe } from './reward.js';
import type { Rollout } from './rollout.js';
import { ppoEstimator } from './value.js';

export interface RLOptions {
  algo: Algo;
  /** Turn-reward normalisation ('joint' is the paper's); GRPO's entry always uses 'separate'. */
  norm: 'joint' | 'separate';
  /** Discount of the turn advantages' sum over later turns (the paper: 1). */
  gamma: number;
  /** IG in log space (the authors' log_prob_diff option). */
  logSpace: boolean;
  /** How p_t is measured (reward.ts). */
  probe: Probe;
  /**
   * The outcome reward of an episode that ended malformed or without an answer, in place of its 0; null:
   * off (the paper's text). The authors' code gives -2.
   */
  formatPenalty: number | null;
  /** The shared policy loss's settings, before an algorithm changes them (Algorithm.lossOptions). */
  loss: PolicyLossOptions;
  /** The baselines' own settings (baselines.ts, value.ts). */
  baselines: BaselineOptions;
}

export interface Algorithm {
  /** The paper's row name. */
  display: string;
  /** The section of the paper's Tables 1 and 2 its row goes in. */
  section: 'outcome' | 'step';
  /** Its reward per turn of a rollout, given the rollout's outcome reward; a rollout's return is their sum. */
  turnRewards(r: Rollout, outcome: number, opts: RLOptions): number[];
  /** Rewards and baselines -> an advantage per policy token (estimator.ts). */
  estimator(opts: RLOptions): AdvantageEstimator;
  /** The loss settings it trains with, from the shared ones; those as they are when absent. */
  lossOptions?(loss: PolicyLossOptions, opts: RLOptions): PolicyLossOptions;
  /** Its own policy loss; the token-level clipped surrogate (loss.ts) when absent. */
  lossFn?: PolicyLossFn;
}

/**
 * The outcome reward of a rollout: its F1 (0 without an answer), or the format penalty for an episode
 * that ended malformed or without an answer when the penalty is on.
 */
export function outcomeReward(r: Rollout, opts: Pick<RLOptions, 'formatPenalty'>): number {
  return r.endReason !== 'answer' && opts.formatPenalty !== null ? opts.formatPenalty : r.outcome;
}

/**
 * Turn rewards from information gain and the outcome: IG_t (informationGains of the rollout's p_t) on each
 * search turn that got a tool response, and the outcome added on the last turn. A last turn that was a
 * search (the episode ran out of turns or room) got no response and so no p_t: it carries the outcome alone.
 */
export function turnRewards(
  r: Rollout,
  outcome: number,
  parts: { ig: boolean; outcome: boolean },
  opts: { logSpace?: boolean } = {},
): number[] {
  const gains = parts.ig ? informationGains(r.probs, opts) : [];
  const T = r.turns.length;
  return r.turns.map((turn, t) => {
    const gain = turn.kind === 'search' ? (gains[t] ?? 0) : 0;
    return t === T - 1 && parts.outcome ? gain + outcome : gain;
  });
}

type TurnRewards = Algorithm['turnRewards'];
const outcomeOnly: TurnRewards = (r, outcome) => turnRewards(r, outcome, { ig: false, outcome: true });

/**
 * IGPO's estimator over turn rewards: per group, normalisation (normalizeGroupRewards), then the discounted
 * sum over later turns (discountedSums); each policy token of a turn carries its turn's advantage.
 */
function groupNormalizedTurns(rewards: TurnRewards, opts: RLOptions): AdvantageEstimator {
  return {
    estimate(batch) {
      const normalized = batch.groups.flatMap((g, q) =>
        normalizeGroupRewards(
          g.map((r, i) => rewards(r, batch.outcomes[q][i], opts)),
          { norm: opts.norm },
        ),
      );
      return {
        advantages: broadcastTurns(batch.packed, discountedSums(normalized, opts.gamma)),
        normalizedTurnRewards: normalized,
      };
    },
  };
}

/** An entry of IGPO's reward ablation (the paper's Table 3): turn rewards from `parts`, IGPO's estimator. */
function ablation(
  display: string,
  section: Algorithm['section'],
  parts: { ig: boolean; outcome: boolean },
  fixed: Partial<Pick<RLOptions, 'norm'>> = {},
): Algorithm {
  const rewards: TurnRewards = (r, outcome, opts) => turnRewards(r, outcome, parts, opts);
  return {
    display,
    section,
    turnRewards: rewards,
    estimator: (opts) => groupNormalizedTurns(rewards, { ...opts, ...fixed }),
  };
}

const REGISTRY = {
  igpo: ablation('IGPO', 'step', { ig: true, outcome: true }),
  // Outcome only: with every IG term 0, 'separate' normalisation gives each turn of a rollout its z-scored
  // outcome, which is GRPO's advantage; 'joint' would mix the zeros into the statistics.
  grpo: ablation('GRPO', 'outcome', { ig: false, outcome: true }, { norm: 'separate' }),
  ig: ablation('IGPO (w/ IG only)', 'step', { ig: true, outcome: false }),
  rloo: {
    display: 'RLOO',
    section: 'outcome',
    turnRewards: outcomeOnly,
    estimator: () => turnLevel((g, outcomes) => perRollout(g, rlooAdvantages(outcomes))),
  },
  ppo: {
    display: 'PPO',
    section: 'outcome',
    turnRewards: outcomeOnly,
    estimator: (opts) => ppoEstimator(opts.baselines.ppo),
  },
  'reinforce++': {
    display: 'Reinforce++',
    section: 'outcome',
    turnRewards: outcomeOnly,
    estimator: (opts) => reinforcePPEstimator(opts.baselines.reinforcePP),
    // The KL moves from the loss into the reward (klShapedReturns).
    lossOptions: (loss) => ({ ...loss, klCoef: 0 }),
  },
  gspo: {
    display: 'GSPO',
    section: 'outcome',
    turnRewards: outcomeOnly,
    estimator: () => turnLevel((g, outcomes) => perRollout(g, groupOutcomeAdvantages(outcomes))),
    // Sequence-level ratios need a clip range of their own (the paper's 3e-4 / 4e-4).
    lossOptions: (loss, opts) => ({ ...loss, ...opts.baselines.gspo }),
    lossFn: gspoLoss,
  },
  gigpo: {
    display: 'GiGPO',
    section: 'step',
    // The outcome on the last turn; its step returns discount it and compare turns of one anchor state.
    turnRewards: outcomeOnly,
    estimator: (opts) => turnLevel((g, outcomes) => gigpoAdvantages(g, outcomes, opts.baselines.gigpo)),
  },
  stepsearch: {
    display: 'StepSearch',
    section: 'step',
    turnRewards: (r, outcome, opts) => stepSearchRewards(r, outcome, opts.baselines.stepsearch),
    // IGPO's estimator over its own step rewards: the two differ only in where the step rewards come from.
    estimator: (opts) =>
      groupNormalizedTurns((r, outcome) => stepSearchRewards(r, outcome, opts.baselines.stepsearch), opts),
  },
} satisfies Record<string, Algorithm>;

export type Algo = keyof typeof REGISTRY;
/** The registry: every algorithm by its command-line name. */
export const ALGORITHMS: Readonly<Record<Algo, Algorithm>> = REGISTRY;
export const ALGOS = Object.keys(ALGORITHMS) as Algo[];

/** The registry entry of a name, or an error that lists the known ones. */
export function algorithm(name: string): Algorithm {
  if (!Object.hasOwn(ALGORITHMS, name)) throw new Error(`unknown algorithm '${name}' (known: ${ALGOS.join(', ')})`);
  return ALGORITHMS[name as Algo];
}

/** The loss settings an algorithm trains with. */
export function lossOptionsOf(opts: RLOptions): PolicyLossOptions {
  const a = algorithm(opts.algo);
  return a.lossOptions ? a.lossOptions(opts.loss, opts) : opts.loss;
}

export const defaultRLOptions = (algo: Algo = 'igpo'): RLOptions => ({
  algo,
  norm: 'joint',
  gamma: 1,
  logSpace: false,
  probe: THINK_PROBE,
  formatPenalty: null,
  loss: defaultLossOptions,
  baselines: defaultBaselineOptions,
});
