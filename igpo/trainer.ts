// The IGPO training job: a supervised warm-up on the scripted expert's demonstrations, then RL with G
// rollouts per question, each algorithm's rewards and advantages (its entry in algorithms.ts), and the
// clipped surrogate loss against a frozen reference on minibatches of whole groups. Writes
// metrics.jsonl, the checkpoint, curves and report.md; `igpo eval` (runEval) reads a checkpoint back.

import cliProgress from 'cli-progress';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { z } from 'zod';
import * as E from '../engine/index.js';
import { loadCheckpoint, saveCheckpoint } from '../model/checkpoint.js';
import { GPT, type GPTConfig } from '../model/gpt.js';
import type { CausalLM, TextTokenizer } from '../model/lm.js';
import { defaultTokenizer, type Tokenizer } from '../model/tokenizer.js';
import { lengthBuckets, trainSupervised, type Example } from '../model/train.js';
import { algorithm, lossOptionsOf, outcomeReward, type Algo, type RLOptions } from './algorithms.js';
import {
  Episode,
  episodeStream,
  makeSplit,
  summarizeEpisodes,
  type EndReason,
  type EpisodeSpec,
  type EpisodeSummary,
} from './env.js';
import type { StepBatch } from './estimator.js';
import { expertTurns } from './expert.js';
import {
  collapsedGroups,
  gtEntropyReduction,
  igByAnswerFact,
  igShare,
  meanOrNull,
  pearson,
  rolloutGains,
  zeroAdvantageGroups,
} from './metrics.js';
import { THINK_PROBE, type Probe } from './reward.js';
import { collectRollouts, type AgentTokenizer, type Rollout } from './rollout.js';
import { frozenCopy, groupMinibatches, packRollouts, tokenLogProbs, updatePolicy, type UpdateStats } from './update.js';
import { Critic } from './value.js';
import type { RunConfig } from './config.js';
import { PRESETS, presetSplit, type Preset } from './presets.js';
import { loadRunState, saveRunState } from './runstate.js';

export { PRESETS, type Preset } from './presets.js';
export { defaultRLOptions, type RLOptions } from './algorithms.js';

// ---------------------------------------------------------------------------------------------------
// Warm-up.

/** The expert's demonstration of an episode as a training example: loss on the agent's turns only. */
export function demoExample(
  spec: EpisodeSpec,
  tok: TextTokenizer,
  maxTurns: number,
  imperfect: number,
  gen: E.Generator,
  hasty = 0,
): Example {
  const ep = Episode.fromSpec(spec, { maxTurns });
  const ids = tok.encode(ep.prompt);
  const mask = ids.map(() => false);
  for (const turn of expertTurns(spec.question, ep.retriever, { imperfect, hasty, gen })) {
    const t = tok.encode(turn);
    ids.push(...t);
    mask.push(...t.map(() => true));
    const res = ep.step(turn);
    if (res.done) break;
    const o = tok.encode(res.observation ?? '');
    ids.push(...o);
    mask.push(...o.map(() => false));
  }
  return { ids, lossMask: mask };
}

export interface WarmStart {
  model: GPT;
  tok: Tokenizer;
  losses: number[];
}

/** Builds the project's decoder (char tokenizer, the preset's shape) and trains it on expert demonstrations. */
export async function warmStart(
  preset: Preset,
  seed: number,
  device: E.Device,
  progress = false,
  log?: (line: string) => void,
  onStep?: (step: number, loss: number, lr: number) => void | Promise<void>,
): Promise<WarmStart> {
  const tok = defaultTokenizer();
  const cfg: GPTConfig = { vocabSize: tok.vocabSize, ropeBase: 10000, normEps: 1e-5, ...preset.model };
  const model = new GPT(cfg, { generator: new E.Generator(seed), device });
  const losses = await supervisedWarmup(model, tok, preset, seed, preset.warmup.steps, progress, log, onStep);
  return { model, tok, losses };
}

/**
 * Trains any model on `steps` batches of expert demonstrations (the preset's warm-up batch, learning rate
 * and demonstration noise); returns the losses. The warm start of the project's decoder, and `--warmup N`
 * for a pretrained model.
 */
export async function supervisedWarmup(
  model: CausalLM,
  tok: TextTokenizer,
  preset: Preset,
  seed: number,
  steps: number,
  progress = false,
  log?: (line: string) => void,
  onStep?: (step: number, loss: number, lr: number) => void | Promise<void>,
): Promise<number[]> {
  const stream = episodeStream(presetSplit(preset, 'train'), seed);
  const gen = new E.Generator(seed + 1);
  const w = { ...preset.warmup, steps };
  const { losses, optimizer } = await trainSupervised(
    model,
    lengthBuckets(
      () => demoExample(stream.next().value as EpisodeSpec, tok, preset.rl.maxTurns, w.imperfect, gen, w.hasty),
      w.batchSize,
      gen,
    ),
    {
      ...w,
      weightDecay: 0.01,
      maxGradNorm: 1,
      padId: tok.pad,
      progress,
      onStep: async (step, loss, lr) => {
        if (log && !progress && (step + 1) % 50 === 0)
          log(`warm-up step ${step + 1}/${w.steps}: loss ${loss.toFixed(4)}`);
        await onStep?.(step, loss, lr);
      },
    },
  );
  optimizer.dispose();
  return losses;
}

// ---------------------------------------------------------------------------------------------------
// Evaluation.

export interface EvalResult {
  f1: number;
  episodes: number;
  ends: Partial<Record<EndReason, number>>;
  meanSearches: number;
  /** F1 and searches by the question's number of hops. */
  byHops: EpisodeSummary['byHops'];
}

/**
 * Inference-only baselines on a model, as the paper's prompt-based rows (its Table 1) stand for them:
 * 'agent' is the model's own search behaviour (Search-o1: a model that searches when it decides to);
 * 'cot' answers with no search (the `<search>` tag is never sampled); 'rag' retrieves once with the
 * question as the query (a scripted first turn) and then answers with no further search (CoT+RAG).
 */
export type EvalMode = 'agent' | 'cot' | 'rag';
export const EVAL_MODES: Readonly<Record<EvalMode, string>> = { cot: 'CoT', rag: 'CoT+RAG', agent: 'Search-o1' };

/** The scripted first turn of 'rag': search with the question itself. */
export const ragTurn = (question: string): string => `<think>find the answer.</think><search>${question}</search>`;

