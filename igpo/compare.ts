// `igpo compare`: the study. Per seed one warm start, trained once and shared through its checkpoint
// (with its inference-only baselines evaluated: the paper's prompt-based rows); then every (seed,
// algorithm) run from it, each to the same budget of sampled policy tokens, in parallel worker processes.
// Every run writes its result file the moment it finishes, so a rerun into the same directory resumes;
// `--shard i/n` runs every n-th run for machines that share only the directory. The tables and figures
// are report.ts's, from the files alone.

import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as E from '../engine/index.js';
import { loadCheckpoint, saveCheckpoint } from '../model/checkpoint.js';
import type { GPT } from '../model/gpt.js';
import type { HFDecoder } from '../model/hf/decoder.js';
import type { CausalLM } from '../model/lm.js';
import type { Tokenizer } from '../model/tokenizer.js';
import { algorithm, type Algo } from './algorithms.js';
import { presetSplit, type Preset } from './presets.js';
import { REPORT_FILES } from './report.js';
import {
  claimStudy,
  codeVersion,
  readRun,
  readWarm,
  runPath,
  warmCheckpointPath,
  warmHFPath,
  warmPath,
  writeJson,
  type RunFile,
  type StudySpec,
  type WarmFile,
} from './results.js';
import type { AgentTokenizer } from './rollout.js';
import { EVAL_MODES, evaluate, supervisedWarmup, trainRL, warmStart, type EvalMode } from './trainer.js';
import { makeSplit } from './env.js';

export interface CompareJob {
  study: StudySpec;
  algos: readonly string[];
  /** Seeds 0 .. seeds - 1. */
  seeds: number;
  device: E.Device;
  outDir: string;
  /** Worker processes; 1 runs everything in this process. */
  jobs: number;
  /** Run only the runs whose index in the plan (planRuns) is `index` modulo `count`. */
  shard?: { index: number; count: number };
  log?: (line: string) => void;
}

export type Task = { kind: 'warm'; seed: number } | { kind: 'run'; algo: Algo; seed: number };

const taskName = (t: Task) => (t.kind === 'warm' ? `seed ${t.seed} warm start` : `seed ${t.seed} ${t.algo}`);

/**
 * The runs of a study and this shard's share of them: the plan lists them algorithm by algorithm, each
 * over every seed, so that a shard count that divides the seeds gives each shard whole seeds (one warm
 * start to train per seed it holds). Returned seed by seed, the order they run in: an interrupted study
 * leaves complete pairs.
 */
export function planRuns(
  algos: readonly string[],
  seeds: number,
  shard?: { index: number; count: number },
): { algo: Algo; seed: number }[] {
  for (const a of algos) algorithm(a); // unknown names fail here, with the known ones listed
  const all = algos.flatMap((algo) => Array.from({ length: seeds }, (_, seed) => ({ algo: algo as Algo, seed })));
  const mine = shard ? all.filter((_, i) => i % shard.count === shard.index) : all;
  return mine.sort((x, y) => x.seed - y.seed || algos.indexOf(x.algo) - algos.indexOf(y.algo));
}

/** A preset as a study runs it: up to maxSteps steps, stopping at the budget of policy tokens. */
function runPreset(study: StudySpec): Preset {
  return { ...study.preset, rl: { ...study.preset.rl, steps: study.maxSteps, tokenBudget: study.budget } };
}

/**
 * One task, in whichever process runs it. A warm start: train, save the checkpoint, evaluate it greedily
 * in every inference-only mode, write its file. A run: load the seed's warm start, RL to the budget, write
 * its file. Files are written last and atomically: a task killed half-way leaves nothing.
 */
