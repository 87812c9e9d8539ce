// The `igpo` command line: `igpo train` (warm-up then RL, the main job), `igpo compare` and `igpo report`
// (the study: the paper's comparisons at our scale) and `igpo eval` (a checkpoint's F1, and its p_t dumped).
// Argument parsing is commander's; the work is in trainer.ts, compare.ts and report.ts.

import { Command, InvalidArgumentError, Option } from 'commander';
import { availableParallelism } from 'node:os';
import * as E from '../engine/index.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ALGOS, type Algo } from './algorithms.js';
import { fromConfig, readConfig, resolveConfig, type PartialConfig, type RunConfig } from './config.js';
import { PROBES, resolveProbe, type Probe } from './reward.js';
import { PRESETS, runTraining } from './trainer.js';

function int(name: string, min = -Infinity) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min)
      throw new InvalidArgumentError(`${name} must be an integer${min > -Infinity ? ` >= ${min}` : ''}, got '${v}'`);
    return n;
  };
}

/** Resolves --device: 'auto' takes WebGPU when an adapter exists and says so when it falls back. */
export async function resolveDevice(device: 'auto' | 'cpu' | 'webgpu'): Promise<E.Device> {
  if (device === 'cpu') return 'cpu';
  try {
    const { selectDevice } = await import('../kernels/index.js');
    return await selectDevice(device);
  } catch (e) {
    if (device === 'webgpu') throw e;
    console.warn(`device auto: WebGPU unavailable (${(e as Error).message.split('\n')[0]}); using the CPU backend`);
    return 'cpu';
  }
}