export interface EvalOptions {
  /** What the model may do (EvalMode); 'agent' by default. */
  mode?: EvalMode;
  /** The probe of the run (its tokens are kept free at the end of the context, as in training). */
  probe?: Probe;
  /** Score p_t on the greedy episodes, at this temperature (the preset's RL temperature for a dump). */
  scoreTemperature?: number;
  /** Each finished episode: its rollout, as collectRollouts returned it. */
  onEpisode?: (r: Rollout, spec: EpisodeSpec) => void;
  batch?: number;
}

/** Greedy decoding on fixed episodes, in batches; mean final reward (F1). */
export async function evaluate(
  model: CausalLM,
  tok: AgentTokenizer,
  specs: readonly EpisodeSpec[],
  preset: Preset,
  opts: EvalOptions = {},
): Promise<EvalResult> {
  const batch = opts.batch ?? 32;
  const mode = opts.mode ?? 'agent';
  if (mode !== 'agent' && tok.search === undefined)
    throw new Error(`eval mode '${mode}' bans the <search> token, and this tokenizer has no single <search> token`);
  const sampling = { temperature: 0, ...(mode === 'agent' ? {} : { banned: [tok.search!] }) };
  const records = [];
  for (let i = 0; i < specs.length; i += batch) {
    const part = specs.slice(i, i + batch);
    const eps = part.map((s) => Episode.fromSpec(s, { maxTurns: preset.rl.maxTurns }));
    const tasks = eps.map((ep) => {
      const step = (t: string) => ep.step(t);
      if (mode !== 'rag') return { prompt: ep.prompt, gold: ep.gold, step };
      const turn = ragTurn(ep.question.text);
      return { prompt: ep.prompt + turn + (ep.step(turn).observation ?? ''), gold: ep.gold, step };
    });
    const live = tasks.flatMap((t, k) => (eps[k].done ? [] : [k])); // a retrieval can fill the context
    const rollouts =
      live.length === 0
        ? []
        : await collectRollouts(
            model,
            tok,
            live.map((k) => tasks[k]),
            {
              maxTurns: preset.rl.maxTurns - (mode === 'rag' ? 1 : 0),
              maxTurnTokens: preset.rl.maxTurnTokens,
              sampling,
              probe: opts.probe ?? THINK_PROBE,
              scoreTemperature: opts.scoreTemperature ?? null,
            },
            new E.Generator(0),
          );
    rollouts.forEach((r, j) => opts.onEpisode?.(r, part[live[j]]));
    records.push(...eps.map((ep) => ep.record()));
  }
  const s = summarizeEpisodes(records);
  return { f1: s.meanReward, episodes: s.episodes, ends: s.ends, meanSearches: s.meanSearches, byHops: s.byHops };
}

/**
 * One line of `igpo eval --dump`: every token id of the episode in order, where each turn's policy
 * tokens are ([start, end) in ids), the probe's tokens, and p_t scored on ids[0:pAt[t]] + prefix + answer,
 * averaged over the answer's tokens.
 */
export function dumpLine(r: Rollout, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const ids = [...r.prompt];
  const turns = r.turns.map((t) => {
    const start = ids.length;
    ids.push(...t.tokens);
    const end = ids.length;
    ids.push(...t.observation);
    return { kind: t.kind, start, end };
  });
  return { ids, turns, probe: r.probe, p: r.probs, pAt: r.probeAt, ...extra };
}

// ---------------------------------------------------------------------------------------------------
// RL.

export interface StepMetrics {
  step: number;
  algo: Algo;
  seed: number;
  /** When the step ended (ISO 8601). */
  timestamp: string;
  trainF1: number;
  /**
   * The paper's advantage collapse: the fraction of the step's groups whose outcome rewards are all equal
   * (TRL's frac_reward_zero_std), whatever the algorithm does with them.
   */
  collapsedGroups: number;
  /** The fraction of groups whose advantages are all exactly 0; about 0 for IGPO by construction. */
  zeroAdvantageGroups: number;
  /** Mean and population std over rollouts of the algorithm's return (its turn rewards summed). */
  rewardMean: number;
  rewardStd: number;
  /** Over the step's policy tokens: their advantages' mean, population std, min and max. */
  advantages: { mean: number; std: number; min: number; max: number };
  /** Policy tokens per rollout (all its turns), and turns per rollout. */
  responseLength: { mean: number; min: number; max: number };
  turnsPerEpisode: number;
  learningRate: number;
  /** Mean IG per search turn that got a tool response (probability space). */
  meanIG: number | null;
  /** IG turns' share of the group-normalised turn rewards' sum of squares; null for estimators without turn rewards. */
  igShare: number | null;
  /** Pearson's correlation over the step's rollouts of a rollout's summed IG with its F1. */
  igF1Corr: number | null;
  /** Mean summed IG of rollouts shown the answer's fact by a search, and of those that searched without it. */
  igFound: number | null;
  igNotFound: number | null;
  /** Mean IG of the search turns that first returned the answer's fact, and of every other search turn. */
  igFactTurn: number | null;
  igOtherTurns: number | null;
  /**
   * Mean over rollouts of log p_last - log p_0: the drop in the ground truth's entropy (-log p), the
   * paper's Fig. 4.
   */
  gtEntropyReduction: number | null;
  policyTokens: number;
  loss: number;
  kl: number;
  clipFrac: number;
  /** Per minibatch, in order: the first is on-policy (ratio 1 before its step). */
  clipFracs: number[];
  entropy: number;
  gradNorm: number;
  /** PPO's value loss. */
  valueLoss?: number;
  ends: Record<string, number>;
  ms: { rollout: number; igScoring: number; update: number };
  evalF1?: number;
  oodF1?: number;
}

export interface RLResult {
  steps: StepMetrics[];
  evalBefore: { inDomain: EvalResult; ood: EvalResult };
  evalAfter: { inDomain: EvalResult; ood: EvalResult };
}

type BothEvals = RLResult['evalBefore'];

/**
 * Everything a run needs, beyond the model's weights and the reference (the warm start), to continue
 * from a step exactly as it would have gone on: the counters, the generators, the optimizers.
 */
