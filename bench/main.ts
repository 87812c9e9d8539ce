// The benchmark command: `npm run bench` runs every suite in bench/registry.ts, `npm run bench -- SUITE`
// one of them; the report goes to stdout as markdown (progress to stderr), and to a markdown and a JSON
// file under bench-results/ (or --md / --json). Not a suite: those are in bench/suites/.

import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Argument, Command, Option } from 'commander';
import { suites } from './registry.js';
import type { Report } from './report.js';
import { releaseWebGPU, runSuites, writeReport } from './run.js';

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
  const log = (line: string) => process.stderr.write(`${line}\n`);
  const report = await runSuites(names, { quick: opts.quick, sizes: opts.sizes, log }, command);
  const mdPath = opts.md ?? defaultPath(suite, opts, 'md');
  const jsonPath = opts.json ?? defaultPath(suite, opts, 'json');
  // The GPU machine's own run writes that file: it does not include its previous self.
  if (resolve(opts.gpuJson) !== resolve(jsonPath) && existsSync(opts.gpuJson)) {
    report.gpuRun = JSON.parse(readFileSync(opts.gpuJson, 'utf8')) as Report;
    log(`including the NVIDIA GPU run from ${opts.gpuJson}`);
  }
  process.stdout.write(writeReport(report, mdPath, jsonPath));
  log(`wrote ${mdPath} and ${jsonPath}`);
  await releaseWebGPU();
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
