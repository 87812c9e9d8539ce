// The GPU check: one command for a machine with a GPU (or lavapipe) that prints the adapter, its features
// and limits; runs the kernel tests against it with REQUIRE_WEBGPU=1 (each test file in its own process,
// as vitest isolates files); and runs the kernels and model benches at GPU sizes. Everything it writes goes
// under OUTDIR (temporary files too). scripts/gpu-check.sh builds it (the tests' 'vitest' import aliased
// to gpu-check/vitest-shim.ts) and runs it, with Node or from a bundle; it does not run under tsx.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import writeFileAtomic from 'write-file-atomic';
import { startTests, type File, type Task, type VitestRunner, type VitestRunnerConfig } from '@vitest/runner';
import { releaseWebGPU, runSuites, writeReport } from '../bench/run.js';
import { describeAdapter, initWebGPU } from '../kernels/index.js';
import { KERNEL_TEST_FILES } from './gpu-check/tests.js';

interface Options {
  quick: boolean;
  tests: boolean;
  bench: boolean;
  /** Only the test files whose path contains this. */
  only?: string;
  /** Internal: run one test file in this process and write its results to `result`. */
  testFile?: string;
  result?: string;
}

/** One test's outcome, as tests.json lists it. */
interface TestOutcome {
  file: string;
  name: string;
  state: string;
  ms: number;
  /** The first error's message (failures), or the reason given (skips). */
  message?: string;
}

/** A test file gets this long in its own process before it is stopped and counted as failed. */
const FILE_TIMEOUT_MS = 30 * 60_000;

const log = (line: string) => process.stderr.write(`${line}\n`);

function writeJson(file: string, value: unknown): void {
  writeFileAtomic.sync(file, JSON.stringify(value, null, 2) + '\n');
}

async function main(outdir: string, opts: Options): Promise<void> {
  const out = resolve(outdir);
  if (opts.testFile) return runTestFile(opts.testFile, opts.result!);
  mkdirSync(out, { recursive: true });
  // Temporary files (test fixtures) under OUTDIR too; Dawn's runtime directory where none is set; and the
  // drivers' shader caches (Mesa's, NVIDIA's), which would otherwise go to ~/.cache and ~/.nv. Set before
  // the first adapter loads a driver; the test processes inherit them.
  process.env.TMPDIR = join(out, 'tmp');
  mkdirSync(process.env.TMPDIR, { recursive: true });
  process.env.XDG_RUNTIME_DIR ??= process.env.TMPDIR;
  const cache = join(out, 'cache');
  process.env.XDG_CACHE_HOME = cache;
  process.env.MESA_SHADER_CACHE_DIR = join(cache, 'mesa');
  process.env.__GL_SHADER_DISK_CACHE_PATH = join(cache, 'nvidia');
  mkdirSync(process.env.__GL_SHADER_DISK_CACHE_PATH, { recursive: true });
  process.env.REQUIRE_WEBGPU = '1';

  const { adapter } = await initWebGPU();
  writeJson(join(out, 'adapter.json'), adapter);
  log(`adapter: ${describeAdapter(adapter)}`);
  log(`features: ${[...adapter.features].sort().join(', ')}`);
  log(`limits: ${JSON.stringify(adapter.limits)}`);
  log(`toggles: ${process.env.WEBGPU_TOGGLES ?? '(none)'}`);

  let failed = 0;
  if (opts.tests) failed += runTests(out, opts.only);
  if (opts.bench) {
    const command = `gpu-check ${outdir}${opts.quick ? ' --quick' : ''} (kernels and model suites, --sizes gpu)`;
    try {
      const report = await runSuites(['kernels', 'model'], { quick: opts.quick, sizes: 'gpu', log }, command);
      process.stdout.write(writeReport(report, join(out, 'bench.md'), join(out, 'bench.json')));
      log(`gpu-check: wrote ${join(out, 'bench.md')} and bench.json`);
    } catch (e) {
      failed++;
      log(`gpu-check: the benchmarks stopped: ${(e as Error).stack ?? e}`);
    }
  }
  await releaseWebGPU();
  log(failed ? `gpu-check: ${failed} failure(s); see ${out}` : `gpu-check: all passed; results in ${out}`);
  process.exitCode = failed ? 1 : 0;
}