export interface RLState {
  /** The next step to run. */
  step: number;
  policyTokens: number;
  steps: StepMetrics[];
  evalBefore: BothEvals;
  lastEval: { step: number; result: BothEvals } | null;
  gen: E.GeneratorState;
  shuffle: E.GeneratorState;
  optimizer: E.AdamWState;
  /** PPO's value head: its weights and its optimizer. */
  critic?: { w: ArrayLike<number>; b: ArrayLike<number>; optimizer: E.AdamWState };
}

export interface RLHooks {
  onStep?: (m: StepMetrics) => void | Promise<void>;
  progress?: boolean;
  /** The warm-started model's evaluation, when the caller already has it (compare runs several algorithms from one). */
  evalBefore?: BothEvals;
  /** Continue a run from its saved state (the model given is then the run's policy at that step). */
  resume?: RLState;
  /** The warm start, when the model given is not it (a resumed run): the KL's reference. */
  reference?: CausalLM;
  /** Called every `every` steps, after the step's metrics, with the state to save. */
  checkpoint?: { every: number; save: (state: RLState) => Promise<void> };
}

/**
 * Runs RL from a warm-started model (modified in place). Each step reads top-down: rollouts (with p_t
 * scored by the run's probe), outcome rewards, advantages by the algorithm's estimator (algorithms.ts),
 * the update on minibatches of whole groups, then the step's metrics (metrics.ts).
 */
export async function trainRL(
  model: CausalLM,
  tok: AgentTokenizer,
  preset: Preset,
  opts: RLOptions,
  seed: number,
  hooks: RLHooks = {},
): Promise<RLResult> {
  const rl = preset.rl;
  const algo = algorithm(opts.algo);
  const estimator = algo.estimator(opts);
  const loss = lossOptionsOf(opts);
  const resume = hooks.resume;
  const evalSet = makeSplit(presetSplit(preset, 'eval'), seed, rl.evalEpisodes);
  const oodSet = makeSplit(presetSplit(preset, 'ood'), seed, rl.evalEpisodes);
  const evalBoth = async () => ({
    inDomain: await evaluate(model, tok, evalSet, preset, { probe: opts.probe }),
    ood: await evaluate(model, tok, oodSet, preset, { probe: opts.probe }),
  });
  const evalBefore = resume?.evalBefore ?? hooks.evalBefore ?? (await evalBoth());
  const ref = loss.klCoef > 0 || estimator.needsRefLogp ? frozenCopy(hooks.reference ?? model) : null;
  const critic = estimator.needsValues ? new Critic(model, rl.lr, opts.baselines.ppo, seed + 3000) : null;
  const opt = new E.AdamW(model.parameters(), { lr: rl.lr, weightDecay: 0, betas: [0.9, 0.999] });
  const stream = episodeStream(presetSplit(preset, 'train'), seed + 1000);
  const gen = new E.Generator(seed + 2000);
  const shuffle = new E.Generator(seed + 4000); // minibatch order: its own stream, so sampling sees the same draws
  const steps: StepMetrics[] = [...(resume?.steps ?? [])];
  let policyTokens = resume?.policyTokens ?? 0;
  let lastEval = resume?.lastEval ?? null;
  if (resume) {
    if (!!resume.critic !== !!critic)
      throw new Error(
        `trainRL: the saved state ${resume.critic ? 'has' : 'lacks'} a critic, ${opts.algo} ` +
          `${critic ? 'needs' : 'has'} none`,
      );
    opt.loadState(resume.optimizer);
    if (critic && resume.critic) critic.loadState(resume.critic);
    gen.setState(resume.gen);
    shuffle.setState(resume.shuffle);
    for (let i = 0; i < resume.step * rl.questions; i++) stream.next(); // the questions the run has seen
  }
  const bar = hooks.progress
    ? new cliProgress.SingleBar(
        { format: `RL ${opts.algo} |{bar}| {value}/{total} steps  F1 {f1}  eval {eval}`, hideCursor: true },
        cliProgress.Presets.shades_classic,
      )
    : null;
  bar?.start(rl.steps, resume?.step ?? 0, { f1: '-', eval: (lastEval?.result ?? evalBefore).inDomain.f1.toFixed(3) });
  try {
    for (
      let step = resume?.step ?? 0;
      step < rl.steps && (rl.tokenBudget === 0 || policyTokens < rl.tokenBudget);
      step++
    ) {
      // Rollouts: G per question, p_t scored at the temperature the loss trains.
      const specs = Array.from({ length: rl.questions }, () => stream.next().value as EpisodeSpec);
      const eps = specs.flatMap((s) =>
        Array.from({ length: rl.group }, () => Episode.fromSpec(s, { maxTurns: rl.maxTurns })),
      );
      const tasks = eps.map((ep) => ({ prompt: ep.prompt, gold: ep.gold, step: (t: string) => ep.step(t) }));
      const timings = { generateMs: 0, scoreMs: 0 };
      const t0 = performance.now();
      const sampling = { temperature: rl.temperature };
      const rolloutOpts = {
        maxTurns: rl.maxTurns,
        maxTurnTokens: rl.maxTurnTokens,
        sampling,
        probe: opts.probe,
        scoreTemperature: rl.temperature,
      };
      const rollouts = await collectRollouts(model, tok, tasks, rolloutOpts, gen, timings);
      const t1 = performance.now();
      // Rewards and advantages.
      const packed = packRollouts(rollouts, null, tok.pad);
      policyTokens += packed.policyTokens;
      const t2 = performance.now();
      const byGroup = <T>(xs: readonly T[]) =>
        Array.from({ length: rl.questions }, (_, q) => xs.slice(q * rl.group, (q + 1) * rl.group));
      const chunk = Math.ceil(packed.B / rl.miniBatches);
      const batch: StepBatch = {
        groups: byGroup(rollouts),
        outcomes: byGroup(rollouts.map((r) => outcomeReward(r, opts))),
        packed,
        refLogp: estimator.needsRefLogp ? await tokenLogProbs(ref!, packed, chunk, rl.temperature) : undefined,
        logp: estimator.needsRefLogp ? await tokenLogProbs(model, packed, chunk, rl.temperature) : undefined,
        values: critic ? await critic.values(model, packed, chunk) : undefined,
      };
      const est = estimator.estimate(batch);
      packed.advantages.set(est.advantages);
      if (est.returns) {
        packed.returns = est.returns;
        packed.oldValues = batch.values;
      }
      // The update, on minibatches of whole groups.
      const minibatches = groupMinibatches(packed.B, rl.group, rl.miniBatches, shuffle);
      const stats = await updatePolicy(model, ref, opt, packed, {
        loss,
        lossFn: algo.lossFn,
        critic: critic ?? undefined,
        minibatches,
        maxGradNorm: rl.maxGradNorm,
        temperature: rl.temperature,
      });
      const t3 = performance.now();
      // Metrics.
      const m: StepMetrics = {
        ...measureStep(batch, est.normalizedTurnRewards, eps, {
          algo: opts.algo,
          opts,
          seed,
          step,
          groupSize: rl.group,
        }),
        policyTokens,
        learningRate: opt.lr,
        ...stats,
        ms: { rollout: t1 - t0 - timings.scoreMs, igScoring: timings.scoreMs, update: t3 - t2 },
      };
      if ((step + 1) % rl.evalEvery === 0) {
        const e = await evalBoth();
        m.evalF1 = e.inDomain.f1;
        m.oodF1 = e.ood.f1;
        lastEval = { step, result: e };
      }
      steps.push(m);
      await hooks.onStep?.(m);
      if (hooks.checkpoint && (step + 1) % hooks.checkpoint.every === 0) {
        await hooks.checkpoint.save({
          step: step + 1,
          policyTokens,
          steps: [...steps],
          evalBefore,
          lastEval,
          gen: gen.getState(),
          shuffle: shuffle.getState(),
          optimizer: await opt.saveState(),
          ...(critic ? { critic: await critic.saveState() } : {}),
        });
      }
      bar?.update(step + 1, { f1: m.trainF1.toFixed(3), eval: m.evalF1?.toFixed(3) ?? '-' });
    }
  } finally {
    bar?.stop();
    opt.dispose();
    critic?.dispose();
    ref?.dispose();
  }
  // The last step's evaluation is the final one when it had one: the model has not changed since.
  const evalAfter = lastEval?.step === steps.length - 1 ? lastEval.result : await evalBoth();
  return { steps, evalBefore, evalAfter };
}

