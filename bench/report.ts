// The report: one markdown table per suite (stdout and --md) and the same rows as JSON (--json), with
// the machine and load they were measured under, a "how cost grows" section built from rows that carry a
// growth series, and a section reserved for a run on an NVIDIA GPU. Only ratios measured in one run compare fairly.

import os from 'node:os';
import type { Row, Timing } from './harness.js';

export interface SuiteResult {
  name: string;
  rows: Row[];
  /** Lines the suite noted: the adapter it used, cases it skipped and why, what its peer is. */
  notes?: string[];
  /** Wall time of the whole suite, in seconds. */
  seconds?: number;
  /** 1-minute load average when the suite started and when it ended. */
  load?: [number, number];
}

export interface Report {
  meta: {
    date: string;
    node: string;
    platform: string;
    cpu: string;
    cores: number;
    /** 1-minute load average at the start: on a shared machine, read the spreads with it. */
    loadavg: number;
    quick: boolean;
    command: string;
  };
  suites: SuiteResult[];
  /**
   * Figures from a run on a Linux machine with an NVIDIA GPU (bench/README.md has the recipe), read from
   * that run's JSON and shown in a section of their own; absent when no such run was made.
   */
  gpuRun?: Report;
}

export const loadavg = (): number => Number(os.loadavg()[0].toFixed(2));

export function reportMeta(quick: boolean, command: string): Report['meta'] {
  return {
    date: new Date().toISOString(),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    cores: os.cpus().length,
    loadavg: loadavg(),
    quick,
    command,
  };
}

/** Three significant digits, without exponent notation; from 100000 up with a k or M suffix. */
function num(x: number): string {
  if (!Number.isFinite(x)) return String(x);
  if (x === 0) return '0';
  if (Math.abs(x) >= 1e8) return `${num(x / 1e6)}M`;
  if (Math.abs(x) >= 1e5) return `${num(x / 1e3)}k`;
  const digits = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(x))));
  return x.toFixed(Math.min(digits, 4));
}

const rate = (t: Timing, unit: string) => `${num(t.rate)} ${unit}`;
const dash = '—';
/** Markdown table cells must not contain a bare pipe. */
const cell = (s: string) => s.replace(/\|/g, '\\|');

function metaLine(m: Report['meta']): string {
  return (
    `Measured ${m.date} with \`${m.command}\`: Node ${m.node}, ${m.platform}, ${m.cpu} (${m.cores} cores), load ` +
    `${m.loadavg}${m.quick ? ', --quick (smoke run: do not quote)' : ''}.`
  );
}

function suiteTable(s: SuiteResult, heading: string): string[] {
  const lines = ['', `${heading} ${s.name}`, ''];
  if (s.seconds !== undefined) {
    lines.push(
      `${s.rows.length} cases in ${s.seconds.toFixed(0)} ` +
        `s${s.load ? `, load ${s.load[0]} at the start and ${s.load[1]} at the end` : ''}.`,
      '',
    );
  }
  const notes = s.rows.some((r) => r.note || r.calls || r.gpuMs);
  lines.push(
    `| case | shape | ours ms | peer | peer ms | peer/ours | ours rate | peer rate | n ours / peer | ± ours / peer ` +
      `|${notes ? ' napkin math, notes |' : ''}`,
  );
  lines.push(`| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |${notes ? ' --- |' : ''}`);
  for (const row of s.rows) {
    const p = row.peer;
    const a = row.also;
    const oursRate = rate(row.ours, row.unit) + (a ? `, ${num(a.ours)} ${a.unit}` : '');
    const peerRate = p ? rate(p, row.unit) + (a && a.peer !== null ? `, ${num(a.peer)} ${a.unit}` : '') : dash;
    lines.push(
      `| ${cell(row.case)} | ${cell(row.shape)} | ${num(row.ours.medianMs)} | ${p?.name ?? dash} | ` +
        `${p ? num(p.medianMs) : dash} | ${row.ratio === null ? dash : `${num(row.ratio)}x`} | ` +
        `${oursRate} | ${peerRate} | ${row.ours.samples} / ${p?.samples ?? dash} | ` +
        `${row.ours.spreadPct.toFixed(1)}% / ${p ? `${p.spreadPct.toFixed(1)}%` : dash} ` +
        `|${notes ? ` ${cell(rowNotes(row))} |` : ''}`,
    );
  }
  if (s.notes?.length) lines.push('', ...s.notes.map((n) => `- ${n}`));
  return lines;
}

