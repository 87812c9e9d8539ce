// Run configuration files: `igpo train|compare --config FILE` (YAML or JSON). Every hyperparameter of a
// preset, named as TRL and verl name them where they do; the presets are such files' defaults; a file
// names only what it changes; flags override the file. Validated (zod) before any work, an unknown key
// named with its nearest valid one. Not the presets themselves (presets.ts).

import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { closest } from 'fastest-levenshtein';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ALGOS, defaultRLOptions, type Algo, type RLOptions } from './algorithms.js';
import type { Aggregation } from './loss.js';
import { PRESETS, type Preset } from './presets.js';
import { PROBES, resolveProbe } from './reward.js';

const int = (min = 0) => z.number().int().min(min);
const positive = z.number().positive();
const unit = z.number().min(0).max(1);

/** The file's sections and keys; every one optional in a file, every one present once resolved. */
const sections = {
  model: {
    n_layer: int(1),
    n_head: int(1),
    n_embd: int(1),
    block_size: int(2),
    /** Standard deviation of the initial weights. */
    init_std: positive,
    /** Embeddings of the n previous tokens (model/gpt.ts). */
    prev_tokens: int(0),
  },
  env: {
    /** Relative frequency of 1-, 2- and 3-hop questions in training and held-out eval. */
    hop_weights: z.tuple([unit, unit, unit]).nullable(),
  },
  warmup: {
    steps: int(0),
    batch_size: int(1),
    learning_rate: positive,
    min_learning_rate: z.number().min(0),
    warmup_steps: int(0),
    /** The expert's flaw rate, and its hasty rate on multi-hop questions (igpo/expert.ts). */
    imperfect: unit,
    hasty: unit,
  },
  rl: {
    steps: int(1),
    /** Questions per step (verl's train_batch_size, in prompts). */
    train_batch_size: int(1),
    /** Rollouts per question: the group (TRL's num_generations, verl's rollout.n). */
    num_generations: int(1),
    learning_rate: positive,
    temperature: positive,
    /** Questions per minibatch (verl's ppo_mini_batch_size): train_batch_size / this optimizer steps a step. */
    ppo_mini_batch_size: int(1),
    /** Global gradient-norm clip (TRL's max_grad_norm). */
    max_grad_norm: positive,
    max_turns: int(1),
    max_turn_tokens: int(1),
    /** Stop once this many policy tokens were sampled; 0: no limit. */
    token_budget: int(0),
    eval_every: int(1),
    eval_episodes: int(1),
    /** The PPO ratio clip 1 - low .. 1 + high, and the dual clip (verl's names). */
    clip_ratio_low: z.number().min(0),
    clip_ratio_high: z.number().min(0),
    clip_ratio_c: z.number().min(1),
    /** KL (k3) to the reference, as a loss term (verl's kl_loss_coef; TRL's beta). */
    kl_coef: z.number().min(0),
    entropy_coeff: z.number().min(0),
    loss_agg_mode: z.enum(['token-mean', 'seq-mean-token-mean', 'seq-mean-token-sum']),
    /** IGPO's turn-reward normalisation: joint (the paper) or separate (the authors' code). */
    norm: z.enum(['joint', 'separate']),
    gamma: unit,
    ig_log_space: z.boolean(),
    probe: z.enum(Object.keys(PROBES) as [string, ...string[]]),
    probe_prefix: z.string().nullable(),
    probe_close: z.boolean(),
    /** Outcome reward of a malformed or answerless episode (the authors' code: -2); null: off. */
    format_penalty: z.number().nullable(),
  },
  compare: {
    /** Policy tokens each run of a study samples. */
    budget: int(1),
  },
} as const;

const top = {
  /** The preset the file starts from. */
  preset: z.enum(Object.keys(PRESETS) as [string, ...string[]]),
  /** The run's name in reports (the preset's by default). */
  name: z.string().min(1),
  algo: z.enum(ALGOS as [Algo, ...Algo[]]),
  seed: int(0),
};

type Shape<T extends Record<string, z.ZodType>> = { [K in keyof T]: z.infer<T[K]> };

/** A resolved configuration: every key set. */
export interface RunConfig extends Shape<typeof top> {
  model: Shape<typeof sections.model>;
  env: Shape<typeof sections.env>;
  warmup: Shape<typeof sections.warmup>;
  rl: Shape<typeof sections.rl>;
  compare: Shape<typeof sections.compare>;
}
export type PartialConfig = Partial<Omit<RunConfig, keyof typeof sections>> & {
  [S in keyof typeof sections]?: Partial<RunConfig[S]>;
};