/** A step's measurements of its rollouts, rewards and advantages (metrics.ts's functions, once each). */
function measureStep(
  batch: StepBatch,
  normalized: number[][] | undefined,
  eps: readonly Episode[],
  at: { algo: Algo; opts: RLOptions; seed: number; step: number; groupSize: number },
): Omit<StepMetrics, 'policyTokens' | 'learningRate' | keyof UpdateStats | 'ms'> {
  const rollouts = batch.groups.flat();
  const { packed } = batch;
  const gains = rollouts.map(rolloutGains);
  const fact = igByAnswerFact(
    rollouts,
    eps.map((ep) => ep.answerFactTurn),
  );
  const ends: Record<string, number> = {};
  for (const r of rollouts) ends[r.endReason] = (ends[r.endReason] ?? 0) + 1;
  const algo = algorithm(at.algo);
  const returns = batch.groups.flatMap((g, q) =>
    g.map((r, i) => algo.turnRewards(r, batch.outcomes[q][i], at.opts).reduce((s, x) => s + x, 0)),
  );
  const onPolicy = Array.from(packed.advantages).filter((_, i) => packed.mask[i] === 1);
  const lengths = rollouts.map((r) => r.turns.reduce((n, t) => n + t.tokens.length, 0));
  return {
    step: at.step,
    algo: at.algo,
    seed: at.seed,
    timestamp: new Date().toISOString(),
    trainF1: mean(rollouts.map((r) => r.outcome)),
    collapsedGroups: collapsedGroups(batch.outcomes),
    zeroAdvantageGroups: zeroAdvantageGroups(packed, packed.advantages, at.groupSize) / batch.groups.length,
    rewardMean: mean(returns),
    rewardStd: std(returns),
    advantages: { mean: mean(onPolicy), std: std(onPolicy), min: Math.min(...onPolicy), max: Math.max(...onPolicy) },
    responseLength: { mean: mean(lengths), min: Math.min(...lengths), max: Math.max(...lengths) },
    turnsPerEpisode: mean(rollouts.map((r) => r.turns.length)),
    meanIG: meanOrNull(gains.flat()),
    igShare: normalized ? igShare(normalized, rollouts) : null,
    igF1Corr: pearson(
      gains.map((g) => g.reduce((s, x) => s + x, 0)),
      rollouts.map((r) => r.outcome),
    ),
    igFound: fact.found,
    igNotFound: fact.notFound,
    igFactTurn: fact.factTurn,
    igOtherTurns: fact.otherTurns,
    gtEntropyReduction: gtEntropyReduction(rollouts),
    ends,
  };
}

function mean(xs: readonly number[]): number {
  return meanOrNull(xs) ?? 0;
}

/** Population standard deviation; 0 for no values. */
function std(xs: readonly number[]): number {
  const m = mean(xs);
  return xs.length ? Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / xs.length) : 0;
}

// ---------------------------------------------------------------------------------------------------
// The whole job, with its files.

export interface TrainJob {
  preset: Preset;
  rl: RLOptions;
  seed: number;
  device: E.Device;
  outDir: string;
  progress?: boolean;
  log?: (line: string) => void;
  /** The resolved configuration (config.ts), written into the run directory as config.json. */
  config?: RunConfig;
  /** Start RL from this checkpoint instead of a warm-up. */
  initFrom?: string;
  /** Continue the run in outDir from its last saved step (checkpoint.safetensors). */
  resume?: boolean;
  /** Replace the run in outDir; without it (or resume) a directory that holds a run is refused. */
  overwrite?: boolean;
  /** Save the run's state every n RL steps, for resume (0: never). */
  checkpointEvery?: number;
  /**
   * A Hugging Face model directory (Llama or Qwen2: config.json, weights, tokenizer.json) to train instead
   * of the project's decoder; its warm start and result are saved in HF's layout (warmstart/, model/).
   */
  model?: string;
  /** With `model`: supervised warm-up steps before RL (0 by default: the paper trains the model as it is). */
  warmupSteps?: number;
}

/**
 * run.json: the identity of the run a directory holds (a random id, its seed, algorithm and preset),
 * written before any other file. Every checkpoint of the run carries the id in its metadata (`run`), and
 * a resume refuses a checkpoint of another run: a directory never holds two runs' files.
 */
export const RUN_MARKER = 'run.json';

