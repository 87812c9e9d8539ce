// `igpo compare`: several algorithms from the same warm-started model per seed, each given the same
// budget of sampled policy tokens, evaluated on the same held-out and out-of-domain episodes.
// Writes compare.md (the table), compare.json (every step's metrics) and compare.svg (the curves).

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as E from '../engine/index.js';
import { ALGORITHMS, ALGOS, algorithm, defaultRLOptions, type Algo, type RLOptions } from './algorithms.js';
import { meanOrNull } from './metrics.js';
import { writeCurves } from './plot.js';
import { trainRL, warmStart, type Preset, type RLResult, type StepMetrics } from './trainer.js';

export interface CompareJob {
  algos: string[];
  seeds: number;
  preset: Preset;
  device: E.Device;
  outDir: string;
  /** RL options every algorithm runs with (normalisation, probe, format penalty ...); the defaults elsewhere. */
  rl?: Partial<Omit<RLOptions, 'algo'>>;
  progress?: boolean;
  log?: (line: string) => void;
}

export interface CompareRun {
  algo: string;
  seed: number;
  result: RLResult;
  seconds: number;
}

const SECTIONS: { title: string; section: 'outcome' | 'step' }[] = [
  { title: 'Outcome-reward RL', section: 'outcome' },
  { title: 'Step-reward RL', section: 'step' },
];

export async function runCompare(job: CompareJob): Promise<CompareRun[]> {
  const log = job.log ?? (() => {});
  for (const a of job.algos) if (!ALGOS.includes(a as Algo)) throw new Error(`compare: unknown algorithm '${a}' (known: ${ALGOS.join(', ')})`);
  await mkdir(job.outDir, { recursive: true });
  const runs: CompareRun[] = [];
  for (let seed = 0; seed < job.seeds; seed++) {
    log(`seed ${seed}: warm-up`);
    const warm = await warmStart(job.preset, seed, job.device, job.progress);
    let evalBefore: RLResult['evalBefore'] | undefined; // the same warm start for every algorithm: evaluated once
    // The first algorithm sets the budget: the policy tokens it samples in `steps` steps.
    let budget = job.preset.rl.tokenBudget;
    for (const algo of job.algos) {
      const preset: Preset = budget > 0 ? { ...job.preset, rl: { ...job.preset.rl, steps: job.preset.rl.steps * 3, tokenBudget: budget } } : job.preset;
      const model = warm.model.clone();
      const t0 = performance.now();
      const result = await trainRL(model, warm.tok, preset, { ...defaultRLOptions(algo as Algo), ...job.rl }, seed, { progress: job.progress, evalBefore });
      evalBefore = result.evalBefore;
      const seconds = (performance.now() - t0) / 1000;
      if (budget === 0) budget = result.steps[result.steps.length - 1]?.policyTokens ?? 0;
      runs.push({ algo, seed, result, seconds });
      log(`seed ${seed} ${algo}: eval F1 ${result.evalBefore.inDomain.f1.toFixed(3)} -> ${result.evalAfter.inDomain.f1.toFixed(3)}, ood ${result.evalBefore.ood.f1.toFixed(3)} -> ${result.evalAfter.ood.f1.toFixed(3)}, ${result.steps.length} steps, ${seconds.toFixed(0)} s`);
      model.dispose();
    }
    warm.model.dispose();
  }
  await writeFile(join(job.outDir, 'compare.json'), JSON.stringify(runs, null, 1));
  await writeFile(join(job.outDir, 'compare.md'), compareTable(job, runs));
  const curve = (title: string, f: (m: StepMetrics) => number | null | undefined) => ({
    title,
    x: 'policy tokens',
    points: runs.flatMap((r) => r.result.steps.flatMap((m) => (f(m) === undefined || f(m) === null ? [] : [{ x: m.policyTokens, y: f(m)!, series: `${r.algo} s${r.seed}` }]))),
  });
  await writeCurves(join(job.outDir, 'compare.svg'), [
    curve('held-out F1 (greedy)', (m) => m.evalF1),
    curve('train F1', (m) => m.trainF1),
    curve('advantage collapse (groups whose outcomes are all equal)', (m) => m.collapsedGroups),
    curve('ground-truth entropy reduction', (m) => m.gtEntropyReduction),
  ]);
  log(`wrote ${join(job.outDir, 'compare.md')}`);
  return runs;
}

