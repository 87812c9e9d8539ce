// The `igpo` command line: `igpo train` (warm-up then RL, the main job) and `igpo compare` (the paper's
// ablation at our scale). Argument parsing is commander's; the work is in trainer.ts and compare.ts.

import { Command, InvalidArgumentError, Option } from 'commander';
import * as E from '../engine/index.js';
import { PRESETS, defaultRLOptions, runTraining } from './trainer.js';
import { ALGOS, type Algo } from './rollout.js';

function int(name: string, min = -Infinity) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer${min > -Infinity ? ` >= ${min}` : ''}, got '${v}'`);
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

const program = new Command('igpo').description('Information Gain-based Policy Optimization on a tiny search agent, in TypeScript');

program
  .command('train')
  .description('supervised warm-up on expert demonstrations, then RL; writes metrics.jsonl, model.safetensors, curves.svg, report.md')
  .addOption(new Option('--algo <algo>', 'igpo (F1 + IG), grpo (F1 only), ig (IG only), or a baseline: rloo, ppo, reinforce++, gspo, gigpo').choices(ALGOS).default('igpo'))
  .addOption(new Option('--preset <preset>', 'sizes and step counts').choices(Object.keys(PRESETS)).default('default'))
  .addOption(new Option('--device <device>', 'backend').choices(['auto', 'cpu', 'webgpu']).default('cpu'))
  .addOption(new Option('--norm <norm>', 'turn-reward normalisation: joint (paper) or separate (authors\u2019 code)').choices(['joint', 'separate']).default('joint'))
  .option('--seed <n>', 'random seed', int('--seed'), 0)
  .option('--out <dir>', 'output directory', 'runs/train')
  .action(async (o: { algo: Algo; preset: keyof typeof PRESETS; device: 'auto' | 'cpu' | 'webgpu'; norm: 'joint' | 'separate'; seed: number; out: string }) => {
    const device = await resolveDevice(o.device);
    await runTraining({
      preset: PRESETS[o.preset],
      rl: { ...defaultRLOptions(o.algo), norm: o.norm },
      seed: o.seed,
      device,
      outDir: o.out,
      progress: process.stderr.isTTY,
      log: (line) => console.log(line),
    });
  });

program
  .command('compare')
  .description('the paper\u2019s comparisons at our scale (its Tables 1-3, Figures 1, 4, 5): equal token budget per algorithm')
  .option('--algos <list>', `comma-separated algorithms (${ALGOS.join(', ')})`, 'igpo,grpo,ig')
  .option('--seeds <n>', 'seeds per algorithm', int('--seeds'), 3)
  .addOption(new Option('--preset <preset>', 'sizes and step counts').choices(Object.keys(PRESETS)).default('default'))
  .addOption(new Option('--device <device>', 'backend').choices(['auto', 'cpu', 'webgpu']).default('cpu'))
  .option('--out <dir>', 'output directory', 'runs/compare')
  .option('--rl-steps <n>', 'RL steps of the first algorithm, whose sampled policy tokens are every algorithm\u2019s budget (default: the preset\u2019s)', int('--rl-steps', 1))
  .action(async (o: { algos: string; seeds: number; preset: keyof typeof PRESETS; device: 'auto' | 'cpu' | 'webgpu'; out: string; rlSteps?: number }) => {
    const { runCompare } = await import('./compare.js');
    const algos = o.algos.split(',').map((a) => a.trim());
    const base = PRESETS[o.preset];
    const preset = o.rlSteps === undefined ? base : { ...base, rl: { ...base.rl, steps: o.rlSteps, evalEvery: Math.min(base.rl.evalEvery, o.rlSteps) } };
    await runCompare({ algos, seeds: o.seeds, preset, device: await resolveDevice(o.device), outDir: o.out, progress: process.stderr.isTTY, log: (l) => console.log(l) });
  });

program
  .command('eval')
  .description('greedy eval F1 of a checkpoint on held-out and out-of-domain episodes')
  .requiredOption('--checkpoint <file>', 'a model.safetensors written by igpo train')
  .option('--episodes <n>', 'episodes per split', int('--episodes'), 128)
  .option('--seed <n>', 'which held-out episodes', int('--seed'), 0)
  .addOption(new Option('--device <device>', 'backend').choices(['auto', 'cpu', 'webgpu']).default('cpu'))
  .action(async (o: { checkpoint: string; episodes: number; seed: number; device: 'auto' | 'cpu' | 'webgpu' }) => {
    const { runEval } = await import('./trainer.js');
    const r = await runEval(o.checkpoint, { episodes: o.episodes, seed: o.seed, device: await resolveDevice(o.device) });
    for (const [name, e] of [['in-domain', r.inDomain], ['out-of-domain', r.ood]] as const) {
      console.log(`${name} F1 ${e.f1.toFixed(3)} (${e.episodes} episodes; ends ${JSON.stringify(e.ends)})`);
      for (const [h, b] of Object.entries(e.byHops)) console.log(`  ${h}-hop questions: F1 ${b.meanReward.toFixed(3)}, ${b.meanSearches.toFixed(2)} searches per episode (${b.episodes} episodes)`);
    }
  });

await program.parseAsync(process.argv);