const runMarkerSchema = z.strictObject({
  id: z.string().min(1),
  started: z.string(),
  seed: z.number().int(),
  algo: z.string(),
  preset: z.string(),
});
export type RunMarker = z.infer<typeof runMarkerSchema>;

/** Reads and checks a directory's run.json; the error names the file. */
export async function readRunMarker(dir: string): Promise<RunMarker> {
  const file = join(dir, RUN_MARKER);
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new Error(`${file}: ${(e as Error).message}`, { cause: e });
  }
  const r = runMarkerSchema.safeParse(raw);
  if (!r.success) throw new Error(`${file}: ${r.error.issues[0].path.join('.')}: ${r.error.issues[0].message}`);
  return r.data;
}

/** Refuses a checkpoint that another run wrote (its metadata's run id is not the directory's). */
function checkSameRun(file: string, metadata: Record<string, string>, marker: RunMarker): void {
  if (metadata.run !== marker.id)
    throw new Error(
      `${file} belongs to run ${metadata.run ?? '(none)'}, not to this directory's run ${marker.id} ` +
        `(${RUN_MARKER}): refusing to mix two runs' files`,
    );
}

/** The files of a run directory; `--overwrite` removes these and nothing else. */
export const RUN_FILES = [
  RUN_MARKER,
  'config.json',
  'metrics.jsonl',
  'warmstart.safetensors',
  'checkpoint.safetensors',
  'model.safetensors',
  // A --model run's warm start and result, each a directory in HF's layout.
  'warmstart',
  'model',
  'curves.svg',
  'report.md',
];

/**
 * Checks a run directory before any work: a path that is a file is refused, a directory that holds a run
 * is refused unless the run is to be resumed (then its state must be there) or replaced.
 */
export async function prepareRunDir(dir: string, opts: { resume?: boolean; overwrite?: boolean } = {}): Promise<void> {
  if (opts.resume && opts.overwrite) throw new Error('--resume and --overwrite exclude each other');
  const info = await stat(dir).catch(() => null);
  if (info && !info.isDirectory()) throw new Error(`${dir}: the output path is a file, not a directory`);
  const present = info ? RUN_FILES.filter((f) => existsSync(join(dir, f))) : [];
  if (opts.resume) {
    for (const f of [RUN_MARKER, 'config.json', 'warmstart.safetensors', 'checkpoint.safetensors']) {
      if (present.includes(f)) continue;
      const why =
        f === 'checkpoint.safetensors'
          ? ' (the run stopped before its first saved step; start it again ' + 'with --overwrite)'
          : '';
      throw new Error(`${dir}: cannot resume: ${f} is missing${why}`);
    }
    return removeKilledWrites(dir);
  }
  if (present.length > 0 && !opts.overwrite)
    throw new Error(
      `${dir} holds a run (${present.join(', ')}); pass --overwrite to replace it, or --resume to continue it`,
    );
  // The marker goes last: a replacement killed half-way leaves part of one run, still marked as its own.
  for (const f of [...present.filter((f) => f !== RUN_MARKER), ...present.filter((f) => f === RUN_MARKER)])
    await rm(join(dir, f), { recursive: true });
  await mkdir(dir, { recursive: true });
  await removeKilledWrites(dir);
}

/**
 * Removes what a killed run left half-written: the temporary files of its atomic writes (write-file-atomic
 * names them FILE.NUMBER) of the run's own files. The run that owns the directory now is this one.
 */
async function removeKilledWrites(dir: string): Promise<void> {
  const names = new Set(RUN_FILES);
  for (const f of await readdir(dir)) {
    const m = /^(.+)\.\d+$/.exec(f);
    if (m && names.has(m[1])) await rm(join(dir, f), { force: true });
  }
}

/** A metrics.jsonl line of an RL step, in TRL's and verl's vocabulary where they have a name (README.md). */
export function metricsLine(m: StepMetrics): Record<string, unknown> {
  return {
    phase: 'rl',
    step: m.step,
    timestamp: m.timestamp,
    algo: m.algo,
    seed: m.seed,
    num_tokens: m.policyTokens,
    reward: m.rewardMean,
    reward_std: m.rewardStd,
    frac_reward_zero_std: m.collapsedGroups,
    frac_advantage_zero: m.zeroAdvantageGroups,
    'advantages/mean': m.advantages.mean,
    'advantages/std': m.advantages.std,
    'advantages/min': m.advantages.min,
    'advantages/max': m.advantages.max,
    'response_length/mean': m.responseLength.mean,
    'response_length/min': m.responseLength.min,
    'response_length/max': m.responseLength.max,
    'turns/mean': m.turnsPerEpisode,
    'f1/train': m.trainF1,
    loss: m.loss,
    kl: m.kl,
    entropy: m.entropy,
    grad_norm: m.gradNorm,
    learning_rate: m.learningRate,
    clip_ratio: m.clipFrac,
    'clip_ratio/minibatches': m.clipFracs,
    ...(m.valueLoss !== undefined ? { value_loss: m.valueLoss } : {}),
    'ig/mean': m.meanIG,
    'ig/share': m.igShare,
    'ig/f1_corr': m.igF1Corr,
    'ig/found': m.igFound,
    'ig/not_found': m.igNotFound,
    'ig/fact_turn': m.igFactTurn,
    'ig/other_turns': m.igOtherTurns,
    gt_entropy_reduction: m.gtEntropyReduction,
    ...Object.fromEntries(Object.entries(m.ends).map(([k, v]) => [`ends/${k}`, v])),
    'timing_s/rollout': m.ms.rollout / 1000,
    'timing_s/ig_scoring': m.ms.igScoring / 1000,
    'timing_s/update': m.ms.update / 1000,
    ...(m.evalF1 !== undefined ? { 'eval/f1': m.evalF1, 'eval/ood_f1': m.oodF1 } : {}),
  };
}

/** A metrics.jsonl line of a warm-up step. */
const warmupLine = (step: number, loss: number, lr: number) => ({
  phase: 'warmup',
  step,
  timestamp: new Date().toISOString(),
  loss,
  learning_rate: lr,
});

/** The warm-up lines of a metrics.jsonl (a run being resumed), a cut-off last line left out. */
async function warmupLines(path: string): Promise<Record<string, unknown>[]> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.split('\n').flatMap((l) => {
    try {
      const x = JSON.parse(l) as Record<string, unknown>;
      return x.phase === 'warmup' ? [x] : [];
    } catch {
      return [];
    }
  });
}

