// The study's files: what `igpo compare` writes into its directory and `igpo report` reads back. One JSON
// file per finished run and per warm start, written atomically and validated on load (zod schemas), and
// the study's settings, which every later run into the directory must share. Not the runner (compare.ts)
// and not the tables (report.ts).

import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import writeFileAtomic from 'write-file-atomic';
import { z } from 'zod';
import type { RLOptions } from './algorithms.js';
import type { Preset } from './presets.js';
import type { EvalMode, EvalResult, RLResult } from './trainer.js';

/**
 * A study's settings: what every run in its directory shares. The algorithms and seeds are not part of it:
 * a later `compare` may add either to the same directory (more seeds, more baselines).
 */
export interface StudySpec {
  version: 1;
  preset: Preset;
  /** The RL options every algorithm runs with (each algorithm's entry changes what it must). */
  rl: Omit<RLOptions, 'algo'>;
  /** Policy tokens each run samples before it stops (its last step may overshoot), the equal budget. */
  budget: number;
  /** The most RL steps a run may take to reach the budget. */
  maxSteps: number;
  /** Every seed's warm start is this checkpoint (no warm-up), when set. */
  initFrom?: string;
  /**
   * Every seed's warm start is this Hugging Face model directory, after `warmupSteps` supervised steps
   * (0: none), saved per seed in HF's layout (warmHFPath).
   */
  model?: { dir: string; warmupSteps: number };
}

export interface WarmFile {
  seed: number;
  code: string;
  warmupSteps: number;
  /** The warm-up's first and last loss; null without a warm-up (--init-from). */
  lossFirst: number | null;
  lossLast: number | null;
  /** The warm start's greedy evaluation in each inference-only mode (trainer.ts's EvalMode). */
  eval: { agent: { inDomain: EvalResult; ood: EvalResult } } & Partial<
    Record<Exclude<EvalMode, 'agent'>, { inDomain: EvalResult; ood: EvalResult }>
  >;
  seconds: number;
}

export interface RunFile {
  algo: string;
  seed: number;
  /** The warm start's seed (the run's own seed: every algorithm of a seed starts from it). */
  warmSeed: number;
  code: string;
  result: RLResult;
  seconds: number;
}

// ---------------------------------------------------------------------------------------------------
// Schemas: enough structure that a truncated or foreign file is refused with the field named.

const num = z.number();
const nullableNum = z.number().nullable();
const evalResult = z.looseObject({
  f1: num,
  episodes: z.number().int().positive(),
  ends: z.record(z.string(), num),
  meanSearches: num,
  byHops: z.record(z.string(), z.looseObject({ episodes: num, meanReward: num, meanSearches: num })),
});
const bothSplits = z.looseObject({ inDomain: evalResult, ood: evalResult });
const stepMetrics = z.looseObject({
  step: z.number().int().nonnegative(),
  algo: z.string(),
  seed: z.number().int(),
  trainF1: num,
  collapsedGroups: num,
  zeroAdvantageGroups: num,
  igShare: nullableNum,
  gtEntropyReduction: nullableNum,
  policyTokens: num,
  evalF1: num.optional(),
  oodF1: num.optional(),
});
const warmSchema = z.looseObject({
  seed: z.number().int(),
  code: z.string(),
  warmupSteps: num,
  lossFirst: nullableNum,
  lossLast: nullableNum,
  // cot and rag are absent for a --model study: a tokenizer.json has no single <search> token to ban.
  eval: z.looseObject({ agent: bothSplits, cot: bothSplits.optional(), rag: bothSplits.optional() }),
  seconds: num,
});
const runSchema = z.looseObject({
  algo: z.string(),
  seed: z.number().int(),
  warmSeed: z.number().int(),
  code: z.string(),
  result: z.looseObject({ steps: z.array(stepMetrics).min(1), evalBefore: bothSplits, evalAfter: bothSplits }),
  seconds: num,
});
const studySchema = z.looseObject({
  version: z.literal(1),
  preset: z.looseObject({
    name: z.string(),
    rl: z.looseObject({}),
    warmup: z.looseObject({}),
    model: z.looseObject({}),
  }),
  rl: z.looseObject({ probe: z.looseObject({ name: z.string(), prefix: z.string(), scored: z.string() }) }),
  budget: z.number().int().positive(),
  maxSteps: z.number().int().positive(),
});

