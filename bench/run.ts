// Running suites into a report, and writing it: the loop behind `npm run bench` (main.ts) and the GPU
// check (scripts/gpu-check.ts). Not the command line (main.ts) and not the markdown (report.ts).

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { hasBackend } from '../engine/index.js';
import type { SuiteOptions } from './harness.js';
import { suites } from './registry.js';
import { loadavg, markdown, reportMeta, type Report } from './report.js';

/** Runs the named suites one after another; progress goes to `log`. */
export async function runSuites(
  names: readonly string[],
  opts: Pick<SuiteOptions, 'quick' | 'sizes' | 'log'>,
  command: string,
): Promise<Report> {
  const report: Report = { meta: reportMeta(opts.quick, command), suites: [] };
  for (const name of names) {
    const load = suites[name];
    if (!load) throw new Error(`bench: no suite '${name}' (suites: ${Object.keys(suites).join(', ')})`);
    const mod = await load();
    if (mod.name !== name) throw new Error(`bench/registry.ts lists '${name}' but its module is named '${mod.name}'`);
    opts.log(`suite ${name}${opts.quick ? ' (quick)' : ''}${opts.sizes === 'gpu' ? ' (GPU sizes)' : ''}`);
    const t0 = performance.now();
    const load0 = loadavg();
    const notes: string[] = [];
    const rows = await mod.run({ ...opts, note: (line) => notes.push(line) });
    const seconds = (performance.now() - t0) / 1000;
    opts.log(`suite ${name}: ${rows.length} cases in ${seconds.toFixed(1)} s`);
    report.suites.push({ name, rows, notes, seconds, load: [load0, loadavg()] });
  }
  return report;
}

/** Writes the report's markdown and JSON atomically (folders made as needed); returns the markdown. */
export function writeReport(report: Report, mdPath: string, jsonPath: string): string {
  const md = markdown(report);
  write(mdPath, md);
  write(jsonPath, JSON.stringify(report, null, 2) + '\n');
  return md;
}

/** Suites leave the WebGPU device alive for the next one (bench/webgpu.ts says why); it goes here, once. */
export async function releaseWebGPU(): Promise<void> {
  if (hasBackend('webgpu')) await (await import('../kernels/index.js')).destroyWebGPU();
}

function write(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileAtomic.sync(file, text);
}