const jsonl = (lines: readonly unknown[]) => lines.map((l) => JSON.stringify(l) + '\n').join('');

export async function runTraining(job: TrainJob): Promise<RLResult & { warmupLosses: number[] }> {
  const log = job.log ?? (() => {});
  if (job.model !== undefined && (job.resume || job.initFrom !== undefined || (job.checkpointEvery ?? 0) > 0))
    throw new Error(
      '--model: --resume, --init-from and --checkpoint-every are not supported yet with a Hugging Face model ' +
        '(a run state is saved for the project\u2019s decoder only)',
    );
  const dir = job.outDir;
  await prepareRunDir(dir, job);
  const path = (f: string) => join(dir, f);
  const metricsPath = path('metrics.jsonl');
  // metrics.jsonl is rewritten whole, atomically: a kill never leaves half a line. After every RL step;
  // during the warm-up every 50 steps and at its end (a rewrite a step would write the file quadratically).
  const lines: unknown[] = [];
  const writeMetrics = () => writeFileAtomic(metricsPath, jsonl(lines));
  const logLine = (line: unknown) => {
    lines.push(line);
    return writeMetrics();
  };
  // The run's identity goes first: every later file of the directory is this run's.
  const marker: RunMarker = job.resume
    ? await readRunMarker(dir)
    : {
        id: randomUUID(),
        started: new Date().toISOString(),
        seed: job.seed,
        algo: job.rl.algo,
        preset: job.preset.name,
      };
  if (!job.resume) {
    await writeFileAtomic(path(RUN_MARKER), JSON.stringify(marker, null, 2) + '\n');
    if (job.config) await writeFileAtomic(path('config.json'), JSON.stringify(job.config, null, 2) + '\n');
  }
  const t0 = performance.now();
  let model: CausalLM;
  let tok: AgentTokenizer;
  let warm: CausalLM | undefined;
  let state: RLState | undefined;
  let warmup: Record<string, unknown>[];
  if (job.resume) {
    // The reference is the warm start; the policy and everything else come from the last saved step.
    const warmFile = await loadCheckpoint(path('warmstart.safetensors'), { device: job.device });
    warm = warmFile.model;
    let metadata: Record<string, string>;
    ({ model, tok, state, metadata } = await loadRunState(path('checkpoint.safetensors'), job.device));
    try {
      checkSameRun(path('warmstart.safetensors'), warmFile.metadata, marker);
      checkSameRun(path('checkpoint.safetensors'), metadata, marker);
    } catch (e) {
      model.dispose();
      warm.dispose();
      throw e;
    }
    warmup = await warmupLines(metricsPath);
    lines.push(...warmup, ...state.steps.map(metricsLine));
    await writeFileAtomic(metricsPath, jsonl(lines));
    log(`resuming ${dir} at RL step ${state.step} of ${job.preset.rl.steps}`);
  } else {
    await writeFileAtomic(metricsPath, '');
    if (job.model !== undefined) {
      const { HFDecoder, HFTokenizer } = await import('../model/index.js');
      const hf = await HFDecoder.load(job.model, { device: job.device, blockSize: job.preset.model.blockSize });
      [model, tok, warmup] = [hf, await HFTokenizer.fromDir(job.model), []];
      log(
        `model: ${job.model} (${hf.cfg.modelType}, ${hf.numParams()} parameters, context ${hf.blockSize}); ` +
          `${job.warmupSteps ? `${job.warmupSteps} warm-up steps` : 'no warm-up'} (${job.device})`,
      );
      if (job.warmupSteps) {
        const losses = await supervisedWarmup(
          model,
          tok,
          job.preset,
          job.seed,
          job.warmupSteps,
          job.progress,
          log,
          (step, loss, lr) => {
            const line = warmupLine(step, loss, lr);
            warmup.push(line);
            lines.push(line);
          },
        );
        await writeMetrics();
        log(`warm-up loss ${fmt(losses[0])} -> ${fmt(losses.at(-1)!)}`);
      }
    } else if (job.initFrom) {
      const loaded = await loadCheckpoint(job.initFrom, { device: job.device });
      if (!loaded.tokenizer)
        throw new Error(`checkpoint ${job.initFrom}: no tokenizer in its metadata (was it written by igpo?)`);
      [model, tok, warmup] = [loaded.model, loaded.tokenizer, []];
      log(`warm start: ${job.initFrom} (no warm-up)`);
    } else {
      log(`warm-up: ${job.preset.warmup.steps} supervised steps on expert demonstrations (${job.device})`);
      warmup = [];
      let written = Promise.resolve();
      const onStep = (step: number, loss: number, lr: number) => {
        const line = warmupLine(step, loss, lr);
        warmup.push(line);
        lines.push(line);
        if ((step + 1) % 50 === 0) written = written.then(writeMetrics);
      };
      ({ model, tok } = await warmStart(job.preset, job.seed, job.device, job.progress, log, onStep));
      await written;
      await writeMetrics();
      log(
        `warm-up loss ${fmt(warmup[0]?.loss as number)} -> ${fmt(warmup.at(-1)?.loss as number)} in ` +
          `${((performance.now() - t0) / 1000).toFixed(0)} s; ${model.numParams()} parameters`,
      );
    }
    if (job.model !== undefined) await saveHFRun(model, job.model, path('warmstart'));
    else
      await saveCheckpoint(path('warmstart.safetensors'), model as GPT, {
        tokenizer: tok as Tokenizer,
        metadata: { run: marker.id, seed: String(job.seed), preset: job.preset.name },
      });
  }
  const losses = warmup.map((l) => l.loss as number);
  const runMetadata = {
    run: marker.id,
    algo: job.rl.algo,
    seed: String(job.seed),
    preset: job.preset.name,
    probe: JSON.stringify(job.rl.probe),
  };
  try {
    const every = job.checkpointEvery ?? 0;
    const res = await trainRL(model, tok, job.preset, job.rl, job.seed, {
      progress: job.progress,
      resume: state,
      reference: warm,
      onStep: async (m) => {
        await logLine(metricsLine(m));
        if (!job.progress)
          log(
            `step ${m.step}: train F1 ${m.trainF1.toFixed(3)}, collapsed groups ${m.collapsedGroups.toFixed(2)}, IG ` +
              `share ${fmt(m.igShare, 2)}, mean IG ${fmt(m.meanIG, 4)}, KL ` +
              `${m.kl.toExponential(2)}${m.evalF1 !== undefined ? `, eval F1 ${m.evalF1.toFixed(3)}` : ''}`,
          );
      },
      ...(every > 0
        ? {
            checkpoint: {
              every,
              save: (s: RLState) =>
                saveRunState(path('checkpoint.safetensors'), model as GPT, tok as Tokenizer, s, runMetadata),
            },
          }
        : {}),
    });
    if (job.model !== undefined) await saveHFRun(model, job.model, path('model'));
    else
      await saveCheckpoint(path('model.safetensors'), model as GPT, {
        tokenizer: tok as Tokenizer,
        metadata: runMetadata,
      });
    await writeRunCurves(path('curves.svg'), res, losses, job.rl.algo);
    await writeFileAtomic(path('report.md'), report(job, losses, res, (performance.now() - t0) / 1000));
    log(
      `eval F1 ${res.evalBefore.inDomain.f1.toFixed(3)} -> ${res.evalAfter.inDomain.f1.toFixed(3)} (in-domain), ` +
        `${res.evalBefore.ood.f1.toFixed(3)} -> ${res.evalAfter.ood.f1.toFixed(3)} (out-of-domain); wrote ${dir}`,
    );
    return { ...res, warmupLosses: losses };
  } finally {
    model.dispose();
    warm?.dispose();
  }
}