function meanStd(xs: number[]): string {
  const m = xs.reduce((s, x) => s + x, 0) / xs.length;
  const sd = Math.sqrt(xs.reduce((s, x) => s + (x - m) ** 2, 0) / xs.length);
  return `${m.toFixed(3)} ± ${sd.toFixed(3)}`;
}

/**
 * The table in the layout of the paper's Tables 1 and 2: one row per algorithm, grouped into outcome-reward
 * and step-reward sections, in-domain and out-of-domain F1 and their average (mean ± std over seeds), then
 * advantage collapse, IG's share of the normalised rewards, the entropy reduction and the other per-run figures.
 */
export function compareTable(job: CompareJob, runs: CompareRun[]): string {
  const row = (algo: string) => {
    const rs = runs.filter((r) => r.algo === algo);
    const avg = (f: (r: CompareRun) => number | null) => {
      const xs = rs.flatMap((r) => (f(r) === null ? [] : [f(r)!]));
      return xs.length ? meanStd(xs) : '-';
    };
    const stepMean = (r: CompareRun, f: (m: StepMetrics) => number | null) => meanOrNull(r.result.steps.flatMap((m) => (f(m) === null ? [] : [f(m)!])));
    const ind = (r: CompareRun) => r.result.evalAfter.inDomain.f1;
    const ood = (r: CompareRun) => r.result.evalAfter.ood.f1;
    return `| ${algorithm(algo).display} | ${avg(ind)} | ${avg(ood)} | ${avg((r) => (ind(r) + ood(r)) / 2)} | ${avg((r) => stepMean(r, (m) => m.collapsedGroups))} | ${avg((r) => stepMean(r, (m) => m.zeroAdvantageGroups))} | ${avg((r) => stepMean(r, (m) => m.igShare))} | ${avg((r) => stepMean(r, (m) => m.gtEntropyReduction))} | ${Math.round(rs.reduce((s, r) => s + (r.result.steps.at(-1)?.policyTokens ?? 0), 0) / rs.length)} | ${(rs.reduce((s, r) => s + r.seconds, 0) / rs.length).toFixed(0)} |`;
  };
  const rows = SECTIONS.flatMap((sec) => {
    const algos = job.algos.filter((a) => ALGORITHMS[a as Algo].section === sec.section);
    return algos.length ? [`| *${sec.title}* | | | | | | | | | |`, ...algos.map(row)] : [];
  });
  const before = runs.filter((r) => r.algo === job.algos[0]);
  return `# igpo compare (preset ${job.preset.name}, ${job.seeds} seeds, device ${job.device})

Warm-started model before RL (shared by all algorithms of a seed): in-domain F1 ${meanStd(before.map((r) => r.result.evalBefore.inDomain.f1))}, out-of-domain F1 ${meanStd(before.map((r) => r.result.evalBefore.ood.f1))}.

| Method | In-domain F1 | Out-of-domain F1 | Avg. | advantage collapse | all-zero advantages | IG share | GT entropy reduction | policy tokens | seconds per run |
| :--- | :---: | :---: | :---: | :---: | :---: | :---: | :---: | :---: | :---: |
${rows.join('\n')}

F1 is greedy decoding on ${job.preset.rl.evalEpisodes} held-out (in-domain) and ${job.preset.rl.evalEpisodes} out-of-domain episodes, mean ± population std over seeds; Avg. is their mean. Every algorithm of a seed starts from the same warm-started model and stops at the first step that reaches the same budget of sampled policy tokens (what the first algorithm sampled in the preset's steps). Advantage collapse is the paper's (the fraction of a step's groups whose outcome rewards are all equal); all-zero advantages is the fraction of groups whose advantages are all 0, which any non-zero IG prevents, so it is about 0 for IGPO by construction. IG share is IG turns' share of the group-normalised turn rewards' sum of squares (algorithms with turn rewards only). These and the entropy reduction are means over RL steps.
`;
}
