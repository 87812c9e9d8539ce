// Runs a researcher configures and resumes: configuration files (the presets are their defaults, unknown
// keys named with their nearest valid one, flags over the file), a run killed and resumed that ends as an
// uninterrupted one does, run directories never silently overwritten, and bad input refused in one line.

import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import { defaultRLOptions } from '../igpo/algorithms.js';
import { checkConfig, configOf, fromConfig, readConfig, resolveConfig } from '../igpo/config.js';
import { PRESETS } from '../igpo/presets.js';
import { loadSafetensors } from '../model/safetensors.js';
import { prepareRunDir } from '../igpo/trainer.js';
import { vulkanDriverFound } from '../kernels/device.js';
import { useTempDirs } from './helpers/tempdir.js';

const tempDir = useTempDirs();
const igpo = (...args: string[]) =>
  promisify(execFile)(process.execPath, ['--import', 'tsx', 'igpo/cli.ts', ...args], { maxBuffer: 1 << 24 });

describe('configuration files', () => {
  test('every preset is a configuration\u2019s defaults: preset -> keys -> preset gives it back', () => {
    for (const [name, preset] of Object.entries(PRESETS)) {
      const rl = defaultRLOptions('igpo');
      const c = configOf(preset, rl, 7);
      expect(c.preset).toBe(name);
      const back = fromConfig(c);
      expect(back.preset).toEqual(preset);
      expect(back.rl).toEqual(rl);
      expect(back.seed).toBe(7);
      // Resolving an empty file on the preset is the same configuration.
      expect(resolveConfig({}, { preset: name, seed: 7 })).toEqual(c);
    }
  });

  test('a YAML file changes what it names, flags change it again, and the rest stays the preset\u2019s', async () => {
    const dir = tempDir('igpo-config-');
    const file = join(dir, 'run.yaml');
    writeFileSync(
      file,
      [
        'preset: smoke',
        'algo: grpo',
        'rl:',
        '  learning_rate: 0.002',
        '  num_generations: 4',
        '  kl_coef: 0',
        'model:',
        '  n_embd: 32',
        '',
      ].join('\n'),
    );
    const c = resolveConfig(await readConfig(file), { rl: { learning_rate: 0.005 } });
    const { preset, rl } = fromConfig(c);
    expect(c.algo).toBe('grpo');
    expect(preset.rl.lr).toBe(0.005); // the flag over the file
    expect(preset.rl.group).toBe(4);
    expect(preset.model.nEmbd).toBe(32);
    expect(rl.loss.klCoef).toBe(0);
    expect(preset.warmup).toEqual(PRESETS.smoke.warmup);
    expect(preset.name).toBe('smoke');
    // JSON works the same way.
    writeFileSync(
      join(dir, 'run.json'),
      JSON.stringify({ rl: { clip_ratio_high: 0.28, loss_agg_mode: 'token-mean' } }),
    );
    const j = fromConfig(resolveConfig(await readConfig(join(dir, 'run.json')), {}));
    expect(j.rl.loss).toMatchObject({ clipHigh: 0.28, aggregation: 'token-mean', clipLow: 0.2 });
  });

  test('unknown, mistyped and out-of-range keys are refused with the key named', async () => {
    expect(() => checkConfig({ rl: { lerning_rate: 1e-3 } }, 'a.yaml')).toThrow(
      "a.yaml: unknown key 'rl.lerning_rate' (did you mean 'rl.learning_rate'?)",
    );
    expect(() => checkConfig({ sead: 1 }, 'a.yaml')).toThrow("a.yaml: unknown key 'sead' (did you mean 'seed'?)");
    expect(() => checkConfig({ rl: { num_generations: 'eight' } }, 'a.yaml')).toThrow(/a\.yaml: rl\.num_generations: /);
    expect(() => checkConfig({ rl: { temperature: -1 } }, 'a.yaml')).toThrow(/a\.yaml: rl\.temperature: /);
    expect(() => checkConfig({ warmup: { hasty: 2 } }, 'a.yaml')).toThrow(/a\.yaml: warmup\.hasty: /);
    expect(() => checkConfig({ rl: { loss_agg_mode: 'mean' } }, 'a.yaml')).toThrow(/a\.yaml: rl\.loss_agg_mode: /);
    const dir = tempDir('igpo-config-');
    writeFileSync(join(dir, 'bad.yaml'), 'rl: [1, 2');
    await expect(readConfig(join(dir, 'bad.yaml'))).rejects.toThrow(/bad\.yaml: not valid YAML/);
    await expect(readConfig(join(dir, 'missing.yaml'))).rejects.toThrow(/missing\.yaml: cannot read/);
    expect(() => resolveConfig({ rl: { ppo_mini_batch_size: 99 } }, {})).toThrow(
      /ppo_mini_batch_size \(99\) is larger than rl.train_batch_size/,
    );
  });
});