/** A --model run's model in `dir` in HF's layout (config.json, model.safetensors), with its tokenizer files. */
async function saveHFRun(model: CausalLM, source: string, dir: string): Promise<void> {
  const { HFDecoder, copyTokenizerFiles } = await import('../model/index.js');
  if (!(model instanceof HFDecoder)) throw new Error('saveHFRun: not a Hugging Face decoder');
  await model.save(dir);
  await copyTokenizerFiles(source, dir);
}

/**
 * curves.svg: F1 (the warm start's evaluation at step 0), advantage collapse, IG, the entropy reduction,
 * the loss, the KL, the entropy, and the warm-up's loss; every panel with its own legend and axis titles.
 */
async function writeRunCurves(
  file: string,
  res: RLResult,
  warmupLosses: readonly number[],
  algo: string,
): Promise<void> {
  const { writeCurves } = await import('./plot.js');
  const x = 'RL steps done (0: the warm start)';
  // Step k's rollouts were sampled after k updates; its evaluation came after k + 1.
  const line = (series: string, f: (m: StepMetrics) => number | null | undefined, after = 0) =>
    res.steps.flatMap((m) => (f(m) === undefined || f(m) === null ? [] : [{ x: m.step + after, y: f(m)!, series }]));
  const panel = (title: string, y: string, points: { x: number; y: number; series: string }[]) => ({
    title,
    x,
    y,
    points,
  });
  await writeCurves(file, [
    panel('F1', 'F1', [
      ...line('train (sampled)', (m) => m.trainF1),
      { x: 0, y: res.evalBefore.inDomain.f1, series: 'eval (greedy)' },
      ...line('eval (greedy)', (m) => m.evalF1, 1),
      { x: 0, y: res.evalBefore.ood.f1, series: 'out-of-domain (greedy)' },
      ...line('out-of-domain (greedy)', (m) => m.oodF1, 1),
    ]),
    panel('Advantage collapse', 'fraction of groups', [
      ...line('outcomes all equal', (m) => m.collapsedGroups),
      ...line('advantages all 0', (m) => m.zeroAdvantageGroups),
    ]),
    panel('Information gain', 'per search turn / share', [
      ...line('mean IG', (m) => m.meanIG),
      ...line('IG share of the normalised rewards', (m) => m.igShare),
    ]),
    panel(
      'Ground-truth entropy reduction',
      'log p_last - log p_0 (nats)',
      line(algo, (m) => m.gtEntropyReduction),
    ),
    panel(
      'Policy loss',
      'loss',
      line(algo, (m) => m.loss),
    ),
    panel(
      'KL to the reference (k3)',
      'nats per token',
      line(algo, (m) => m.kl),
    ),
    panel(
      'Policy entropy',
      'nats per token',
      line(algo, (m) => m.entropy),
    ),
    {
      title: 'Warm-up loss',
      x: 'warm-up step',
      y: 'cross-entropy (nats per token)',
      points: warmupLosses.map((y, i) => ({ x: i, y, series: 'warm-up' })),
    },
  ]);
}

/** The RL options of a run in one line, for its report. */
function rlDescription(rl: RLOptions): string {
  const { name, prefix, scored } = rl.probe;
  const probe = `probe \`${name}\`: ${JSON.stringify(prefix)} then ${JSON.stringify(scored)} scored`;
  const norm = rl.algo === 'grpo' ? 'separate (outcome only)' : rl.norm;
  const extras = [
    rl.logSpace ? 'IG in log space' : '',
    rl.formatPenalty !== null ? `format penalty ${rl.formatPenalty}` : '',
  ];
  return [`\`${rl.algo}\``, `normalisation ${norm}`, `gamma ${rl.gamma}`, ...extras.filter(Boolean), probe].join('; ');
}