const fileSchema = z.strictObject({
  ...Object.fromEntries(Object.entries(top).map(([k, v]) => [k, v.optional()])),
  ...Object.fromEntries(
    Object.entries(sections).map(([s, keys]) => [
      s,
      z.strictObject(Object.fromEntries(Object.entries(keys).map(([k, v]) => [k, v.optional()]))).optional(),
    ]),
  ),
});

/** Every valid key path: 'seed', 'rl.learning_rate', ... */
export const CONFIG_KEYS: readonly string[] = [
  ...Object.keys(top),
  ...Object.entries(sections).flatMap(([s, keys]) => [s, ...Object.keys(keys).map((k) => `${s}.${k}`)]),
];

/** Checks a parsed file; an error names the file, the key and what is wrong with it. */
export function checkConfig(raw: unknown, file: string): PartialConfig {
  const res = fileSchema.safeParse(raw ?? {});
  if (res.success) return res.data as PartialConfig;
  const issue = res.error.issues[0];
  const at = issue.path.join('.');
  if (issue.code === 'unrecognized_keys') {
    const key = [...issue.path, issue.keys[0]].join('.');
    const siblings = CONFIG_KEYS.filter(
      (k) => k.split('.').length === issue.path.length + 1 && k.startsWith(at ? `${at}.` : ''),
    );
    throw new Error(`${file}: unknown key '${key}' (did you mean '${closest(key, siblings)}'?)`);
  }
  throw new Error(`${file}: ${at || '(top level)'}: ${issue.message}`);
}