// ---------------------------------------------------------------------------------------------------
// Paths.

export const studyPath = (dir: string): string => join(dir, 'study.json');
export const warmCheckpointPath = (dir: string, seed: number): string => join(dir, 'warm', `seed-${seed}.safetensors`);
/** A --model study's warm start of a seed: a directory in HF's layout. */
export const warmHFPath = (dir: string, seed: number): string => join(dir, 'warm', `seed-${seed}-hf`);
export const warmPath = (dir: string, seed: number): string => join(dir, 'warm', `seed-${seed}.json`);
export const runPath = (dir: string, algo: string, seed: number): string =>
  join(dir, 'runs', `${algo}-seed-${seed}.json`);

// ---------------------------------------------------------------------------------------------------
// Reading and writing.

/** JSON written atomically (a temporary file renamed over the path): a reader never sees half of one. */
export async function writeJson(path: string, value: unknown): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  await writeFileAtomic(path, JSON.stringify(value, null, 1) + '\n');
}

async function readJson<T>(path: string, schema: z.ZodType, what: string): Promise<T> {
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new Error(`${path}: not a readable JSON ${what}: ${(e as Error).message}`, { cause: e });
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new Error(`${path}: not a ${what}: ${issue.path.join('.') || '(top level)'}: ${issue.message}`);
  }
  return raw as T;
}

/**
 * A study's settings as today's code names them: files written before the gradient-norm clip was named
 * maxGradNorm call it `clip` (the same setting).
 */
function upgradeStudy(spec: StudySpec): StudySpec {
  const rl = spec.preset.rl as Preset['rl'] & { clip?: number };
  if (rl.clip === undefined || rl.maxGradNorm !== undefined) return spec;
  const { clip, ...rest } = rl;
  return { ...spec, preset: { ...spec.preset, rl: { ...rest, maxGradNorm: clip } } };
}

export const readStudy = async (path: string): Promise<StudySpec> =>
  upgradeStudy(await readJson<StudySpec>(path, studySchema, 'study settings file'));
export const readWarm = (path: string): Promise<WarmFile> => readJson(path, warmSchema, 'warm-start result file');
export const readRun = (path: string): Promise<RunFile> => readJson(path, runSchema, 'run result file');

/** The first path at which two JSON values differ ('' when equal), for an error that names the field. */
export function firstDifference(a: unknown, b: unknown, at = ''): string | null {
  if (typeof a !== typeof b || Array.isArray(a) !== Array.isArray(b) || (a === null) !== (b === null))
    return at || '(top level)';
  if (typeof a !== 'object' || a === null) return a === b ? null : at || '(top level)';
  const keys = new Set([...Object.keys(a as object), ...Object.keys(b as object)]);
  for (const k of keys) {
    const d = firstDifference(
      (a as Record<string, unknown>)[k],
      (b as Record<string, unknown>)[k],
      at ? `${at}.${k}` : k,
    );
    if (d !== null) return d;
  }
  return null;
}

/**
 * Writes the study's settings into `dir`, or checks them against those already there: a directory holds
 * one study, so that every result file in it was made under the same settings.
 */
export async function claimStudy(dir: string, spec: StudySpec): Promise<void> {
  const path = studyPath(dir);
  const want: unknown = JSON.parse(JSON.stringify(spec));
  if (existsSync(path)) {
    const have = await readStudy(path);
    const d = firstDifference(have, want);
    if (d !== null)
      throw new Error(
        `${path}: this directory holds a study with other settings (they differ at '${d}'); use another --out`,
      );
    return;
  }
  await writeJson(path, want);
}

let version: string | undefined;

/**
 * The code's git commit, with '-dirty' when the work tree has changes; 'unknown' when this code is not a
 * git checkout of the project (an installed package, say: not whatever repository holds it).
 */
export function codeVersion(): string {
  if (version !== undefined) return version;
  let root = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(root, 'package.json')) && dirname(root) !== root) root = dirname(root);
  if (!existsSync(join(root, '.git'))) return (version = 'unknown');
  try {
    const head = execFileSync('git', ['rev-parse', 'HEAD'], {
      cwd: root,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim();
    const dirty =
      execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], {
        cwd: root,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim() !== '';
    version = dirty ? `${head}-dirty` : head;
  } catch {
    version = 'unknown';
  }
  return version;
}