function report(job: TrainJob, losses: number[], res: RLResult, seconds: number): string {
  const last = res.steps[res.steps.length - 1];
  const ms = res.steps.reduce(
    (a, m) => ({ rollout: a.rollout + m.ms.rollout, ig: a.ig + m.ms.igScoring, update: a.update + m.ms.update }),
    { rollout: 0, ig: 0, update: 0 },
  );
  const rl = job.preset.rl;
  const [before, after] = [res.evalBefore, res.evalAfter];
  const avg = (f: (m: StepMetrics) => number | null, digits = 3) => avgOf(res.steps, f, digits);
  const s = (x: number) => (x / 1000).toFixed(1);
  return [
    `# ${algorithm(job.rl.algo).display} training report`,
    '',
    `- algorithm: ${algorithm(job.rl.algo).display} (${rlDescription(job.rl)})`,
    `- preset: ${job.preset.name}, seed ${job.seed}, device ${job.device}, wall time ${seconds.toFixed(0)} s`,
    `- model: ${JSON.stringify(job.preset.model)}`,
    `- warm-up: ${losses.length} steps, loss ${losses[0]?.toFixed(3)} -> ${losses[losses.length - 1]?.toFixed(3)}`,
    `- RL: ${res.steps.length} steps x ${rl.questions} questions x ${rl.group} rollouts, ` +
      `${last?.policyTokens ?? 0} policy tokens`,
    '',
    '| eval (greedy) | before RL | after RL |',
    '| --- | --- | --- |',
    `| in-domain F1 (${before.inDomain.episodes} episodes) | ${before.inDomain.f1.toFixed(3)} | ` +
      `${after.inDomain.f1.toFixed(3)} |`,
    `| out-of-domain F1 (${before.ood.episodes} episodes) | ${before.ood.f1.toFixed(3)} | ${after.ood.f1.toFixed(3)} |`,
    hopRows(before.inDomain, after.inDomain) +
      `| episode ends, in-domain | ${fmtEnds(before.inDomain.ends)} | ${fmtEnds(after.inDomain.ends)} |`,
    '',
    `Mean over RL steps: advantage collapse (groups whose outcomes are all equal) ${avg((m) => m.collapsedGroups)}, ` +
      `groups with all advantages 0 ${avg((m) => m.zeroAdvantageGroups)}, ` +
      `IG share of the normalised rewards ${avg((m) => m.igShare)}, corr(summed IG, F1) ${avg((m) => m.igF1Corr)}; ` +
      `summed IG of rollouts shown the answer's fact ${avg((m) => m.igFound, 4)} ` +
      `against ${avg((m) => m.igNotFound, 4)} for those that searched without it.`,
    '',
    `Time per phase over all RL steps: rollout ${s(ms.rollout)} s, IG scoring ${s(ms.ig)} s, update ${s(ms.update)} s.`,
    '',
    'Curves: curves.svg. Per-step metrics: metrics.jsonl. Checkpoint: model.safetensors.',
    '',
  ].join('\n');
}

/** In-domain F1 and searches per episode by the question's hops, before and after. */
function hopRows(before: EvalResult, after: EvalResult): string {
  const hops = [...new Set([...Object.keys(before.byHops), ...Object.keys(after.byHops)].map(Number))].sort(
    (a, b) => a - b,
  );
  const cell = (r: EvalResult, h: number) =>
    r.byHops[h] ? `F1 ${r.byHops[h].meanReward.toFixed(3)}, ${r.byHops[h].meanSearches.toFixed(2)} searches` : '-';
  return hops
    .map(
      (h) =>
        `| in-domain, ${h}-hop questions (${before.byHops[h]?.episodes ?? 0} episodes) | ${cell(before, h)} | ` +
        `${cell(after, h)} |\n`,
    )
    .join('');
}

function fmtEnds(ends: Partial<Record<string, number>>): string {
  return Object.entries(ends)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

/** A number with `digits` decimals, or '-' for null. */
function fmt(x: number | null | undefined, digits = 3): string {
  return x === null || x === undefined ? '-' : x.toFixed(digits);
}

/** The mean over steps of a per-step figure (its null steps left out), formatted. */
function avgOf(steps: readonly StepMetrics[], f: (m: StepMetrics) => number | null, digits = 3): string {
  return fmt(meanOrNull(steps.flatMap((m) => (f(m) === null ? [] : [f(m)!]))), digits);
}

export interface EvalJob {
  episodes: number;
  seed: number;
  device: E.Device;
  /** The probe for the dump and the context reserve; the checkpoint's own (or the default) when absent. */
  probe?: Probe;
  /** Write every episode as a JSON line (dumpLine) with p_t scored as training scores it. */
  dump?: string;
  /** `path` is a Hugging Face model directory (Llama or Qwen2), evaluated with this preset's episodes. */
  hf?: { preset: Preset };
}

/** `igpo eval`: a checkpoint's greedy F1 on `episodes` held-out and out-of-domain episodes. */
export async function runEval(path: string, opts: EvalJob): Promise<{ inDomain: EvalResult; ood: EvalResult }> {
  const { model, tokenizer, metadata } = await loadForEval(path, opts);
  try {
    if (!tokenizer) throw new Error(`checkpoint ${path}: no tokenizer in its metadata (was it written by igpo train?)`);
    const preset =
      opts.hf?.preset ?? PRESETS[(metadata.preset as keyof typeof PRESETS) ?? 'default'] ?? PRESETS.default;
    const probe = opts.probe ?? (metadata.probe ? checkpointProbe(path, metadata.probe) : THINK_PROBE);
    const lines: string[] = [];
    const run = (split: 'eval' | 'ood') =>
      evaluate(model, tokenizer, makeSplit(presetSplit(preset, split), opts.seed, opts.episodes), preset, {
        probe,
        ...(opts.dump
          ? {
              scoreTemperature: preset.rl.temperature,
              onEpisode: (r, spec) =>
                lines.push(
                  JSON.stringify(
                    dumpLine(r, {
                      split,
                      gold: spec.question.gold,
                      temperature: preset.rl.temperature,
                      probeName: probe.name,
                    }),
                  ),
                ),
            }
          : {}),
      });
    const res = { inDomain: await run('eval'), ood: await run('ood') };
    if (opts.dump) await writeFileAtomic(opts.dump, lines.map((l) => l + '\n').join(''));
    return res;
  } finally {
    model.dispose();
  }
}

/** The model and tokenizer `igpo eval` reads: an igpo checkpoint file, or an HF model directory. */
async function loadForEval(
  path: string,
  opts: EvalJob,
): Promise<{ model: CausalLM; tokenizer?: AgentTokenizer; metadata: Record<string, string> }> {
  if (!opts.hf) return (await import('../model/checkpoint.js')).loadCheckpoint(path, { device: opts.device });
  const { HFDecoder, HFTokenizer } = await import('../model/index.js');
  const tokenizer = await HFTokenizer.fromDir(path);
  const model = await HFDecoder.load(path, { device: opts.device, blockSize: opts.hf.preset.model.blockSize });
  return { model, tokenizer, metadata: {} };
}

/** The probe a checkpoint's metadata names, checked. */
function checkpointProbe(path: string, json: string): Probe {
  const p = JSON.parse(json) as Partial<Probe>;
  if (
    typeof p?.name !== 'string' ||
    typeof p.prefix !== 'string' ||
    typeof p.scored !== 'string' ||
    !p.scored.includes('{gold}')
  )
    throw new Error(`checkpoint ${path}: __metadata__.probe is not a probe: ${json}`);
  return p as Probe;
}