export async function executeTask(
  study: StudySpec,
  dir: string,
  task: Task,
  device: E.Device,
  code: string,
): Promise<string> {
  const t0 = performance.now();
  const preset = study.preset;
  const rl = preset.rl;
  if (task.kind === 'warm') {
    const { model, tok, losses } = study.model
      ? await pretrainedWarmStart(study, task.seed, device)
      : study.initFrom
        ? await readWarmStart(study.initFrom, device)
        : await warmStart(preset, task.seed, device);
    try {
      const evalSet = makeSplit(presetSplit(preset, 'eval'), task.seed, rl.evalEpisodes);
      const oodSet = makeSplit(presetSplit(preset, 'ood'), task.seed, rl.evalEpisodes);
      const evals = {} as WarmFile['eval'];
      for (const mode of Object.keys(EVAL_MODES) as EvalMode[]) {
        // 'cot' and 'rag' ban the <search> token; a tokenizer.json has no such single token (no such rows).
        if (mode !== 'agent' && (tok as AgentTokenizer).search === undefined) continue;
        evals[mode] = {
          inDomain: await evaluate(model, tok, evalSet, preset, { mode, probe: study.rl.probe }),
          ood: await evaluate(model, tok, oodSet, preset, { mode, probe: study.rl.probe }),
        };
      }
      await mkdir(dirname(warmCheckpointPath(dir, task.seed)), { recursive: true });
      if (study.model) {
        const { copyTokenizerFiles } = await import('../model/index.js');
        await (model as HFDecoder).save(warmHFPath(dir, task.seed));
        await copyTokenizerFiles(study.model.dir, warmHFPath(dir, task.seed));
      } else
        await saveCheckpoint(warmCheckpointPath(dir, task.seed), model as GPT, {
          tokenizer: tok as Tokenizer,
          metadata: { seed: String(task.seed), preset: preset.name, code },
        });
      const file: WarmFile = {
        seed: task.seed,
        code,
        warmupSteps: losses.length,
        lossFirst: losses[0] ?? null,
        lossLast: losses.at(-1) ?? null,
        eval: evals,
        seconds: (performance.now() - t0) / 1000,
      };
      await writeJson(warmPath(dir, task.seed), file);
      return (
        `seed ${task.seed} warm start: eval F1 ${evals.agent.inDomain.f1.toFixed(3)} (CoT ` +
        `${evals.cot?.inDomain.f1.toFixed(3) ?? '-'}, CoT+RAG ${evals.rag?.inDomain.f1.toFixed(3) ?? '-'}), ` +
        `${file.seconds.toFixed(0)} s`
      );
    } finally {
      model.dispose();
    }
  }
  const warm = await readWarm(warmPath(dir, task.seed));
  const { model, tokenizer } = study.model
    ? await loadHFWarm(warmHFPath(dir, task.seed), study, device)
    : await loadCheckpoint(warmCheckpointPath(dir, task.seed), { device });
  try {
    if (!tokenizer) throw new Error(`${warmCheckpointPath(dir, task.seed)}: no tokenizer in its metadata`);
    const result = await trainRL(model, tokenizer, runPreset(study), { ...study.rl, algo: task.algo }, task.seed, {
      evalBefore: warm.eval.agent,
    });
    const file: RunFile = {
      algo: task.algo,
      seed: task.seed,
      warmSeed: task.seed,
      code,
      result,
      seconds: (performance.now() - t0) / 1000,
    };
    await writeJson(runPath(dir, task.algo, task.seed), file);
    const last = result.steps[result.steps.length - 1];
    return (
      `seed ${task.seed} ${task.algo}: eval F1 ${result.evalBefore.inDomain.f1.toFixed(3)} -> ` +
      `${result.evalAfter.inDomain.f1.toFixed(3)}, ood ${result.evalBefore.ood.f1.toFixed(3)} -> ` +
      `${result.evalAfter.ood.f1.toFixed(3)}, ${result.steps.length} steps, ${last.policyTokens} policy tokens, ` +
      `${file.seconds.toFixed(0)} s`
    );
  } finally {
    model.dispose();
  }
}

/** A Hugging Face model directory as a seed's warm start (`--model`), after its warm-up steps if any. */
async function pretrainedWarmStart(
  study: StudySpec,
  seed: number,
  device: E.Device,
): Promise<{ model: CausalLM; tok: AgentTokenizer; losses: number[] }> {
  const { dir, warmupSteps } = study.model!;
  const { model, tokenizer } = await loadHFWarm(dir, study, device);
  const losses = warmupSteps > 0 ? await supervisedWarmup(model, tokenizer, study.preset, seed, warmupSteps) : [];
  return { model, tok: tokenizer, losses };
}