/** Every kernel test file in a process of its own; returns the number of failed tests (or files). */
function runTests(out: string, only?: string): number {
  const dir = join(out, 'tests');
  mkdirSync(dir, { recursive: true });
  const outcomes: TestOutcome[] = [];
  let failedFiles = 0;
  const files = Object.keys(KERNEL_TEST_FILES).filter((f) => !only || f.includes(only));
  if (files.length === 0) throw new Error(`gpu-check: no kernel test file matches --only '${only}'`);
  for (const file of files) {
    const result = join(dir, file.replace(/^tests\/kernels\//, '').replace(/\.ts$/, '.json'));
    const t0 = performance.now();
    const child = spawnSync(process.execPath, [process.argv[1], out, '--test-file', file, '--result', result], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: process.env,
      timeout: FILE_TIMEOUT_MS,
    });
    const seconds = ((performance.now() - t0) / 1000).toFixed(0);
    if (!existsSync(result)) {
      failedFiles++;
      const why = child.error?.message ?? (child.signal ? `signal ${child.signal}` : `exit code ${child.status}`);
      log(`FAIL ${file}: no results (${why}) after ${seconds} s`);
      outcomes.push({ file, name: '(the whole file)', state: 'fail', ms: 0, message: `no results: ${why}` });
      continue;
    }
    const mine = JSON.parse(readFileSync(result, 'utf8')) as TestOutcome[];
    outcomes.push(...mine);
    const count = (s: string) => mine.filter((t) => t.state === s).length;
    const counts = `${count('pass')} passed, ${count('fail')} failed, ${count('skip')} skipped`;
    log(`${count('fail') ? 'FAIL' : 'ok  '} ${file}: ${counts} (${seconds} s)`);
  }
  const failures = outcomes.filter((t) => t.state === 'fail');
  const summary = {
    passed: outcomes.filter((t) => t.state === 'pass').length,
    failed: failures.length,
    skipped: outcomes.filter((t) => t.state === 'skip').length,
    tests: outcomes,
  };
  writeJson(join(out, 'tests.json'), summary);
  for (const f of failures) log(`  failed: ${f.file} > ${f.name}: ${f.message ?? ''}`);
  log(`kernel tests: ${summary.passed} passed, ${summary.failed} failed, ${summary.skipped} skipped`);
  return failures.length + failedFiles;
}

/** The child's side: one test file through vitest's runner, its outcomes written to `result`. */
async function runTestFile(file: string, result: string): Promise<void> {
  const load = KERNEL_TEST_FILES[file];
  if (!load) throw new Error(`gpu-check: no test file '${file}' in scripts/gpu-check/tests.ts`);
  await import('../tests/setup.js'); // fast-check's seed and runs, as vitest.config.ts's setupFiles
  const config: VitestRunnerConfig = {
    root: process.cwd(),
    setupFiles: [],
    name: undefined,
    passWithNoTests: false,
    testNamePattern: undefined,
    allowOnly: false,
    sequence: { seed: 0, hooks: 'stack', setupFiles: 'list', shuffle: false, concurrent: false },
    chaiConfig: undefined,
    maxConcurrency: 1,
    testTimeout: 60_000, // vitest.config.ts's
    hookTimeout: 60_000,
    retry: 0,
    includeTaskLocation: false,
    tags: [],
    tagsFilter: undefined,
    strictTags: false,
  };
  const runner: VitestRunner = {
    config,
    importFile: async () => void (await load()),
    onAfterRunTask: (test) => {
      const r = test.result;
      const mark = r?.state === 'pass' ? '  ✓' : r?.state === 'fail' ? '  ✗' : '  -';
      const why = r?.state === 'fail' ? `: ${firstError(test)}` : '';
      log(`${mark} ${test.name} (${(r?.duration ?? 0).toFixed(0)} ms)${why}`);
    },
  };
  const files = await startTests([file], runner);
  writeJson(result, outcomesOf(files));
  process.exitCode = 0;
}

function firstError(t: Task): string {
  return (t.result?.errors?.[0]?.message ?? '').split('\n')[0];
}

function outcomesOf(files: File[]): TestOutcome[] {
  const out: TestOutcome[] = [];
  const walk = (t: Task, file: string, path: string[]) => {
    if (t.type === 'suite') {
      for (const c of t.tasks) walk(c, file, [...path, t.name]);
      // A file or suite whose collection or hooks failed has errors of its own and may have no tests.
      if (t.result?.state === 'fail' && t.result.errors?.length)
        out.push({
          file,
          name: [...path, t.name, '(suite)'].join(' > '),
          state: 'fail',
          ms: 0,
          message: firstError(t),
        });
      return;
    }
    const state = t.result?.state ?? (t.mode === 'skip' || t.mode === 'todo' ? 'skip' : 'not run');
    // The runner keeps ctx.skip(note)'s reason on the result, beyond its declared type.
    const note = (t.result as { note?: string } | undefined)?.note;
    const message = state === 'fail' ? firstError(t) : note;
    out.push({
      file,
      name: [...path, t.name].join(' > '),
      state,
      ms: t.result?.duration ?? 0,
      ...(message ? { message } : {}),
    });
  };
  for (const f of files) for (const t of f.tasks) walk(t, f.name, []);
  for (const f of files)
    if (f.result?.state === 'fail' && f.result.errors?.length)
      out.push({ file: f.name, name: '(file)', state: 'fail', ms: 0, message: firstError(f) });
  return out;
}

await new Command()
  .name('gpu-check')
  .description('Adapter, kernel tests and GPU-size benchmarks on this machine; everything under OUTDIR.')
  .argument('<outdir>', 'where everything goes (made if missing)')
  .option('--quick', 'benchmarks as a smoke run (few, short samples): checks that they run, not numbers', false)
  .option('--no-tests', 'skip the kernel tests')
  .option('--no-bench', 'skip the benchmarks')
  .option('--only <text>', 'only the kernel test files whose path contains this (e.g. matmul)')
  .option('--test-file <file>', '(internal) run one test file in this process')
  .option('--result <file>', '(internal) where --test-file writes its outcomes')
  .action(main)
  .parseAsync();
