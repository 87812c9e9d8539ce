// The IGPO training job: a supervised warm-up on the scripted expert's demonstrations, then RL with G
// rollouts per question, turn rewards (IG and/or F1), group-normalised turn advantages and the clipped
// surrogate loss against a frozen reference; the paper's baselines (baselines.ts) run on the same loop.
// Writes metrics.jsonl, the checkpoint, curves and report.md.

import cliProgress from 'cli-progress';
import { mkdir, writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as E from '../engine/index.js';
import { saveCheckpoint } from '../model/checkpoint.js';
import { GPT, type GPTConfig } from '../model/gpt.js';
import { defaultTokenizer, type Tokenizer } from '../model/tokenizer.js';
import { lengthBuckets, trainSupervised, type Example } from '../model/train.js';
import { groupTurnAdvantages } from './advantage.js';
import { Episode, episodeStream, makeSplit, summarizeEpisodes, type EndReason, type EpisodeSpec, type EpisodeSummary } from './env.js';
import { expertTurns } from './expert.js';
import { baseline, defaultBaselineOptions, isBaseline, lossOptionsFor, turnLevel, zeroAdvantageGroups, type AdvantageEstimator, type BaselineOptions, type StepBatch } from './baselines.js';
import { defaultLossOptions, type PolicyLossFn, type PolicyLossOptions } from './loss.js';
import { collectRollouts, turnRewards, type Algo, type Rollout } from './rollout.js';
import { frozenCopy, packRollouts, tokenLogProbs, updatePolicy } from './update.js';
import { Critic } from './value.js';
import { PRESETS, type Preset } from './presets.js';

export { PRESETS, type Preset } from './presets.js';

export interface RLOptions {
  algo: Algo;
  /** Turn-reward normalisation; 'joint' is the paper's. GRPO always uses 'separate' (see rlStep). */
  norm: 'joint' | 'separate';
  gamma: number;
  /** IG in log space (the authors' log_prob_diff option). */
  logSpace: boolean;
  loss: PolicyLossOptions;
  /** The baselines' own settings (baselines.ts, value.ts); IGPO's ablation ignores them. */
  baselines: BaselineOptions;
}

export const defaultRLOptions = (algo: Algo = 'igpo'): RLOptions => ({
  algo,
  norm: 'joint',
  gamma: 1,
  logSpace: false,
  loss: lossOptionsFor(algo, defaultLossOptions),
  baselines: defaultBaselineOptions,
});

// ---------------------------------------------------------------------------------------------------
// Warm-up.

/** The expert's demonstration of an episode as a training example: loss on the agent's turns only. */
export function demoExample(spec: EpisodeSpec, tok: Tokenizer, maxTurns: number, imperfect: number, gen: E.Generator, hasty = 0): Example {
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

/** Builds the model and trains it on expert demonstrations. */
export async function warmStart(preset: Preset, seed: number, device: E.Device, progress = false, log?: (line: string) => void): Promise<WarmStart> {
  const tok = defaultTokenizer();
  const cfg: GPTConfig = { vocabSize: tok.vocabSize, ropeBase: 10000, normEps: 1e-5, ...preset.model };
  const model = new GPT(cfg, { generator: new E.Generator(seed), device });
  const stream = episodeStream('train', seed);
  const gen = new E.Generator(seed + 1);
  const w = preset.warmup;
  const { losses, optimizer } = await trainSupervised(
    model,
    lengthBuckets(() => demoExample(stream.next().value as EpisodeSpec, tok, preset.rl.maxTurns, w.imperfect, gen, w.hasty), w.batchSize, gen),
    {
      ...w,
      weightDecay: 0.01,
      clip: 1,
      padId: tok.pad,
      progress,
      onStep: (step, loss) => {
        if (log && !progress && (step + 1) % 50 === 0) log(`warm-up step ${step + 1}/${w.steps}: loss ${loss.toFixed(4)}`);
      },
    },
  );
  optimizer.dispose();
  return { model, tok, losses };
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

/** Greedy decoding on fixed episodes, in batches; mean final reward (F1). */
export async function evaluate(model: GPT, tok: Tokenizer, specs: readonly EpisodeSpec[], preset: Preset, batch = 32): Promise<EvalResult> {
  const records = [];
  for (let i = 0; i < specs.length; i += batch) {
    const eps = specs.slice(i, i + batch).map((s) => Episode.fromSpec(s, { maxTurns: preset.rl.maxTurns }));
    const tasks = eps.map((ep) => ({ prompt: ep.prompt, gold: ep.gold, step: (t: string) => ep.step(t) }));
    await collectRollouts(model, tok, tasks, { maxTurns: preset.rl.maxTurns, maxTurnTokens: preset.rl.maxTurnTokens, sampling: { temperature: 0 }, scoreAnswers: false }, new E.Generator(0));
    records.push(...eps.map((ep) => ep.record()));
  }
  const s = summarizeEpisodes(records);
  return { f1: s.meanReward, episodes: s.episodes, ends: s.ends, meanSearches: s.meanSearches, byHops: s.byHops };
}

// ---------------------------------------------------------------------------------------------------
// RL.

export interface StepMetrics {
  step: number;
  algo: Algo;
  seed: number;
  trainF1: number;
  zeroAdvantageGroups: number;
  meanIG: number;
  /** Mean over rollouts of log p_last - log p_0: the drop in the ground truth's entropy (-log p). */
  gtEntropyReduction: number;
  policyTokens: number;
  loss: number;
  kl: number;
  clipFrac: number;
  entropy: number;
  gradNorm: number;
  /** PPO's value loss. */
  valueLoss?: number;
  ends: Record<string, number>;
  ms: { rollout: number; igScoring: number; update: number };
  evalF1?: number;
  oodF1?: number;
}

/** Rewards -> advantages for one group of rollouts of the same question (IGPO's ablation: igpo, grpo, ig). */
export function groupAdvantages(group: readonly Rollout[], opts: RLOptions): number[][] {
  const algo = opts.algo;
  if (isBaseline(algo)) throw new Error(`groupAdvantages: '${algo}' is a baseline; see baselines.ts`);
  const rewards = group.map((r) => turnRewards(r, algo, { logSpace: opts.logSpace }));
  // GRPO is outcome-only: with IG terms all zero, 'separate' normalisation gives every turn of a rollout
  // its z-scored outcome, which is GRPO's advantage; 'joint' would mix in the zeros.
  return groupTurnAdvantages(rewards, { gamma: opts.gamma, norm: opts.algo === 'grpo' ? 'separate' : opts.norm });
}

/** What an algorithm brings to the shared loop: its advantage estimator, and its policy loss if not the shared one. */
export function algorithmOf(opts: RLOptions): { estimator: AdvantageEstimator; lossFn?: PolicyLossFn } {
  return isBaseline(opts.algo) ? baseline(opts.algo, opts.baselines) : { estimator: turnLevel((g) => groupAdvantages(g, opts)) };
}

export interface RLResult {
  steps: StepMetrics[];
  evalBefore: { inDomain: EvalResult; ood: EvalResult };
  evalAfter: { inDomain: EvalResult; ood: EvalResult };
}

export interface RLHooks {
  onStep?: (m: StepMetrics) => void | Promise<void>;
  progress?: boolean;
  /** The warm-started model's evaluation, when the caller already has it (compare runs several algorithms from one). */
  evalBefore?: { inDomain: EvalResult; ood: EvalResult };
}

/** Runs RL from a warm-started model (modified in place). */
export async function trainRL(model: GPT, tok: Tokenizer, preset: Preset, opts: RLOptions, seed: number, hooks: RLHooks = {}): Promise<RLResult> {
  const rl = preset.rl;
  const evalSet = makeSplit('eval', seed, rl.evalEpisodes);
  const oodSet = makeSplit('ood', seed, rl.evalEpisodes);
  const evalBoth = async () => ({ inDomain: await evaluate(model, tok, evalSet, preset), ood: await evaluate(model, tok, oodSet, preset) });
  const evalBefore = hooks.evalBefore ?? (await evalBoth());
  const { estimator, lossFn } = algorithmOf(opts);
  const ref = opts.loss.klCoef > 0 || estimator.needsRefLogp ? frozenCopy(model) : null;
  const critic = estimator.needsValues ? new Critic(model, rl.lr, opts.baselines.ppo, seed + 3000) : null;
  const opt = new E.AdamW(model.parameters(), { lr: rl.lr, weightDecay: 0, betas: [0.9, 0.999] });
  const stream = episodeStream('train', seed + 1000);
  const gen = new E.Generator(seed + 2000);
  const steps: StepMetrics[] = [];
  let policyTokens = 0;
  let lastEval: { step: number; result: { inDomain: EvalResult; ood: EvalResult } } | null = null;
  const bar = hooks.progress ? new cliProgress.SingleBar({ format: `RL ${opts.algo} |{bar}| {value}/{total} steps  F1 {f1}  eval {eval}`, hideCursor: true }, cliProgress.Presets.shades_classic) : null;
  bar?.start(rl.steps, 0, { f1: '-', eval: evalBefore.inDomain.f1.toFixed(3) });
  try {
    for (let step = 0; step < rl.steps && (rl.tokenBudget === 0 || policyTokens < rl.tokenBudget); step++) {
      const specs = Array.from({ length: rl.questions }, () => stream.next().value as EpisodeSpec);
      const eps = specs.flatMap((s) => Array.from({ length: rl.group }, () => Episode.fromSpec(s, { maxTurns: rl.maxTurns })));
      const tasks = eps.map((ep) => ({ prompt: ep.prompt, gold: ep.gold, step: (t: string) => ep.step(t) }));
      const timings = { generateMs: 0, scoreMs: 0 };
      const t0 = performance.now();
      const rollouts = await collectRollouts(model, tok, tasks, { maxTurns: rl.maxTurns, maxTurnTokens: rl.maxTurnTokens, sampling: { temperature: rl.temperature }, scoreAnswers: true }, gen, timings);
      const t1 = performance.now();
      const packed = packRollouts(rollouts, null, tok.pad);
      policyTokens += packed.policyTokens;
      const t2 = performance.now();
      const chunk = Math.ceil(packed.B / rl.miniBatches);
      const batch: StepBatch = {
        groups: Array.from({ length: rl.questions }, (_, q) => rollouts.slice(q * rl.group, (q + 1) * rl.group)),
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
      const zeroGroups = zeroAdvantageGroups(packed, packed.advantages, rl.group);
      const stats = await updatePolicy(model, ref, opt, packed, { loss: opts.loss, lossFn, critic: critic ?? undefined, miniBatches: rl.miniBatches, clip: rl.clip, temperature: rl.temperature });
      const t3 = performance.now();
      const igs = rollouts.flatMap((r) => turnRewards(r, 'ig').filter((_, t) => r.turns[t].kind === 'search'));
      const scored = rollouts.filter((r) => r.probs.length >= 2);
      const ends: Record<string, number> = {};
      for (const r of rollouts) ends[r.endReason] = (ends[r.endReason] ?? 0) + 1;
      const m: StepMetrics = {
        step,
        algo: opts.algo,
        seed,
        trainF1: mean(rollouts.map((r) => r.outcome)),
        zeroAdvantageGroups: zeroGroups / rl.questions,
        meanIG: mean(igs),
        gtEntropyReduction: mean(scored.map((r) => Math.log(r.probs[r.probs.length - 1]) - Math.log(r.probs[0]))),
        policyTokens,
        ...stats,
        ends,
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

function mean(xs: readonly number[]): number {
  return xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : 0;
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
}

export async function runTraining(job: TrainJob): Promise<RLResult & { warmupLosses: number[] }> {
  const log = job.log ?? (() => {});
  await mkdir(job.outDir, { recursive: true });
  const metricsPath = join(job.outDir, 'metrics.jsonl');
  await writeFile(metricsPath, '');
  const t0 = performance.now();
  log(`warm-up: ${job.preset.warmup.steps} supervised steps on expert demonstrations (${job.device})`);
  const { model, tok, losses } = await warmStart(job.preset, job.seed, job.device, job.progress, log);
  log(`warm-up loss ${losses[0]?.toFixed(3)} -> ${losses[losses.length - 1]?.toFixed(3)} in ${((performance.now() - t0) / 1000).toFixed(0)} s; ${model.numParams()} parameters`);
  const res = await trainRL(model, tok, job.preset, job.rl, job.seed, {
    progress: job.progress,
    onStep: async (m) => {
      await appendFile(metricsPath, JSON.stringify(m) + '\n');
      if (!job.progress) log(`step ${m.step}: train F1 ${m.trainF1.toFixed(3)}, zero-adv groups ${m.zeroAdvantageGroups.toFixed(2)}, mean IG ${m.meanIG.toFixed(4)}, KL ${m.kl.toExponential(2)}${m.evalF1 !== undefined ? `, eval F1 ${m.evalF1.toFixed(3)}` : ''}`);
    },
  });
  await saveCheckpoint(join(job.outDir, 'model.safetensors'), model, { tokenizer: tok, metadata: { algo: job.rl.algo, seed: String(job.seed), preset: job.preset.name } });
  const { writeCurves } = await import('./plot.js');
  const series = (title: string, f: (m: StepMetrics) => number | undefined, name: string = job.rl.algo) => ({
    title,
    x: 'RL step',
    points: res.steps.flatMap((m) => (f(m) === undefined ? [] : [{ x: m.step, y: f(m)!, series: name }])),
  });
  await writeCurves(join(job.outDir, 'curves.svg'), [
    { ...series('train F1', (m) => m.trainF1, 'train'), points: [...series('', (m) => m.trainF1, 'train').points, ...series('', (m) => m.evalF1, 'eval').points, ...series('', (m) => m.oodF1, 'ood').points] },
    series('zero-advantage group ratio', (m) => m.zeroAdvantageGroups),
    series('mean information gain', (m) => m.meanIG),
    series('ground-truth entropy reduction', (m) => m.gtEntropyReduction),
    series('KL to reference', (m) => m.kl),
  ]);
  await writeFile(join(job.outDir, 'report.md'), report(job, losses, res, (performance.now() - t0) / 1000));
  log(`eval F1 ${res.evalBefore.inDomain.f1.toFixed(3)} -> ${res.evalAfter.inDomain.f1.toFixed(3)} (in-domain), ${res.evalBefore.ood.f1.toFixed(3)} -> ${res.evalAfter.ood.f1.toFixed(3)} (out-of-domain); wrote ${job.outDir}`);
  for (const p of model.parameters()) p.dispose();
  return { ...res, warmupLosses: losses };
}

function report(job: TrainJob, losses: number[], res: RLResult, seconds: number): string {
  const last = res.steps[res.steps.length - 1];
  const ms = res.steps.reduce((a, m) => ({ rollout: a.rollout + m.ms.rollout, ig: a.ig + m.ms.igScoring, update: a.update + m.ms.update }), { rollout: 0, ig: 0, update: 0 });
  return `# IGPO training report

- algorithm: ${job.rl.algo} (${isBaseline(job.rl.algo) ? 'a baseline: see igpo/baselines.ts' : `normalisation ${job.rl.algo === 'grpo' ? 'separate (outcome only)' : job.rl.norm}, gamma ${job.rl.gamma}${job.rl.logSpace ? ', IG in log space' : ''}`})
- preset: ${job.preset.name}, seed ${job.seed}, device ${job.device}, wall time ${seconds.toFixed(0)} s
- model: ${JSON.stringify(job.preset.model)}
- warm-up: ${losses.length} steps, loss ${losses[0]?.toFixed(3)} -> ${losses[losses.length - 1]?.toFixed(3)}
- RL: ${res.steps.length} steps x ${job.preset.rl.questions} questions x ${job.preset.rl.group} rollouts, ${last?.policyTokens ?? 0} policy tokens

| eval (greedy) | before RL | after RL |
| --- | --- | --- |
| in-domain F1 (${res.evalBefore.inDomain.episodes} episodes) | ${res.evalBefore.inDomain.f1.toFixed(3)} | ${res.evalAfter.inDomain.f1.toFixed(3)} |
| out-of-domain F1 (${res.evalBefore.ood.episodes} episodes) | ${res.evalBefore.ood.f1.toFixed(3)} | ${res.evalAfter.ood.f1.toFixed(3)} |
${hopRows(res.evalBefore.inDomain, res.evalAfter.inDomain)}| episode ends, in-domain | ${fmtEnds(res.evalBefore.inDomain.ends)} | ${fmtEnds(res.evalAfter.inDomain.ends)} |

Time per phase over all RL steps: rollout ${(ms.rollout / 1000).toFixed(1)} s, IG scoring ${(ms.ig / 1000).toFixed(1)} s, update ${(ms.update / 1000).toFixed(1)} s.

Curves: curves.svg. Per-step metrics: metrics.jsonl. Checkpoint: model.safetensors.
`;
}

/** In-domain F1 and searches per episode by the question's hops, before and after. */
function hopRows(before: EvalResult, after: EvalResult): string {
  const hops = [...new Set([...Object.keys(before.byHops), ...Object.keys(after.byHops)].map(Number))].sort((a, b) => a - b);
  const cell = (r: EvalResult, h: number) => (r.byHops[h] ? `F1 ${r.byHops[h].meanReward.toFixed(3)}, ${r.byHops[h].meanSearches.toFixed(2)} searches` : '-');
  return hops.map((h) => `| in-domain, ${h}-hop questions (${before.byHops[h]?.episodes ?? 0} episodes) | ${cell(before, h)} | ${cell(after, h)} |\n`).join('');
}

function fmtEnds(ends: Partial<Record<string, number>>): string {
  return Object.entries(ends)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');
}

/** `igpo eval`: a checkpoint's greedy F1 on `episodes` held-out and out-of-domain episodes. */
export async function runEval(path: string, opts: { episodes: number; seed: number; device: E.Device }): Promise<{ inDomain: EvalResult; ood: EvalResult }> {
  const { loadCheckpoint } = await import('../model/checkpoint.js');
  const { model, tokenizer, metadata } = await loadCheckpoint(path, { device: opts.device });
  if (!tokenizer) throw new Error(`checkpoint ${path}: no tokenizer in its metadata (was it written by igpo train?)`);
  const preset = PRESETS[(metadata.preset as keyof typeof PRESETS) ?? 'default'] ?? PRESETS.default;
  const res = {
    inDomain: await evaluate(model, tokenizer, makeSplit('eval', opts.seed, opts.episodes), preset),
    ood: await evaluate(model, tokenizer, makeSplit('ood', opts.seed, opts.episodes), preset),
  };
  for (const p of model.parameters()) p.dispose();
  return res;
}