/** A model directory in HF's layout, at the preset's context length, with its tokenizer. */
async function loadHFWarm(
  dir: string,
  study: StudySpec,
  device: E.Device,
): Promise<{ model: CausalLM; tokenizer: AgentTokenizer }> {
  const { HFDecoder, HFTokenizer } = await import('../model/index.js');
  const tokenizer = await HFTokenizer.fromDir(dir);
  return { model: await HFDecoder.load(dir, { device, blockSize: study.preset.model.blockSize }), tokenizer };
}

/** A checkpoint as every seed's warm start (`--init-from`). */
async function readWarmStart(
  path: string,
  device: E.Device,
): Promise<{ model: GPT; tok: Tokenizer; losses: number[] }> {
  const { model, tokenizer } = await loadCheckpoint(path, { device });
  if (!tokenizer) {
    model.dispose();
    throw new Error(`checkpoint ${path}: no tokenizer in its metadata (was it written by igpo?)`);
  }
  return { model, tok: tokenizer, losses: [] };
}

/** Whether a finished, valid file is already there (a broken one is redone, and says so). */
async function done(path: string, read: (p: string) => Promise<unknown>, log: (l: string) => void): Promise<boolean> {
  if (!existsSync(path)) return false;
  try {
    await read(path);
    return true;
  } catch (e) {
    log(`redoing: ${(e as Error).message}`);
    return false;
  }
}

/** Runs tasks in `jobs` worker processes, or in this one; a warm start before the runs that need it. */
async function schedule(
  tasks: Task[],
  jobs: number,
  run: (t: Task, worker: number) => Promise<string>,
  log: (l: string) => void,
): Promise<void> {
  const pendingWarm = new Set(tasks.filter((t) => t.kind === 'warm').map((t) => t.seed));
  const queue = [...tasks];
  let finished = 0;
  let failure: Error | null = null;
  const next = (): Task | undefined => {
    const i = queue.findIndex((t) => t.kind === 'warm' || !pendingWarm.has(t.seed));
    return i < 0 ? undefined : queue.splice(i, 1)[0];
  };
  const waiters: (() => void)[] = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  const worker = async (w: number) => {
    while (!failure) {
      const t = next();
      if (!t) {
        if (queue.length === 0) return;
        await new Promise<void>((r) => waiters.push(r)); // runs wait for their warm start
        continue;
      }
      try {
        const line = await run(t, w);
        finished++;
        log(`[${finished}/${tasks.length}] ${line}`);
      } catch (e) {
        failure ??= new Error(`${taskName(t)}: ${(e as Error).message}`, { cause: e });
      }
      if (t.kind === 'warm') pendingWarm.delete(t.seed);
      wake();
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(jobs, tasks.length)) }, (_, w) => worker(w)));
  if (failure) throw failure;
}

/** A pool of worker processes (compare-worker.ts), one task at a time each. */
class Workers {
  private readonly procs: ChildProcess[] = [];
  private readonly pending = new Map<number, { resolve: (line: string) => void; reject: (e: Error) => void }>();
  /** The worker each pending task went to. */
  private readonly owner = new Map<number, number>();
  private id = 0;

  constructor(n: number) {
    // The worker is this module's sibling: TypeScript run through tsx's loader (found from here, not the
    // cwd) in a checkout, JavaScript in the built package.
    const ts = fileURLToPath(import.meta.url).endsWith('.ts');
    const entry = fileURLToPath(new URL(`./compare-worker.${ts ? 'ts' : 'js'}`, import.meta.url));
    for (let i = 0; i < n; i++) {
      const execArgv = ts ? ['--import', import.meta.resolve('tsx')] : [];
      // Several processes already fill the cores: each keeps its matmuls on one thread unless told otherwise.
      const env = n > 1 && process.env.IGPO_THREADS === undefined ? { ...process.env, IGPO_THREADS: '1' } : process.env;
      const p = fork(entry, [], { execArgv, serialization: 'advanced', env });
      p.on('message', (m: { id: number; ok: boolean; line?: string; error?: string }) => {
        const w = this.pending.get(m.id);
        this.pending.delete(m.id);
        this.owner.delete(m.id);
        if (m.ok) w?.resolve(m.line!);
        else w?.reject(new Error(m.error));
      });
      p.on('exit', (code, signal) => {
        for (const [id, w] of this.pending) {
          if (this.owner.get(id) === i) {
            this.pending.delete(id);
            w.reject(new Error(`worker process ${i} exited (${signal ?? `code ${code}`})`));
          }
        }
      });
      this.procs.push(p);
    }
  }

