// The benchmark command: `npm run bench` runs every suite in bench/registry.ts, `npm run bench -- SUITE`
// one of them; the report goes to stdout as markdown (progress to stderr), and to a markdown and a JSON
// file under bench-results/ (or --md / --json). Not a suite: those are in bench/suites/.

import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { Argument, Command, Option } from 'commander';
import { hasBackend } from '../engine/index.js';
import { suites } from './registry.js';
import { loadavg, markdown, reportMeta, type Report } from './report.js';

interface Options {
  json?: string;
  md?: string;
  gpuJson: string;
  quick: boolean;
  sizes: 'default' | 'gpu';
}

/** bench-results/bench.md for all suites, bench-results/SUITE.md for one; -gpu-sizes, -quick added. */
function defaultPath(suite: string | undefined, opts: Options, ext: 'md' | 'json'): string {
  const tags = `${opts.sizes === 'gpu' ? '-gpu-sizes' : ''}${opts.quick ? '-quick' : ''}`;
  return `bench-results/${suite ?? 'bench'}${tags}.${ext}`;
}

async function main(suite: string | undefined, opts: Options): Promise<void> {
  const names = suite ? [suite] : Object.keys(suites);
  const command = ['npm run bench --', ...process.argv.slice(2)].join(' ').replace(/ --$/, '');
  const report: Report = { meta: reportMeta(opts.quick, command), suites: [] };
  const log = (line: string) => process.stderr.write(`${line}\n`);
  for (const name of names) {
    const mod = await suites[name]();
    if (mod.name !== name) throw new Error(`bench/registry.ts lists '${name}' but its module is named '${mod.name}'`);
    log(`suite ${name}${opts.quick ? ' (quick)' : ''}${opts.sizes === 'gpu' ? ' (GPU sizes)' : ''}`);
    const t0 = performance.now();
    const load0 = loadavg();
    const notes: string[] = [];
    const rows = await mod.run({ quick: opts.quick, sizes: opts.sizes, log, note: (line) => notes.push(line) });
    const seconds = (performance.now() - t0) / 1000;
    log(`suite ${name}: ${rows.length} cases in ${seconds.toFixed(1)} s`);
    report.suites.push({ name, rows, notes, seconds, load: [load0, loadavg()] });
  }
  const mdPath = opts.md ?? defaultPath(suite, opts, 'md');
  const jsonPath = opts.json ?? defaultPath(suite, opts, 'json');
  // The GPU machine's own run writes that file: it does not include its previous self.
  if (resolve(opts.gpuJson) !== resolve(jsonPath) && existsSync(opts.gpuJson)) {
    report.gpuRun = JSON.parse(readFileSync(opts.gpuJson, 'utf8')) as Report;
    log(`including the NVIDIA GPU run from ${opts.gpuJson}`);
  }
  const md = markdown(report);
  process.stdout.write(md);
  write(mdPath, md);
  write(jsonPath, JSON.stringify(report, null, 2) + '\n');
  log(`wrote ${mdPath} and ${jsonPath}`);
  // Suites leave the WebGPU device alive for the next one (bench/webgpu.ts says why); it goes here, once.
  if (hasBackend('webgpu')) await (await import('../kernels/index.js')).destroyWebGPU();
}

function write(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileAtomic.sync(file, text);
}

const program = new Command()
  .name('npm run bench --')
  .description('Runs benchmark suites: ours against a peer measured in the same run, with napkin math.')
  .addArgument(new Argument('[suite]', 'the suite to run (all when omitted)').choices(Object.keys(suites)))
  .option(
    '--json <file>',
    'where the JSON report goes (default bench-results/bench.json, or SUITE.json for one suite; -quick ' +
      'added with --quick)',
  )
  .option('--md <file>', 'where the markdown report goes (default as for --json, .md)')
  .option(
    '--gpu-json <file>',
    'the JSON of a run on an NVIDIA GPU, shown in its own section when the file exists',
    'bench-results/gpu/bench.json',
  )
  .addOption(
    new Option(
      '--sizes <set>',
      "'gpu' adds the kernels suite's GPU sizes (matmul 4096^3 and 8192^3, 256 MiB streams, attention at B*H = 32, " +
        'T = 2048)',
    )
      .choices(['default', 'gpu'])
      .default('default'),
  )
  .option('--quick', 'few, short samples: a smoke run that finishes fast, not numbers to quote', false)
  .action(main);

await program.parseAsync();
