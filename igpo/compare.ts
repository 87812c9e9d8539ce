// `igpo compare`: several algorithms from the same warm-started model per seed, each given the same
// budget of sampled policy tokens, evaluated on the same held-out and out-of-domain episodes.
// Writes compare.md (the table), compare.json (every step's metrics) and compare.svg (the curves).

import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as E from '../engine/index.js';
import { GPT } from '../model/gpt.js';
import { writeCurves } from './plot.js';
import { ALGOS, type Algo } from './rollout.js';
import { defaultRLOptions, trainRL, warmStart, type Preset, type RLResult } from './trainer.js';

export interface CompareJob {
  algos: string[];
  seeds: number;
  preset: Preset;
  device: E.Device;
  outDir: string;
  progress?: boolean;
  log?: (line: string) => void;
}

export interface CompareRun {
  algo: string;
  seed: number;
  result: RLResult;
  seconds: number;
}

/** A model with the same weights in its own storage. */
function copyModel(model: GPT): GPT {
  const m = new GPT(model.cfg, { device: model.device });
  for (const [name, p] of m.params) {
    const src = E.tidy(() => E.noGrad(() => model.p(name).clone())); // tidy: clone's lifted scalar 1 is freed too
    p.assign(src);
    src.dispose();
  }
  return m;
}

const KNOWN: readonly string[] = ALGOS;

/** Row names and sections as in the paper's Tables 1 and 2. */
const NAMES: Record<Algo, string> = { igpo: 'IGPO', grpo: 'GRPO', ig: 'IGPO (w/ IG only)', rloo: 'RLOO', ppo: 'PPO', 'reinforce++': 'Reinforce++', gspo: 'GSPO', gigpo: 'GiGPO' };
const SECTIONS: { title: string; algos: readonly Algo[] }[] = [
  { title: 'Outcome-reward RL', algos: ['rloo', 'ppo', 'grpo', 'reinforce++', 'gspo'] },
  { title: 'Step-reward RL', algos: ['gigpo', 'ig', 'igpo'] },
];

export async function runCompare(job: CompareJob): Promise<CompareRun[]> {
  const log = job.log ?? (() => {});
  for (const a of job.algos) if (!KNOWN.includes(a)) throw new Error(`compare: unknown algorithm '${a}' (known: ${KNOWN.join(', ')})`);
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
      const model = copyModel(warm.model);
      const t0 = performance.now();
      const result = await trainRL(model, warm.tok, preset, defaultRLOptions(algo as Algo), seed, { progress: job.progress, evalBefore });
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
  const curve = (title: string, f: (m: RLResult['steps'][number]) => number | undefined) => ({
    title,
    x: 'policy tokens',
    points: runs.flatMap((r) => r.result.steps.flatMap((m) => (f(m) === undefined ? [] : [{ x: m.policyTokens, y: f(m)!, series: `${r.algo} s${r.seed}` }]))),
  });
  await writeCurves(join(job.outDir, 'compare.svg'), [
    curve('held-out F1 (greedy)', (m) => m.evalF1),
    curve('train F1', (m) => m.trainF1),
    curve('zero-advantage group ratio', (m) => m.zeroAdvantageGroups),
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
 * the zero-advantage group ratio and the other per-run figures.
 */
export function compareTable(job: CompareJob, runs: CompareRun[]): string {
  const row = (algo: string) => {
    const rs = runs.filter((r) => r.algo === algo);
    const avg = (f: (r: CompareRun) => number) => meanStd(rs.map(f));
    const stepMean = (r: CompareRun, f: (m: RLResult['steps'][number]) => number) => r.result.steps.reduce((s, m) => s + f(m), 0) / Math.max(1, r.result.steps.length);
    const ind = (r: CompareRun) => r.result.evalAfter.inDomain.f1;
    const ood = (r: CompareRun) => r.result.evalAfter.ood.f1;
    return `| ${NAMES[algo as Algo] ?? algo} | ${avg(ind)} | ${avg(ood)} | ${avg((r) => (ind(r) + ood(r)) / 2)} | ${avg((r) => stepMean(r, (m) => m.zeroAdvantageGroups))} | ${avg((r) => stepMean(r, (m) => m.gtEntropyReduction))} | ${Math.round(rs.reduce((s, r) => s + (r.result.steps.at(-1)?.policyTokens ?? 0), 0) / rs.length)} | ${(rs.reduce((s, r) => s + r.seconds, 0) / rs.length).toFixed(0)} |`;
  };
  const rows = SECTIONS.flatMap((sec) => {
    const algos = job.algos.filter((a) => sec.algos.includes(a as Algo));
    return algos.length ? [`| *${sec.title}* | | | | | | | |`, ...algos.map(row)] : [];
  });
  const before = runs.filter((r) => r.algo === job.algos[0]);
  return `# igpo compare (preset ${job.preset.name}, ${job.seeds} seeds, device ${job.device})

Warm-started model before RL (shared by all algorithms of a seed): in-domain F1 ${meanStd(before.map((r) => r.result.evalBefore.inDomain.f1))}, out-of-domain F1 ${meanStd(before.map((r) => r.result.evalBefore.ood.f1))}.

| Method | In-domain F1 | Out-of-domain F1 | Avg. | zero-advantage groups | GT entropy reduction | policy tokens | seconds per run |
| :--- | :---: | :---: | :---: | :---: | :---: | :---: | :---: |
${rows.join('\n')}

F1 is greedy decoding on ${job.preset.rl.evalEpisodes} held-out (in-domain) and ${job.preset.rl.evalEpisodes} out-of-domain episodes, mean ± std over seeds; Avg. is their mean. Every algorithm of a seed starts from the same warm-started model and stops at the first step that reaches the same budget of sampled policy tokens (what the first algorithm sampled in the preset's steps). Zero-advantage groups (the fraction of a step's questions whose advantages are all 0) and entropy reduction are means over RL steps.
`;
}