  run(
    worker: number,
    msg: { study: StudySpec; dir: string; task: Task; device: E.Device; code: string },
  ): Promise<string> {
    const id = this.id++;
    this.owner.set(id, worker);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.procs[worker].send({ id, ...msg });
    });
  }

  close(): void {
    for (const p of this.procs) if (p.connected) p.disconnect();
  }
}

/** Runs the study's missing warm starts and runs; returns how many tasks it ran. */
export async function runCompare(job: CompareJob): Promise<number> {
  const log = job.log ?? (() => {});
  const runs = planRuns(job.algos, job.seeds, job.shard);
  await claimStudy(job.outDir, job.study);
  const code = codeVersion();
  const tasks: Task[] = [];
  for (const seed of [...new Set(runs.map((r) => r.seed))]) {
    if (!((await done(warmPath(job.outDir, seed), readWarm, log)) && existsSync(warmCheckpointPath(job.outDir, seed))))
      tasks.push({ kind: 'warm', seed });
  }
  for (const r of runs)
    if (!(await done(runPath(job.outDir, r.algo, r.seed), readRun, log))) tasks.push({ kind: 'run', ...r });
  const skipped = runs.length - tasks.filter((t) => t.kind === 'run').length;
  log(
    `compare: ${runs.length} runs${job.shard ? ` (shard ${job.shard.index}/${job.shard.count})` : ''}, ${skipped} ` +
      `already done; ${tasks.length} tasks on ${Math.min(job.jobs, Math.max(1, tasks.length))} ` +
      `${job.jobs > 1 ? 'worker processes' : 'process'} (preset ${job.study.preset.name}, budget ` +
      `${job.study.budget} policy tokens, code ${code})`,
  );
  if (tasks.length === 0) return 0;
  // The report and figures in the directory describe fewer runs than it will hold: gone until rewritten.
  for (const f of REPORT_FILES) await rm(join(job.outDir, f), { force: true });
  if (job.jobs <= 1) {
    await schedule(tasks, 1, (t) => executeTask(job.study, job.outDir, t, job.device, code), log);
    return tasks.length;
  }
  const workers = new Workers(Math.min(job.jobs, tasks.length));
  try {
    await schedule(
      tasks,
      job.jobs,
      (t, w) => workers.run(w, { study: job.study, dir: job.outDir, task: t, device: job.device, code }),
      log,
    );
  } finally {
    workers.close();
  }
  return tasks.length;
}

/**
 * The study a preset and the shared RL options make: the preset's compare budget (or `rlSteps` steps'
 * worth of it), and the warm starts trained per seed or read from `initFrom`.
 */
export function studyOf(
  preset: Preset,
  rl: StudySpec['rl'],
  opts: { rlSteps?: number; initFrom?: string; model?: StudySpec['model'] } = {},
): StudySpec {
  const steps = opts.rlSteps ?? preset.rl.steps;
  const budget = Math.round((preset.compare.budget * steps) / preset.rl.steps);
  const evalEvery = Math.min(preset.rl.evalEvery, steps);
  return {
    version: 1,
    preset: { ...preset, rl: { ...preset.rl, evalEvery } },
    rl,
    budget,
    maxSteps: 3 * steps,
    ...(opts.initFrom ? { initFrom: opts.initFrom } : {}),
    ...(opts.model ? { model: opts.model } : {}),
  };
}