/** A row's note, after its GPU times and its calls per readback where it has them. */
function rowNotes(row: Row): string {
  const parts: string[] = [];
  const g = row.gpuMs;
  if (g && (g.ours !== null || g.peer !== null)) {
    const ms = (x: number | null) => (x === null ? dash : num(x));
    parts.push(`GPU ms per call (timestamp queries) ours ${ms(g.ours)} / peer ${ms(g.peer)}`);
  }
  if (row.calls) parts.push(`calls per readback ours ${row.calls.ours} / peer ${row.calls.peer ?? dash}`);
  if (row.note) parts.push(row.note);
  return parts.join('; ');
}

/**
 * "How cost grows": every growth series of the report, each size against the previous one. The exponent
 * is log(time ratio) / log(size ratio): about 1 where cost is linear in the size, 2 where it is quadratic,
 * below 1 where a fixed cost per call still dominates.
 */
function growthSection(r: Report): string[] {
  const series = new Map<string, { suite: string; name: string; points: { row: Row; size: number }[] }>();
  for (const s of r.suites) {
    for (const row of s.rows) {
      for (const g of row.growth ?? []) {
        const key = `${s.name}\u0000${g.series}`;
        if (!series.has(key)) series.set(key, { suite: s.name, name: g.series, points: [] });
        series.get(key)!.points.push({ row, size: g.size });
      }
    }
  }
  if (series.size === 0) return [];
  const lines = [
    '',
    '## How cost grows',
    '',
    'Each series lists one case over growing sizes. x size and x time divide a row by the row before it; the ' +
      'exponent is log(x time) / log(x size): 1 is linear, 2 quadratic, below 1 a fixed cost per call still weighs.',
    '',
    '| suite | series | shape | size | ours ms | x size | x time | exponent | peer ms | peer x time | peer exponent |',
    '| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ];
  for (const { suite, name, points } of series.values()) {
    points.forEach(({ row, size }, i) => {
      const prev = i > 0 ? points[i - 1] : null;
      const xs = prev ? size / prev.size : null;
      const xt = prev ? row.ours.medianMs / prev.row.ours.medianMs : null;
      const xp = prev && row.peer && prev.row.peer ? row.peer.medianMs / prev.row.peer.medianMs : null;
      const exp = (x: number | null) =>
        x !== null && xs !== null && xs !== 1 ? num(Math.log(x) / Math.log(xs)) : dash;
      lines.push(
        `| ${suite} | ${cell(name)} | ${cell(row.shape)} | ${size} | ${num(row.ours.medianMs)} | ` +
          `${xs === null ? dash : num(xs)} | ${xt === null ? dash : num(xt)} | ${exp(xt)} | ` +
          `${row.peer ? num(row.peer.medianMs) : dash} | ${xp === null ? dash : num(xp)} | ${exp(xp)} |`,
      );
    });
  }
  return lines;
}

function gpuSection(r: Report): string[] {
  const lines = ['', '## On an NVIDIA GPU', ''];
  if (!r.gpuRun) {
    lines.push(
      'No such run is part of this report. bench/README.md ("On a Linux machine with an NVIDIA GPU") says how to ' +
        'make one; its JSON, ' +
        'copied to bench-results/gpu/bench.json (or named with --gpu-json FILE), is shown here.',
    );
    return lines;
  }
  lines.push(metaLine(r.gpuRun.meta));
  for (const s of r.gpuRun.suites) lines.push(...suiteTable(s, '###'));
  return lines;
}

export function markdown(r: Report): string {
  const lines: string[] = [
    metaLine(r.meta),
    "Median wall time per call. peer/ours is the peer's median over ours: above 1, ours is faster. n is samples; ± " +
      'is the median absolute deviation over the median.',
  ];
  for (const s of r.suites) lines.push(...suiteTable(s, '##'));
  lines.push(...growthSection(r));
  lines.push(...gpuSection(r));
  return lines.join('\n') + '\n';
}