function number(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number, got '${v}'`);
    return n;
  };
}

const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('igpo')
  .description('Information Gain-based Policy Optimization on a tiny search agent, in TypeScript')
  .version(pkg.version);

/** A bad combination of flags: one line, exit 1 (commander's own error). */
const usageError = (msg: string): never => program.error(`error: ${msg}`);

type DeviceFlag = 'auto' | 'cpu' | 'webgpu';

interface ProbeFlags {
  probe: string;
  probePrefix?: string;
  probeClose?: boolean;
}

/** The probe flags: which probe measures p_t (`dflt` when not given), and its two options. */
function withProbe(cmd: Command, dflt: { value: string; description?: string }): Command {
  return cmd
    .addOption(
      new Option(
        '--probe <probe>',
        'how p_t is measured: think (an answer turn\u2019s opening, then the gold answer scored) or bare (the first ' +
          'probe: <answer>gold</answer>, every token scored)',
      )
        .choices(Object.keys(PROBES))
        .default(dflt.value, dflt.description),
    )
    .option('--probe-prefix <text>', 'the probe\u2019s unscored opening text instead of its own')
    .option('--probe-close', 'score the closing </answer> too');
}

function probeOf(o: ProbeFlags): Probe {
  try {
    return resolveProbe(o.probe, { prefix: o.probePrefix, close: o.probeClose });
  } catch (e) {
    return usageError(`--probe: ${(e as Error).message}`);
  }
}

interface RLFlags extends ProbeFlags {
  norm: 'joint' | 'separate';
  igLogSpace?: boolean;
  formatPenalty?: number;
  config?: string;
  algo?: string;
  preset: string;
  seed?: number;
  initFrom?: string;
}

/** What the paper and the authors' released script vary, on train and compare alike; and --config. */
function withRLOptions(cmd: Command): Command {
  return withProbe(cmd, { value: 'think' })
    .addOption(
      new Option('--norm <norm>', 'turn-reward normalisation: joint (paper) or separate (authors\u2019 code)')
        .choices(['joint', 'separate'])
        .default('joint'),
    )
    .option('--ig-log-space', 'IG as log p_t - log p_{t-1} (the authors\u2019 log_prob_diff)')
    .option(
      '--format-penalty <r>',
      'outcome reward of a malformed or answerless episode instead of 0 (the authors\u2019 code: -2); off by default',
      number('--format-penalty'),
    )
    .addOption(
      new Option('--preset <preset>', 'sizes and step counts').choices(Object.keys(PRESETS)).default('default'),
    )
    .option('--config <file>', 'a YAML or JSON file of settings (every key of a preset; README.md); flags override it')
    .option('--init-from <checkpoint>', 'start RL from this checkpoint instead of a warm-up');
}

/**
 * The flags a user gave, as configuration keys: they override a --config file, which overrides the preset.
 * Defaults commander fills in are not given flags.
 */
function flagConfig(cmd: Command, o: RLFlags & { evalEvery?: number; budget?: number }): PartialConfig {
  const given = (k: string) => cmd.getOptionValueSource(k) === 'cli';
  const pick = <T>(k: string, v: T) => (given(k) ? v : undefined);
  return {
    preset: pick('preset', o.preset),
    algo: pick('algo', o.algo as Algo),
    seed: pick('seed', o.seed),
    rl: {
      probe: pick('probe', o.probe),
      probe_prefix: pick('probePrefix', o.probePrefix),
      probe_close: pick('probeClose', o.probeClose),
      norm: pick('norm', o.norm),
      ig_log_space: pick('igLogSpace', o.igLogSpace),
      format_penalty: pick('formatPenalty', o.formatPenalty),
      eval_every: pick('evalEvery', o.evalEvery),
    },
    compare: { budget: pick('budget', o.budget) },
  };
}

/** The run's configuration from its file and flags, checked before any work; a bad one is a usage error. */
async function configOfFlags(cmd: Command, o: RLFlags & { evalEvery?: number; budget?: number }): Promise<RunConfig> {
  const file = o.config ? await readConfig(o.config) : {};
  try {
    const config = resolveConfig(file, flagConfig(cmd, o));
    fromConfig(config); // the probe's options, checked
    return config;
  } catch (e) {
    return usageError((e as Error).message);
  }
}

/** Fails before any work when a checkpoint to read is not there. */
function checkReadable(flag: string, file: string | undefined): void {
  if (file !== undefined && !existsSync(file)) usageError(`${flag} ${file}: no such file`);
}

const train = program
  .command('train')
  .description(
    'supervised warm-up on expert demonstrations, then RL; writes metrics.jsonl, model.safetensors, ' +
      'curves.svg, report.md',
  )
  .addOption(
    new Option(
      '--algo <algo>',
      'igpo (F1 + IG), grpo (F1 only), ig (IG only), or a baseline: rloo, ppo, reinforce++, gspo, gigpo, stepsearch',
    )
      .choices(ALGOS)
      .default('igpo'),
  )
  .addOption(new Option('--device <device>', 'backend').choices(['auto', 'cpu', 'webgpu']).default('cpu'))
  .option('--seed <n>', 'random seed', int('--seed', 0), 0)
  .option('--out <dir>', 'output directory', 'runs/train')
  .option('--overwrite', 'replace the run already in --out')
  .option('--resume <dir>', 'continue the interrupted run in DIR from its last saved step, with its own config.json')
  .option(
    '--checkpoint-every <n>',
    'save the run\u2019s state every n RL steps, for --resume (0: never; 4 unless --model)',
    int('--checkpoint-every', 0),
  )
  .option(
    '--model <dir>',
    'RL on a Hugging Face Llama or Qwen2 directory (config.json, model.safetensors or shards, tokenizer.json) ' +
      'instead of the project\u2019s decoder; saved as DIR/warmstart and DIR/model in HF\u2019s layout',
  )
  .option('--warmup <n>', 'with --model: supervised warm-up steps before RL (default 0)', int('--warmup', 0));
withRLOptions(train).action(
  async (
    o: RLFlags & {
      device: DeviceFlag;
      out: string;
      overwrite?: boolean;
      resume?: string;
      checkpointEvery?: number;
      model?: string;
      warmup?: number;
    },
    cmd: Command,
  ) => {
    if (o.warmup !== undefined && o.model === undefined)
      usageError('--warmup needs --model (the default run has its own warm-up)');
    if (o.model !== undefined) checkReadable('--model', join(o.model, 'config.json'));
    let config: RunConfig;
    if (o.resume !== undefined) {
      const flags = [
        'algo',
        'seed',
        'preset',
        'config',
        'probe',
        'probePrefix',
        'probeClose',
        'norm',
        'igLogSpace',
        'formatPenalty',
        'initFrom',
        'out',
      ];
      const clash = flags.find((k) => cmd.getOptionValueSource(k) === 'cli');
      if (clash)
        usageError(
          `--resume continues a run with its own config.json; ` +
            `--${clash.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} cannot change it`,
        );
      config = resolveConfig(await readConfig(join(o.resume, 'config.json')), {});
    } else {
      checkReadable('--init-from', o.initFrom);
      config = await configOfFlags(cmd, o);
    }
    const { preset, rl, seed } = fromConfig(config);
    await runTraining({
      preset,
      rl,
      seed,
      config,
      device: await resolveDevice(o.device),
      outDir: o.resume ?? o.out,
      resume: o.resume !== undefined,
      overwrite: o.overwrite,
      initFrom: o.initFrom,
      checkpointEvery: o.checkpointEvery ?? (o.model !== undefined ? 0 : 4),
      ...(o.model !== undefined && { model: o.model, warmupSteps: o.warmup ?? 0 }),
      progress: process.stderr.isTTY,
      log: (line) => console.log(line),
    });
  },
);

function shardOf(v: string): { index: number; count: number } {
  const m = /^(\d+)\/(\d+)$/.exec(v);
  const [index, count] = m ? [Number(m[1]), Number(m[2])] : [NaN, NaN];
  if (!(count >= 1 && index < count)) throw new InvalidArgumentError(`--shard must be i/n with 0 <= i < n, got '${v}'`);
  return { index, count };
}

const compare = program
  .command('compare')
  .description(
    'the study (the paper\u2019s Tables 1-3, Figures 1, 4, 5 at our scale): per seed one warm start, then every ' +
      'algorithm to the same policy-token budget; one result file per run, so a rerun resumes',
  )
  .option('--algos <list>', `comma-separated algorithms (${ALGOS.join(', ')})`, 'igpo,grpo,ig')
  .option('--seeds <n>', 'seeds 0 .. n-1 per algorithm', int('--seeds', 1), 3)
  .addOption(new Option('--device <device>', 'backend').choices(['auto', 'cpu', 'webgpu']).default('cpu'))
  .option('--out <dir>', 'the study\u2019s directory (result files, report.md, figures)', 'runs/compare')
  .option(
    '--jobs <n>',
    'worker processes (by default one per core of this machine)',
    int('--jobs', 1),
    availableParallelism(),
  )
  .option('--shard <i/n>', 'run only every n-th run, starting at the i-th (machines that share the directory)', shardOf)
  .option(
    '--budget <tokens>',
    'policy tokens each run samples (default: the preset\u2019s compare budget)',
    int('--budget', 1),
  )
  .option(
    '--rl-steps <n>',
    'scale the budget to about n of the preset\u2019s RL steps (at most 3n steps a run)',
    int('--rl-steps', 1),
  )
  .option('--eval-every <n>', 'greedy evaluation every n RL steps (default: the preset\u2019s)', int('--eval-every', 1))
  .option('--model <dir>', 'every seed\u2019s warm start is this Hugging Face Llama or Qwen2 directory')
  .option('--warmup <n>', 'with --model: supervised warm-up steps per seed before RL (default 0)', int('--warmup', 0));
withRLOptions(compare).action(
  async (
    o: RLFlags & {
      algos: string;
      seeds: number;
      device: DeviceFlag;
      out: string;
      jobs: number;
      shard?: { index: number; count: number };
      budget?: number;
      rlSteps?: number;
      evalEvery?: number;
      model?: string;
      warmup?: number;
    },
    cmd: Command,
  ) => {
    if (o.warmup !== undefined && o.model === undefined) usageError('--warmup needs --model');
    if (o.model !== undefined && o.initFrom !== undefined) usageError('--model and --init-from exclude each other');
    if (o.model !== undefined) checkReadable('--model', join(o.model, 'config.json'));
    const { runCompare, studyOf } = await import('./compare.js');
    const { runReport } = await import('./report.js');
    const algos = o.algos.split(',').map((a) => a.trim());
    const unknown = algos.filter((a) => !(ALGOS as readonly string[]).includes(a));
    if (unknown.length) usageError(`--algos: unknown algorithm '${unknown[0]}' (known: ${ALGOS.join(', ')})`);
    checkReadable('--init-from', o.initFrom);
    const config = await configOfFlags(cmd, o);
    const { preset, rl } = fromConfig(config);
    const { algo: _, ...shared } = rl;
    const study = studyOf(preset, shared, {
      rlSteps: o.rlSteps,
      initFrom: o.initFrom,
      ...(o.model !== undefined && { model: { dir: o.model, warmupSteps: o.warmup ?? 0 } }),
    });
    const t0 = performance.now();
    await runCompare({
      study,
      algos,
      seeds: o.seeds,
      device: await resolveDevice(o.device),
      outDir: o.out,
      jobs: o.jobs,
      shard: o.shard,
      log: (l) => console.log(l),
    });
    const files = await runReport([o.out]);
    console.log(`compare: ${((performance.now() - t0) / 60000).toFixed(1)} min; wrote ${files.join(', ')}`);
  },
);

program
  .command('report')
  .description('the study\u2019s tables and figures from its result files; directories of one study (shards) merge')
  .argument('<dirs...>', 'study directories written by igpo compare')
  .option('--out <dir>', 'where report.md and the figures go (default: the first directory)')
  .action(async (dirs: string[], o: { out?: string }) => {
    const { runReport } = await import('./report.js');
    console.log(`wrote ${(await runReport(dirs, o.out)).join(', ')}`);
  });

const evaluate = program
  .command('eval')
  .description('greedy eval F1 of a checkpoint on held-out and out-of-domain episodes')
  .option('--checkpoint <file>', 'a model.safetensors written by igpo train')
  .option('--model <dir>', 'a Hugging Face Llama or Qwen2 directory instead (a --model run writes DIR/model)')
  .addOption(
    new Option('--preset <preset>', 'with --model: whose episodes and context length')
      .choices(Object.keys(PRESETS))
      .default('default'),
  )
  .option('--episodes <n>', 'episodes per split', int('--episodes', 1), 128)
  .option('--seed <n>', 'which held-out episodes', int('--seed'), 0)
  .addOption(new Option('--device <device>', 'backend').choices(['auto', 'cpu', 'webgpu']).default('cpu'))
  .option(
    '--dump <file>',
    'write every episode as a JSON line: its token ids, turns, probe tokens and p_t as training scores them',
  );
withProbe(evaluate, { value: 'checkpoint', description: 'the one the checkpoint was trained with' }).action(
  async (
    o: ProbeFlags & {
      checkpoint?: string;
      model?: string;
      preset: string;
      episodes: number;
      seed: number;
      device: DeviceFlag;
      dump?: string;
    },
    cmd: Command,
  ) => {
    const { runEval } = await import('./trainer.js');
    if ((o.checkpoint === undefined) === (o.model === undefined)) usageError('give one of --checkpoint and --model');
    if (o.model === undefined && cmd.getOptionValueSource('preset') === 'cli')
      usageError('--preset goes with --model (a checkpoint names its own)');
    if (o.model !== undefined) checkReadable('--model', join(o.model, 'config.json'));
    if (o.probe === 'checkpoint' && (o.probePrefix !== undefined || o.probeClose))
      usageError('--probe-prefix and --probe-close need --probe think or bare');
    const probe = o.probe === 'checkpoint' ? undefined : probeOf(o);
    const r = await runEval((o.checkpoint ?? o.model)!, {
      ...(o.model !== undefined && { hf: { preset: PRESETS[o.preset as keyof typeof PRESETS] } }),
      episodes: o.episodes,
      seed: o.seed,
      device: await resolveDevice(o.device),
      probe,
      dump: o.dump,
    });
    for (const [name, e] of [
      ['in-domain', r.inDomain],
      ['out-of-domain', r.ood],
    ] as const) {
      console.log(`${name} F1 ${e.f1.toFixed(3)} (${e.episodes} episodes; ends ${JSON.stringify(e.ends)})`);
      for (const [h, b] of Object.entries(e.byHops))
        console.log(
          `  ${h}-hop questions: F1 ${b.meanReward.toFixed(3)}, ${b.meanSearches.toFixed(2)} searches per episode ` +
            `(${b.episodes} episodes)`,
        );
    }
    if (o.dump) console.log(`wrote ${o.dump}: ${2 * o.episodes} episodes, one JSON line each`);
  },
);

program
  .command('logprobs')
  .description('log p(ids[i] | ids[0..i-1]) for i = 1..n-1 under a Hugging Face model directory, as JSON')
  .requiredOption('--model <dir>', 'a Llama or Qwen2 directory: config.json and model.safetensors (or sharded)')
  .requiredOption('--ids <list>', 'token ids, comma-separated (at least 2)', idList)
  .addOption(new Option('--device <device>', 'backend').choices(['cpu', 'webgpu']).default('cpu'))
  .addOption(
    new Option('--dtype <dtype>', 'the model\u2019s dtype (float64 on the CPU only)')
      .choices(['float32', 'float64'])
      .default(undefined, 'float64 on cpu, float32 on webgpu'),
  )
  .action(async (o: { model: string; ids: number[]; device: 'cpu' | 'webgpu'; dtype?: 'float32' | 'float64' }) => {
    const dtype = o.dtype ?? (o.device === 'cpu' ? 'float64' : 'float32');
    if (dtype === 'float64' && o.device === 'webgpu') usageError('--dtype float64 needs --device cpu');
    const device = await resolveDevice(o.device);
    const { HFDecoder } = await import('../model/hf/decoder.js');
    const { sequenceLogProbs } = await import('../model/lm.js');
    const model = await HFDecoder.load(o.model, { device, dtype, blockSize: Math.max(o.ids.length, 1) });
    const logprobs = await sequenceLogProbs(model, o.ids);
    model.dispose();
    console.log(JSON.stringify({ logprobs }));
  });

/** --ids: comma-separated non-negative integers. */
function idList(v: string): number[] {
  const ids = v.split(',').map((s) => s.trim());
  if (ids.some((s) => !/^\d+$/.test(s)))
    throw new InvalidArgumentError(`--ids must be comma-separated non-negative integers, got '${v}'`);
  return ids.map(Number);
}

program.option('--debug', 'print the stack of an error, not only its message');
try {
  await program.parseAsync(process.argv);
} catch (e) {
  // One line that names the problem; the stack only when asked for.
  console.error(program.opts().debug ? (e as Error).stack : `error: ${(e as Error).message}`);
  process.exit(1);
}