describe('run directories', () => {
  test('a directory that holds a run is refused unless it is resumed or overwritten; a file is refused', async () => {
    const dir = tempDir('igpo-rundir-');
    await prepareRunDir(dir); // empty: fine
    writeFileSync(join(dir, 'metrics.jsonl'), '');
    writeFileSync(join(dir, 'notes.txt'), 'mine');
    await expect(prepareRunDir(dir)).rejects.toThrow(
      /holds a run \(metrics\.jsonl\); pass --overwrite to replace it, or --resume/,
    );
    await expect(prepareRunDir(dir, { resume: true })).rejects.toThrow(/cannot resume: run\.json is missing/);
    await prepareRunDir(dir, { overwrite: true });
    expect(existsSync(join(dir, 'metrics.jsonl'))).toBe(false);
    expect(readFileSync(join(dir, 'notes.txt'), 'utf8')).toBe('mine'); // only the run's own files go
    await expect(prepareRunDir(join(dir, 'notes.txt'))).rejects.toThrow(/is a file, not a directory/);
  });

  test(
    'a run configured from YAML, killed after a saved step and resumed, ends exactly as an ' + 'uninterrupted one',
    async () => {
      const dir = tempDir('igpo-resume-');
      const config = join(dir, 'run.yaml');
      writeFileSync(config, ['preset: smoke', 'rl:', '  steps: 6', '  eval_every: 3', ''].join('\n'));
      const args = (out: string) => ['train', '--config', config, '--out', out, '--checkpoint-every', '1'];
      const whole = join(dir, 'whole');
      await igpo(...args(whole));

      const cut = join(dir, 'cut');
      const child = spawn(process.execPath, ['--import', 'tsx', 'igpo/cli.ts', ...args(cut)], { stdio: 'ignore' });
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      for (let t = 0; t < 1200 && !existsSync(join(cut, 'checkpoint.safetensors')); t++)
        await new Promise((r) => setTimeout(r, 25));
      child.kill('SIGKILL');
      await exited;
      expect(existsSync(join(cut, 'model.safetensors'))).toBe(false); // killed before it finished
      const { stdout } = await igpo('train', '--resume', cut);
      expect(stdout).toMatch(/resuming .* at RL step [1-5] of 6/);

      const lines = (out: string) =>
        readFileSync(join(out, 'metrics.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l))
          .map(
            ({ timestamp: _t, 'timing_s/rollout': _r, 'timing_s/ig_scoring': _s, 'timing_s/update': _u, ...rest }) =>
              rest,
          );
      expect(lines(cut)).toEqual(lines(whole));
      // The same weights and metadata; only the run's identity (run.json's random id) differs.
      const model = async (out: string) => {
        const { tensors, metadata } = await loadSafetensors(join(out, 'model.safetensors'));
        const { run, ...rest } = metadata;
        expect(run).toBe(JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')).id);
        return { tensors, metadata: rest };
      };
      expect(await model(cut)).toEqual(await model(whole));
      expect(JSON.parse(readFileSync(join(cut, 'config.json'), 'utf8'))).toEqual(
        JSON.parse(readFileSync(join(whole, 'config.json'), 'utf8')),
      );
      // --init-from starts RL from a checkpoint: no warm-up lines, and that checkpoint is the warm start.
      const init = join(dir, 'init');
      await igpo('train', '--preset', 'smoke', '--init-from', join(whole, 'model.safetensors'), '--out', init);
      expect(lines(init).some((l) => l.phase === 'warmup')).toBe(false);
      const weights = async (f: string) => (await loadSafetensors(f)).tensors['wte'].data;
      expect(await weights(join(init, 'warmstart.safetensors'))).toEqual(
        await weights(join(whole, 'model.safetensors')),
      );
      // A checkpoint of another run is refused: the directory would hold two runs' files.
      copyFileSync(join(whole, 'checkpoint.safetensors'), join(cut, 'checkpoint.safetensors'));
      await expect(igpo('train', '--resume', cut)).rejects.toThrow(
        /checkpoint\.safetensors belongs to run [0-9a-f-]+, not to this directory's run [0-9a-f-]+ \(run\.json\)/,
      );
      // The resumed run takes its own config.json: a flag that would change it is refused.
      await expect(igpo('train', '--resume', cut, '--algo', 'grpo')).rejects.toThrow(
        /--resume continues a run with its own config\.json; --algo cannot change it/,
      );
    },
    300_000,
  );
});

describe('bad input, refused in one line before any work', () => {
  /** Runs the command, expecting a non-zero exit and one line on stderr that matches `why`, with no stack. */
  async function refused(why: RegExp, ...args: string[]) {
    const err = await igpo(...args).then(
      () => null,
      (e: { code: number; stderr: string }) => e,
    );
    expect(err, args.join(' ')).not.toBeNull();
    expect(err!.code).not.toBe(0);
    const lines = err!.stderr.trim().split('\n');
    expect(lines.length, err!.stderr).toBe(1);
    expect(lines[0]).toMatch(why);
    expect(err!.stderr).not.toMatch(/^\s+at /m);
  }

  test('flags, checkpoints, output paths, configuration files', async () => {
    const dir = tempDir('igpo-bad-');
    const notSafetensors = join(dir, 'model.safetensors');
    writeFileSync(notSafetensors, 'not a checkpoint');
    const aFile = join(dir, 'file');
    writeFileSync(aFile, '');
    writeFileSync(join(dir, 'typo.yaml'), 'rl:\n  lerning_rate: 0.1\n');
    await Promise.all([
      refused(/--seeds must be an integer >= 1, got '0'/, 'compare', '--seeds', '0'),
      refused(/--episodes must be an integer >= 1, got '0'/, 'eval', '--checkpoint', notSafetensors, '--episodes', '0'),
      refused(
        /--episodes must be an integer >= 1, got '-3'/,
        'eval',
        '--checkpoint',
        notSafetensors,
        '--episodes',
        '-3',
      ),
      refused(/--algos: unknown algorithm '' \(known: igpo, grpo/, 'compare', '--algos', 'igpo,'),
      refused(/--preset.*'nope' is invalid/, 'train', '--preset', 'nope'),
      refused(/no such file/, 'eval', '--checkpoint', join(dir, 'missing.safetensors')),
      refused(/model\.safetensors/, 'eval', '--checkpoint', notSafetensors),
      refused(
        /--init-from .*missing\.safetensors: no such file/,
        'train',
        '--init-from',
        join(dir, 'missing.safetensors'),
        '--out',
        join(dir, 'o'),
      ),
      refused(/is a file, not a directory/, 'train', '--preset', 'smoke', '--out', aFile),
      refused(
        /typo\.yaml: unknown key 'rl\.lerning_rate' \(did you mean 'rl\.learning_rate'\?\)/,
        'train',
        '--config',
        join(dir, 'typo.yaml'),
      ),
    ]);
  }, 120_000);

  test('--version, and the Vulkan driver check that keeps Dawn\u2019s native warnings away', async () => {
    const { stdout } = await igpo('--version');
    expect(stdout.trim()).toBe(JSON.parse(readFileSync('package.json', 'utf8')).version);
    expect(vulkanDriverFound({ VK_ICD_FILENAMES: '/nonexistent/icd.json' })).toBe(false);
    expect(vulkanDriverFound({ VK_DRIVER_FILES: `/nonexistent.json:${join(process.cwd(), 'package.json')}` })).toBe(
      true,
    );
    const data = tempDir('igpo-icd-');
    mkdirSync(join(data, 'vulkan', 'icd.d'), { recursive: true });
    writeFileSync(join(data, 'vulkan', 'icd.d', 'some_icd.json'), '{}');
    expect(vulkanDriverFound({ XDG_DATA_DIRS: data, HOME: '/nonexistent' })).toBe(true);
  });
});
