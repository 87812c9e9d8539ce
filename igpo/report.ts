// `igpo report DIR [DIR ...]`: the study's tables and figures from its result files alone (results.ts),
// merged over directories that hold the same study (shards run apart): the paper's Tables 1-3 at our
// scale with 95% intervals over seeds, the paired differences, and its Figures 1, 4 and 5.

import { existsSync, readdirSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import writeFileAtomic from 'write-file-atomic';
import { join } from 'node:path';
import { ALGORITHMS, ALGOS, type Algo } from './algorithms.js';
import { meanOrNull } from './metrics.js';
import { writeBands, type BandPanel } from './plot.js';
import {
  firstDifference,
  readRun,
  readStudy,
  readWarm,
  runPath,
  studyPath,
  warmPath,
  type RunFile,
  type StudySpec,
  type WarmFile,
} from './results.js';
import { fmtInterval, includesZero, pairedDifference, tInterval, type Interval } from './stats.js';
import { EVAL_MODES, type EvalMode, type StepMetrics } from './trainer.js';

/** The figures a report draws (the paper's Figs. 1, 4 and 5), and every file it writes. */
export const FIGURES = { collapse: 'fig1-collapse.svg', entropy: 'fig4-entropy.svg', tokens: 'fig5-tokens.svg' };
export const REPORT_FILES = ['report.md', ...Object.values(FIGURES)];

export interface Study {
  spec: StudySpec;
  dirs: string[];
  warm: Map<number, WarmFile>;
  /** By algorithm, by seed. */
  runs: Map<string, Map<number, RunFile>>;
}

/** Reads the studies in some directories; directories with the same settings merge into one study. */
export async function loadStudies(dirs: readonly string[]): Promise<Study[]> {
  const studies: Study[] = [];
  for (const dir of dirs) {
    if (!existsSync(studyPath(dir)))
      throw new Error(`${dir}: no study here (${studyPath(dir)} is missing; igpo compare writes it)`);
    const spec = await readStudy(studyPath(dir));
    let study = studies.find((s) => firstDifference(s.spec, spec) === null);
    if (!study) studies.push((study = { spec, dirs: [], warm: new Map(), runs: new Map() }));
    study.dirs.push(dir);
    const warmDir = join(dir, 'warm');
    for (const f of existsSync(warmDir) ? readdirSync(warmDir) : []) {
      const m = /^seed-(\d+)\.json$/.exec(f);
      if (m) study.warm.set(Number(m[1]), await readWarm(warmPath(dir, Number(m[1]))));
    }
    const runDir = join(dir, 'runs');
    for (const f of existsSync(runDir) ? readdirSync(runDir) : []) {
      const m = /^(.+)-seed-(\d+)\.json$/.exec(f);
      if (!m) continue;
      const r = await readRun(runPath(dir, m[1], Number(m[2])));
      if (r.algo !== m[1] || r.seed !== Number(m[2]))
        throw new Error(
          `${runPath(dir, m[1], Number(m[2]))}: holds the run of ${r.algo} seed ${r.seed}, not what its name says`,
        );
      if (!study.runs.has(r.algo)) study.runs.set(r.algo, new Map());
      study.runs.get(r.algo)!.set(r.seed, r);
    }
  }
  return studies;
}

const ind = (r: RunFile) => r.result.evalAfter.inDomain.f1;
const ood = (r: RunFile) => r.result.evalAfter.ood.f1;
/** The mean over a run's RL steps of a per-step figure (its null steps left out). */
const overSteps = (r: RunFile, f: (m: StepMetrics) => number | null) =>
  meanOrNull(r.result.steps.flatMap((m) => (f(m as StepMetrics) === null ? [] : [f(m as StepMetrics)!])));
/** The mean eval F1 over the warm start and every evaluation of a run: the area under Fig. 5's curve, per point. */
const f1Area = (r: RunFile) =>
  meanOrNull([
    r.result.evalBefore.inDomain.f1,
    ...r.result.steps.flatMap((m) => (m.evalF1 === undefined ? [] : [m.evalF1])),
    ...(r.result.steps.at(-1)?.evalF1 === undefined ? [ind(r)] : []),
  ])!;

/** The algorithms in the study, in the registry's order. */
const algosOf = (s: Study): Algo[] => ALGOS.filter((a) => s.runs.has(a));

function interval(xs: (number | null)[]): Interval | null {
  const v = xs.filter((x): x is number => x !== null);
  return v.length ? tInterval(v) : null;
}

const cell = (i: Interval | null, digits = 3) => (i ? fmtInterval(i, digits) : '-');
const seedsOf = (m: ReadonlyMap<number, unknown>) => [...m.keys()].sort((a, b) => a - b);

/** The Markdown report of one study. */
export function studyReport(s: Study): string {
  const spec = s.spec;
  const algos = algosOf(s);
  const warmSeeds = seedsOf(s.warm);
  const lines: string[] = [];
  lines.push(`# igpo study: preset ${spec.preset.name}`, '');
  lines.push(
    `${warmSeeds.length} warm starts (seeds ${warmSeeds.join(', ') || '-'}); every run of a seed starts from that ` +
      `seed's warm start, sees the same questions, and stops at the first step that reaches ${spec.budget} sampled ` +
      `policy tokens (at most ${spec.maxSteps} steps). ` +
      `F1 is greedy decoding on ${spec.preset.rl.evalEpisodes} held-out (in-domain) and ` +
      `${spec.preset.rl.evalEpisodes} out-of-domain episodes per seed. ` +
      `Cells are means over seeds with a 95% Student-t interval over seeds (n - 1 degrees of freedom) in brackets; ` +
      `the seed counts are in the last columns. ` +
      `Probe \`${spec.rl.probe.name}\`, normalisation ${spec.rl.norm}${spec.rl.logSpace ? ', IG in log space' : ''}` +
      `${spec.rl.formatPenalty !== null ? `, format penalty ${spec.rl.formatPenalty}` : ''}. ` +
      `Read from ${s.dirs.join(', ')}.`,
    '',
  );

  // Tables 1 and 2.
  lines.push('## Main results (the layout of the paper\u2019s Tables 1 and 2)', '');
  lines.push(
    '| Method | In-domain F1 | Out-of-domain F1 | Avg. | advantage collapse | seeds | policy tokens per run | ' +
      'minutes per run |',
    '| :--- | :---: | :---: | :---: | :---: | :---: | :---: | :---: |',
  );
  const warm = [...s.warm.values()];
  if (warm.length) {
    lines.push('| *Prompt-based (the warm start, no RL)* | | | | | | | |');
    for (const mode of ['cot', 'rag', 'agent'] as EvalMode[]) {
      const e = warm.flatMap((w) => w.eval[mode] ?? []);
      if (e.length === 0) continue; // cot and rag in a --model study
      lines.push(
        `| ${EVAL_MODES[mode]} | ${cell(tInterval(e.map((x) => x.inDomain.f1)))} | ` +
          `${cell(tInterval(e.map((x) => x.ood.f1)))} | ` +
          `${cell(tInterval(e.map((x) => (x.inDomain.f1 + x.ood.f1) / 2)))} | - | ${warm.length} | 0 | - |`,
      );
    }
  }
  for (const [title, section] of [
    ['Outcome-reward RL', 'outcome'],
    ['Step-reward RL', 'step'],
  ] as const) {
    const rows = algos.filter((a) => ALGORITHMS[a].section === section);
    if (rows.length === 0) continue;
    lines.push(`| *${title}* | | | | | | | |`);
    for (const a of rows) {
      const rs = [...s.runs.get(a)!.values()];
      const tokens = Math.round(rs.reduce((n, r) => n + (r.result.steps.at(-1)?.policyTokens ?? 0), 0) / rs.length);
      lines.push(
        `| ${ALGORITHMS[a].display} | ${cell(tInterval(rs.map(ind)))} | ${cell(tInterval(rs.map(ood)))} | ` +
          `${cell(tInterval(rs.map((r) => (ind(r) + ood(r)) / 2)))} | ` +
          `${cell(interval(rs.map((r) => overSteps(r, (m) => m.collapsedGroups))), 2)} | ${rs.length} | ${tokens} ` +
          `| ${(rs.reduce((n, r) => n + r.seconds, 0) / rs.length / 60).toFixed(1)} |`,
      );
    }
  }
  lines.push(
    '',
    'Prompt-based rows are the warm-started model with no RL, decoding greedily: CoT answers with no search (the ' +
      '`<search>` tag is never sampled), CoT+RAG retrieves once with the question as its query and then answers, ' +
      'Search-o1 searches as the model decides. ' +
      'Advantage collapse is the paper\u2019s: the fraction of an RL step\u2019s groups whose outcome rewards are ' +
      'all equal, averaged over the run\u2019s steps.',
    '',
  );

  // Table 3.
  const ablation = (['grpo', 'ig', 'igpo'] as const).filter((a) => s.runs.has(a));
  if (ablation.length) {
    lines.push(
      '## Reward ablation (the paper\u2019s Table 3)',
      '',
      '| Reward | In-domain F1 | Out-of-domain F1 | Avg. | seeds |',
      '| :--- | :---: | :---: | :---: | :---: |',
    );
    const names = { grpo: 'IGPO (w/ F1) = GRPO', ig: 'IGPO (w/ IG)', igpo: 'IGPO (w/ F1+IG)' };
    for (const a of ablation) {
      const rs = [...s.runs.get(a)!.values()];
      lines.push(
        `| ${names[a]} | ${cell(tInterval(rs.map(ind)))} | ${cell(tInterval(rs.map(ood)))} | ` +
          `${cell(tInterval(rs.map((r) => (ind(r) + ood(r)) / 2)))} | ${rs.length} |`,
      );
    }
    lines.push('');
  }

  // Paired differences.
  if (s.runs.has('igpo') && algos.length > 1) {
    lines.push(
      '## Paired differences, IGPO minus each other algorithm',
      '',
      'Per seed, IGPO\u2019s figure minus the other algorithm\u2019s (same warm start, same questions), then the ' +
        'mean over seeds with its 95% Student-t interval. "yes" in the last column: the interval includes 0, so ' +
        'these seeds do not show a difference.',
      '',
      '| IGPO minus | figure | difference [95% interval] | pairs | includes 0 |',
      '| :--- | :--- | :---: | :---: | :---: |',
    );
    const igpo = s.runs.get('igpo')!;
    const figures: [string, (r: RunFile) => number | null, number][] = [
      ['in-domain F1', ind, 3],
      ['out-of-domain F1', ood, 3],
      ['mean eval F1 over training (Fig. 5\u2019s area)', f1Area, 3],
      ['advantage collapse', (r) => overSteps(r, (m) => m.collapsedGroups), 3],
      ['GT entropy reduction', (r) => overSteps(r, (m) => m.gtEntropyReduction), 3],
    ];
    for (const a of algos.filter((x) => x !== 'igpo')) {
      const other = s.runs.get(a)!;
      for (const [name, f, digits] of figures) {
        const map = (m: Map<number, RunFile>) =>
          new Map([...m].flatMap(([seed, r]) => (f(r) === null ? [] : [[seed, f(r)!] as [number, number]])));
        const [x, y] = [map(igpo), map(other)];
        if (![...x.keys()].some((k) => y.has(k))) continue;
        const d = pairedDifference(x, y);
        lines.push(
          `| ${ALGORITHMS[a].display} | ${name} | ${fmtInterval(d, digits)} | ${d.n} | ` +
            `${includesZero(d) ? 'yes' : 'no'} |`,
        );
      }
    }
    lines.push('');
  }

  // Per-run appendix.
  lines.push(
    '## Every run',
    '',
    '| algorithm | seed | steps | policy tokens | in-domain F1 | out-of-domain F1 | minutes | code |',
    '| :--- | ---: | ---: | ---: | ---: | ---: | ---: | :--- |',
  );
  for (const a of algos) {
    for (const [seed, r] of [...s.runs.get(a)!].sort((p, q) => p[0] - q[0])) {
      lines.push(
        `| ${a} | ${seed} | ${r.result.steps.length} | ${r.result.steps.at(-1)!.policyTokens} | ${ind(r).toFixed(3)} ` +
          `| ${ood(r).toFixed(3)} | ${(r.seconds / 60).toFixed(1)} | ` +
          `${r.code.replace(/^([0-9a-f]{12})[0-9a-f]+/, '$1')} |`,
      );
    }
  }
  lines.push(
    '',
    `Figures: ${FIGURES.collapse} (advantage collapse over RL steps), ${FIGURES.entropy} (ground-truth entropy ` +
      `reduction over RL steps), ${FIGURES.tokens} (eval F1 against policy tokens).`,
    '',
  );
  return lines.join('\n');
}

/** Mean and 95% interval over seeds at each x of a per-run series; a point needs 2 seeds for a band. */
function bands(s: Study, series: (r: RunFile) => { x: number; y: number }[]): BandPanel['points'] {
  const out: BandPanel['points'] = [];
  for (const a of algosOf(s)) {
    const byIndex = new Map<number, { x: number[]; y: number[] }>();
    for (const r of s.runs.get(a)!.values()) {
      series(r).forEach((p, k) => {
        const b = byIndex.get(k) ?? { x: [], y: [] };
        b.x.push(p.x);
        b.y.push(p.y);
        byIndex.set(k, b);
      });
    }
    for (const [, b] of [...byIndex].sort((p, q) => p[0] - q[0])) {
      const i = tInterval(b.y);
      out.push({
        series: ALGORITHMS[a].display,
        x: b.x.reduce((t, v) => t + v, 0) / b.x.length,
        mean: i.mean,
        lo: i.lo ?? i.mean,
        hi: i.hi ?? i.mean,
      });
    }
  }
  return out;
}

/** The figures of one study into `dir`. */
export async function studyFigures(s: Study, dir: string): Promise<string[]> {
  const perStep = (f: (m: StepMetrics) => number | null) => (r: RunFile) =>
    r.result.steps.flatMap((m) => (f(m as StepMetrics) === null ? [] : [{ x: m.step, y: f(m as StepMetrics)! }]));
  const evals =
    (split: 'evalF1' | 'oodF1', before: (r: RunFile) => number, after: (r: RunFile) => number) => (r: RunFile) => {
      const pts = [
        { x: 0, y: before(r) },
        ...r.result.steps.flatMap((m) => (m[split] === undefined ? [] : [{ x: m.policyTokens / 1000, y: m[split]! }])),
      ];
      const last = r.result.steps.at(-1)!;
      if (last[split] === undefined) pts.push({ x: last.policyTokens / 1000, y: after(r) });
      return pts;
    };
  const band = `mean over seeds, band: 95% t interval`;
  const files: [string, BandPanel[]][] = [
    [
      FIGURES.collapse,
      [
        {
          title: `Advantage collapse (${band})`,
          x: 'RL step (0: the warm start\u2019s rollouts)',
          y: 'groups whose outcomes are all equal',
          points: bands(
            s,
            perStep((m) => m.collapsedGroups),
          ),
        },
      ],
    ],
    [
      FIGURES.entropy,
      [
        {
          title: `Ground-truth entropy reduction, turn 0 to the last tool response (${band})`,
          x: 'RL step',
          y: 'log p_last - log p_0 (nats)',
          points: bands(
            s,
            perStep((m) => m.gtEntropyReduction),
          ),
        },
      ],
    ],
    [
      FIGURES.tokens,
      [
        {
          title: `In-domain F1 against policy tokens (${band})`,
          x: 'policy tokens sampled (thousands; 0: the warm start)',
          y: 'greedy eval F1, in-domain',
          points: bands(
            s,
            evals('evalF1', (r) => r.result.evalBefore.inDomain.f1, ind),
          ),
        },
        {
          title: `Out-of-domain F1 against policy tokens (${band})`,
          x: 'policy tokens sampled (thousands; 0: the warm start)',
          y: 'greedy eval F1, out-of-domain',
          points: bands(
            s,
            evals('oodF1', (r) => r.result.evalBefore.ood.f1, ood),
          ),
        },
      ],
    ],
  ];
  await mkdir(dir, { recursive: true });
  for (const [name, panels] of files) await writeBands(join(dir, name), panels);
  return files.map(([name]) => join(dir, name));
}

/** `igpo report`: one report per study found in `dirs`, written to `out` (the first directory by default). */
export async function runReport(dirs: readonly string[], out?: string): Promise<string[]> {
  if (dirs.length === 0) throw new Error('report: give at least one study directory');
  const studies = await loadStudies(dirs);
  const written: string[] = [];
  for (const s of studies) {
    const dir = out ? (studies.length > 1 ? join(out, s.spec.preset.name) : out) : s.dirs[0];
    await mkdir(dir, { recursive: true });
    await writeFileAtomic(join(dir, 'report.md'), studyReport(s));
    written.push(join(dir, 'report.md'), ...(await studyFigures(s, dir)));
  }
  return written;
}
