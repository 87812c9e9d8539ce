// Run sizes: the model, the supervised warm-up and the RL loop. 'default' is the main job on this
// 2-core machine's CPU; 'sparse' the study's regime of sparse outcome rewards; 'smoke' is a seconds-long
// run for tests and CI.

import type { GPTConfig } from '../model/gpt.js';
import { SPLITS, type Split, type SplitConfig } from './world.js';

export interface Preset {
  name: string;
  /**
   * The relative frequency of 1-, 2- and 3-hop questions in the training and held-out splits (the warm-up's
   * demonstrations, RL's questions, the in-domain eval); the splits' own (SPLITS) when absent. The
   * out-of-domain split keeps its own.
   */
  hopWeights?: readonly [number, number, number];
  model: Pick<GPTConfig, 'nLayer' | 'nHead' | 'nEmbd' | 'blockSize' | 'initStd' | 'prevTokens'>;
  warmup: {
    steps: number;
    batchSize: number;
    lr: number;
    minLr: number;
    warmupSteps: number;
    /** The expert's flaw rate and its hasty rate (igpo/expert.ts, ExpertOptions). */
    imperfect: number;
    hasty?: number;
  };
  rl: {
    steps: number;
    /** Questions per step; each gets `group` rollouts. */
    questions: number;
    group: number;
    lr: number;
    maxTurns: number;
    maxTurnTokens: number;
    temperature: number;
    miniBatches: number;
    /** Global gradient-norm clip of each update (TRL's max_grad_norm; not the ratio clip). */
    maxGradNorm: number;
    evalEvery: number;
    evalEpisodes: number;
    /** Stop RL once this many policy tokens were sampled; 0: no limit. */
    tokenBudget: number;
  };
  /**
   * `igpo compare`: every run samples `budget` policy tokens (its last step may overshoot), about what
   * IGPO samples in the preset's `rl.steps` steps from the warm start, so that algorithms are compared at
   * equal cost whatever their episodes' lengths.
   */
  compare: { budget: number };
}

const DEFAULT: Preset = {
  name: 'default',
  // Sized for a run of about 10 minutes on a 2-core CPU; docs/presets.md has what each setting was measured
  // against before it was fixed.
  model: { nLayer: 2, nHead: 4, nEmbd: 64, blockSize: 512, initStd: 0.125, prevTokens: 3 },
  // The expert is hasty on 40% of multi-hop questions: a warm start that under-searches, for RL to fix.
  warmup: { steps: 450, batchSize: 8, lr: 8e-3, minLr: 8e-4, warmupSteps: 20, imperfect: 0.3, hasty: 0.4 },
  // Wide steps (16 questions x 8 rollouts) at temperature 1.
  rl: {
    steps: 16,
    questions: 16,
    group: 8,
    lr: 3e-4,
    maxTurns: 4,
    maxTurnTokens: 64,
    temperature: 1,
    miniBatches: 2,
    maxGradNorm: 1,
    evalEvery: 8,
    evalEpisodes: 128,
    tokenBudget: 0,
  },
  compare: { budget: 160_000 },
};

export const PRESETS: Record<'default' | 'sparse' | 'smoke', Preset> = {
  default: DEFAULT,
  // The paper's regime, for `igpo compare`: sparse outcome rewards (90% 2-hop questions, the expert hasty on
  // 60% of them, so GRPO's groups mostly collapse at the start of RL; docs/presets.md).
  sparse: {
    ...DEFAULT,
    name: 'sparse',
    hopWeights: [0.1, 0.9, 0],
    warmup: { ...DEFAULT.warmup, hasty: 0.6 },
    compare: { budget: 150_000 },
  },
  smoke: {
    name: 'smoke',
    model: { nLayer: 1, nHead: 2, nEmbd: 16, blockSize: 512, initStd: 0.02, prevTokens: 3 },
    warmup: { steps: 4, batchSize: 4, lr: 3e-3, minLr: 3e-4, warmupSteps: 1, imperfect: 0.3, hasty: 0 },
    rl: {
      steps: 2,
      questions: 2,
      group: 3,
      lr: 1e-3,
      maxTurns: 4,
      maxTurnTokens: 24,
      temperature: 1,
      miniBatches: 2,
      maxGradNorm: 1,
      evalEvery: 2,
      evalEpisodes: 4,
      tokenBudget: 0,
    },
    compare: { budget: 250 },
  },
};

/** A split as a preset draws it: its hop mix for train and eval, the split's own otherwise. */
export function presetSplit(preset: Preset, split: Split): SplitConfig {
  const base = SPLITS[split];
  return preset.hopWeights && split !== 'ood' ? { ...base, hopWeights: preset.hopWeights } : base;
}