/** Reads a YAML (.yaml, .yml) or JSON (.json) configuration file, checked. */
export async function readConfig(file: string): Promise<PartialConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read the configuration file: ${(e as Error).message}`, { cause: e });
  }
  const ext = extname(file).toLowerCase();
  if (!['.yaml', '.yml', '.json'].includes(ext))
    throw new Error(`${file}: a configuration file is .yaml, .yml or .json`);
  let raw: unknown;
  try {
    raw = ext === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (e) {
    throw new Error(`${file}: not valid ${ext === '.json' ? 'JSON' : 'YAML'}: ${(e as Error).message.split('\n')[0]}`, {
      cause: e,
    });
  }
  if (raw !== null && (typeof raw !== 'object' || Array.isArray(raw)))
    throw new Error(`${file}: a configuration file holds one mapping of keys`);
  return checkConfig(raw, file);
}

/** A preset and RL options as a configuration: what a file's keys default to. */
export function configOf(preset: Preset, rl: RLOptions, seed: number): RunConfig {
  const { model: m, warmup: w, rl: r } = preset;
  const base = Object.keys(PRESETS).find((k) => PRESETS[k as keyof typeof PRESETS].name === preset.name) ?? 'default';
  return {
    preset: base,
    name: preset.name,
    algo: rl.algo,
    seed,
    model: {
      n_layer: m.nLayer,
      n_head: m.nHead,
      n_embd: m.nEmbd,
      block_size: m.blockSize,
      init_std: m.initStd ?? 0.02,
      prev_tokens: m.prevTokens ?? 0,
    },
    env: { hop_weights: preset.hopWeights ? [...preset.hopWeights] : null },
    warmup: {
      steps: w.steps,
      batch_size: w.batchSize,
      learning_rate: w.lr,
      min_learning_rate: w.minLr,
      warmup_steps: w.warmupSteps,
      imperfect: w.imperfect,
      hasty: w.hasty ?? 0,
    },
    rl: {
      steps: r.steps,
      train_batch_size: r.questions,
      num_generations: r.group,
      learning_rate: r.lr,
      temperature: r.temperature,
      ppo_mini_batch_size: Math.ceil(r.questions / r.miniBatches),
      max_grad_norm: r.maxGradNorm,
      max_turns: r.maxTurns,
      max_turn_tokens: r.maxTurnTokens,
      token_budget: r.tokenBudget,
      eval_every: r.evalEvery,
      eval_episodes: r.evalEpisodes,
      clip_ratio_low: rl.loss.clipLow,
      clip_ratio_high: rl.loss.clipHigh,
      clip_ratio_c: rl.loss.dualClip,
      kl_coef: rl.loss.klCoef,
      entropy_coeff: rl.loss.entropyCoef,
      loss_agg_mode: rl.loss.aggregation,
      norm: rl.norm,
      gamma: rl.gamma,
      ig_log_space: rl.logSpace,
      ...probeKeys(rl),
      format_penalty: rl.formatPenalty,
    },
    compare: { budget: preset.compare.budget },
  };
}

/** The probe as the file names it: a named one, with its two options when they differ from its own. */
function probeKeys(rl: RLOptions): Pick<RunConfig['rl'], 'probe' | 'probe_prefix' | 'probe_close'> {
  const [name] = rl.probe.name.split('+');
  const base = PROBES[name as keyof typeof PROBES] ?? PROBES.think;
  return {
    probe: name in PROBES ? name : 'think',
    probe_prefix: rl.probe.prefix === base.prefix ? null : rl.probe.prefix,
    probe_close: rl.probe.scored !== base.scored,
  };
}

/** The preset, RL options and seed a resolved configuration describes. */
export function fromConfig(c: RunConfig): { preset: Preset; rl: RLOptions; seed: number } {
  const r = c.rl;
  const defaults = defaultRLOptions(c.algo);
  const miniBatches = Math.ceil(r.train_batch_size / r.ppo_mini_batch_size);
  const preset: Preset = {
    name: c.name,
    ...(c.env.hop_weights ? { hopWeights: c.env.hop_weights } : {}),
    model: {
      nLayer: c.model.n_layer,
      nHead: c.model.n_head,
      nEmbd: c.model.n_embd,
      blockSize: c.model.block_size,
      initStd: c.model.init_std,
      prevTokens: c.model.prev_tokens,
    },
    warmup: {
      steps: c.warmup.steps,
      batchSize: c.warmup.batch_size,
      lr: c.warmup.learning_rate,
      minLr: c.warmup.min_learning_rate,
      warmupSteps: c.warmup.warmup_steps,
      imperfect: c.warmup.imperfect,
      hasty: c.warmup.hasty,
    },
    rl: {
      steps: r.steps,
      questions: r.train_batch_size,
      group: r.num_generations,
      lr: r.learning_rate,
      maxTurns: r.max_turns,
      maxTurnTokens: r.max_turn_tokens,
      temperature: r.temperature,
      miniBatches,
      maxGradNorm: r.max_grad_norm,
      evalEvery: r.eval_every,
      evalEpisodes: r.eval_episodes,
      tokenBudget: r.token_budget,
    },
    compare: { budget: c.compare.budget },
  };
  const loss = {
    clipLow: r.clip_ratio_low,
    clipHigh: r.clip_ratio_high,
    dualClip: r.clip_ratio_c,
    klCoef: r.kl_coef,
    entropyCoef: r.entropy_coeff,
    aggregation: r.loss_agg_mode as Aggregation,
  };
  const probe = resolveProbe(r.probe, { prefix: r.probe_prefix ?? undefined, close: r.probe_close });
  return {
    preset,
    seed: c.seed,
    rl: {
      ...defaults,
      norm: r.norm,
      gamma: r.gamma,
      logSpace: r.ig_log_space,
      probe,
      formatPenalty: r.format_penalty,
      loss,
    },
  };
}

/**
 * The configuration of a run: the preset's defaults (the file's `preset`, else `presetName`), then the
 * file's keys, then the flags'. Its name is the preset's unless the file names it.
 */
export function resolveConfig(file: PartialConfig, flags: PartialConfig, presetName = 'default'): RunConfig {
  const base = (flags.preset ?? file.preset ?? presetName) as keyof typeof PRESETS;
  const preset = PRESETS[base];
  const defaults = configOf(preset, defaultRLOptions((flags.algo ?? file.algo ?? 'igpo') as Algo), 0);
  const merged = { ...defaults } as Record<string, unknown>;
  for (const layer of [file, flags] as Record<string, unknown>[]) {
    for (const [k, v] of Object.entries(layer)) {
      if (v === undefined) continue;
      merged[k] =
        k in sections
          ? {
              ...(merged[k] as object),
              ...Object.fromEntries(Object.entries(v as object).filter(([, x]) => x !== undefined)),
            }
          : v;
    }
  }
  merged.preset = base;
  merged.name = flags.name ?? file.name ?? preset.name;
  const c = merged as unknown as RunConfig;
  if (c.rl.ppo_mini_batch_size > c.rl.train_batch_size)
    throw new Error(
      `rl.ppo_mini_batch_size (${c.rl.ppo_mini_batch_size}) is larger than rl.train_batch_size ` +
        `(${c.rl.train_batch_size})`,
    );
  if (c.model.n_embd % c.model.n_head !== 0 || (c.model.n_embd / c.model.n_head) % 2 !== 0)
    throw new Error(
      `model.n_embd (${c.model.n_embd}) must divide into n_head (${c.model.n_head}) heads of an even size`,
    );
  return c;
}
