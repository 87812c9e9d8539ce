// The study's runner as a user meets it: `igpo compare` in worker processes writes one result file per
// run, a rerun resumes (skipping what is done, redoing only what is missing, identically), a directory
// keeps one study's settings, and shards run as separate processes merge (`igpo report`) into what one
// run gives. Plus the statistics the tables print.

import { execFile, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { defaultRLOptions } from '../igpo/algorithms.js';
import { runCompare, studyOf } from '../igpo/compare.js';
import { PRESETS } from '../igpo/presets.js';
import { loadStudies } from '../igpo/report.js';
import { saveCheckpoint } from '../model/checkpoint.js';
import { GPT } from '../model/gpt.js';
import { loadSafetensors } from '../model/safetensors.js';
import { defaultTokenizer } from '../model/tokenizer.js';
import { readRun, readWarm, runPath } from '../igpo/results.js';
import { includesZero, pairedDifference, tInterval } from '../igpo/stats.js';
import { useTempDirs } from './helpers/tempdir.js';

const tempDir = useTempDirs();
const run = (...args: string[]) =>
  promisify(execFile)(process.execPath, ['--import', 'tsx', 'igpo/cli.ts', ...args], { maxBuffer: 1 << 24 });
const compare = (out: string, ...more: string[]) =>
  run('compare', '--preset', 'smoke', '--seeds', '2', '--algos', 'igpo,grpo', '--out', out, ...more);

/** A run file without what depends on the machine's speed. */
function timeless(path: string): unknown {
  const r = JSON.parse(readFileSync(path, 'utf8'));
  delete r.seconds;
  for (const m of r.result.steps) {
    delete m.ms;
    delete m.timestamp;
  }
  return r;
}

describe('igpo compare', () => {
  test('worker processes, resume, one study per directory, and shards that merge into one run', async () => {
    const one = tempDir('igpo-study-');
    const first = await compare(one, '--jobs', '2');
    expect(first.stdout).toMatch(/4 runs, 0 already done; 6 tasks on 2 worker processes/);
    const names = readdirSync(join(one, 'runs')).sort();
    expect(names).toEqual(['grpo-seed-0.json', 'grpo-seed-1.json', 'igpo-seed-0.json', 'igpo-seed-1.json']);
    for (const f of [
      'report.md',
      'fig1-collapse.svg',
      'fig4-entropy.svg',
      'fig5-tokens.svg',
      'study.json',
      'warm/seed-0.json',
      'warm/seed-1.safetensors',
    ])
      expect(existsSync(join(one, f)), f).toBe(true);

    // A rerun finds everything done; a lost file is redone, alone and identically.
    expect((await compare(one, '--jobs', '1')).stdout).toMatch(/4 runs, 4 already done; 0 tasks/);
    const lost = runPath(one, 'grpo', 1);
    const before = timeless(lost);
    rmSync(lost);
    expect((await compare(one, '--jobs', '1')).stdout).toMatch(/4 runs, 3 already done; 1 tasks/);
    expect(timeless(lost)).toEqual(before);

    // Other settings into the same directory are refused, naming what differs.
    await expect(compare(one, '--budget', '99')).rejects.toThrow(
      /other settings \(they differ at 'preset.compare.budget'\)/,
    );

    // Shards as separate processes, into directories of their own, merged by igpo report.
    const [a, b, merged] = [tempDir('igpo-shard-'), tempDir('igpo-shard-'), tempDir('igpo-merged-')];
    const shards = await Promise.all([
      compare(a, '--jobs', '1', '--shard', '0/2'),
      compare(b, '--jobs', '1', '--shard', '1/2'),
    ]);
    expect(shards[0].stdout).toMatch(/2 runs \(shard 0\/2\), 0 already done; 3 tasks/);
    // Every other run of the plan (each algorithm over the seeds): 2 shards of 2 seeds get a seed each.
    expect(readdirSync(join(a, 'runs')).sort()).toEqual(['grpo-seed-0.json', 'igpo-seed-0.json']);
    expect(readdirSync(join(b, 'runs')).sort()).toEqual(['grpo-seed-1.json', 'igpo-seed-1.json']);
    expect(readdirSync(join(a, 'warm')).sort()).toEqual(['seed-0.json', 'seed-0.safetensors']);
    await run('report', a, b, '--out', merged);
    const [whole] = await loadStudies([one]);
    const [parts] = await loadStudies([a, b]);
    expect(parts.dirs).toEqual([a, b]);
    for (const algo of ['igpo', 'grpo'])
      for (const seed of [0, 1])
        expect(timeless(runPath(seed === 0 ? a : b, algo, seed))).toEqual(timeless(runPath(one, algo, seed)));
    expect([...parts.warm.keys()].sort()).toEqual([0, 1]);
    // The tables agree but for the minutes and the directories read.
    const tables = (dir: string) =>
      readFileSync(join(dir, 'report.md'), 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('| '))
        .map((l) => l.split(' | ').slice(0, 5).join(' | '));
    expect(tables(merged)).toEqual(tables(one));
    expect(whole.runs.get('igpo')!.size).toBe(2);
  }, 300_000);
});

describe('igpo compare, interrupted', () => {
  test('Ctrl-C leaves only whole result files, and the rerun finishes the study', async () => {
    const dir = tempDir('igpo-sigint-');
    const args = [
      '--import',
      'tsx',
      'igpo/cli.ts',
      'compare',
      '--preset',
      'smoke',
      '--seeds',
      '3',
      '--algos',
      'igpo,grpo',
      '--jobs',
      '2',
      '--out',
      dir,
    ];
    // Its own process group, as a terminal gives it: SIGINT reaches the workers too.
    const child = spawn(process.execPath, args, { detached: true, stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    const runs = join(dir, 'runs');
    const finished = () => (existsSync(runs) ? readdirSync(runs).filter((f) => f.endsWith('.json')) : []);
    for (let t = 0; t < 600 && finished().length === 0; t++) await new Promise((r) => setTimeout(r, 100));
    process.kill(-child.pid!, 'SIGINT');
    await exited;
    await new Promise((r) => setTimeout(r, 500)); // the workers' own exits
    const kept = readdirSync(runs).filter((f) => f.endsWith('.json'));
    expect(kept.length).toBeGreaterThan(0);
    expect(kept.length).toBeLessThan(6);
    for (const f of kept) await readRun(join(runs, f)); // each parses and validates: none is half-written
    for (const f of readdirSync(join(dir, 'warm')).filter((x) => x.endsWith('.json')))
      await readWarm(join(dir, 'warm', f));
    const { stdout } = await compare(dir, '--seeds', '3', '--jobs', '1');
    expect(stdout).toMatch(new RegExp(`6 runs, ${kept.length} already done`));
    expect(readdirSync(runs).filter((f) => f.endsWith('.json')).length).toBe(6);
  }, 300_000);
});

describe('igpo compare --init-from', () => {
  test('every seed starts from the given checkpoint: no warm-up, and its weights are the warm start', async () => {
    const dir = tempDir('igpo-init-');
    const ckpt = join(dir, 'init.safetensors');
    const model = new GPT({
      vocabSize: defaultTokenizer().vocabSize,
      ropeBase: 10000,
      normEps: 1e-5,
      ...PRESETS.smoke.model,
    });
    await saveCheckpoint(ckpt, model, { tokenizer: defaultTokenizer() });
    const study = studyOf(PRESETS.smoke, (({ algo: _, ...rest }) => rest)(defaultRLOptions()), { initFrom: ckpt });
    await runCompare({ study, algos: ['grpo'], seeds: 2, device: 'cpu', outDir: join(dir, 'study'), jobs: 1 });
    for (const seed of [0, 1]) {
      const warm = await readWarm(join(dir, 'study', 'warm', `seed-${seed}.json`));
      expect([warm.warmupSteps, warm.lossFirst, warm.lossLast]).toEqual([0, null, null]);
      const saved = await loadSafetensors(join(dir, 'study', 'warm', `seed-${seed}.safetensors`));
      expect(saved.tensors.wte.data).toEqual(await model.p('wte').data());
    }
    expect(JSON.parse(readFileSync(join(dir, 'study', 'study.json'), 'utf8')).initFrom).toBe(ckpt);
    model.dispose();
  });
});

describe('statistics', () => {
  test('Student-t intervals over seeds and paired differences', () => {
    const i = tInterval([1, 2, 3, 4]);
    expect(i.mean).toBe(2.5);
    expect(i.sd).toBeCloseTo(Math.sqrt(5 / 3), 12);
    // t_{0.975, 3} = 3.182446305...
    expect(i.hi! - i.mean).toBeCloseTo((3.182446305284263 * Math.sqrt(5 / 3)) / 2, 9);
    expect(tInterval([0.7])).toEqual({ n: 1, mean: 0.7, sd: null, lo: null, hi: null });
    expect(() => tInterval([])).toThrow(/no values/);
    expect(() => tInterval([1, NaN])).toThrow(/finite/);
    const d = pairedDifference(
      new Map([
        [0, 0.5],
        [1, 0.57],
        [2, 0.43],
        [5, 9],
      ]),
      new Map([
        [0, 0.4],
        [1, 0.45],
        [2, 0.35],
      ]),
    );
    expect(d.seeds).toEqual([0, 1, 2]);
    expect(d.mean).toBeCloseTo(0.1, 12);
    expect(includesZero(d)).toBe(false);
    expect(includesZero(tInterval([-1, 1, 0.5]))).toBe(true);
    expect(() => pairedDifference(new Map([[0, 1]]), new Map([[1, 1]]))).toThrow(/no seed in common/);
  });
});
