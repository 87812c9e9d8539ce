// IG's probe: p_t measured the way the policy would answer (an answer turn's opening, then the gold answer
// alone scored), against the first probe that scored `<answer>` straight after the context; and the
// `igpo eval --dump` file, whose p_t a full forward without the decoder's cache must reproduce.

import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';
import { saveCheckpoint } from '../model/checkpoint.js';
import { defaultTokenizer } from '../model/tokenizer.js';
import { makeSplit } from '../igpo/env.js';
import { BARE_PROBE, probeProbability, probeTokens, resolveProbe, THINK_PROBE, type Probe } from '../igpo/reward.js';
import type { Rollout } from '../igpo/rollout.js';
import { evaluate, PRESETS, runEval } from '../igpo/trainer.js';
import { protocolModel } from './helpers/protocol-model.js';
import { useTempDirs } from './helpers/tempdir.js';

const tempDir = useTempDirs();
const tok = defaultTokenizer();
const encode = (t: string) => tok.encode(t);

/** The greedy episodes of `n` held-out questions, p_t scored by `probe` at temperature 1. */
async function episodes(probe: Probe, n = 4): Promise<Rollout[]> {
  const model = protocolModel(tok);
  const out: Rollout[] = [];
  await evaluate(model, tok, makeSplit('eval', 0, n), PRESETS.default, {
    probe,
    scoreTemperature: 1,
    onEpisode: (r) => out.push(r),
  });
  model.dispose();
  return out;
}

/** log p(next | ids) under a model, by a full forward (no cache), at `temperature`. */
function fullLogprobs(model: ReturnType<typeof protocolModel>, ids: readonly number[], temperature: number): number[] {
  return E.tidy(() => {
    const { logits } = model.forward(E.tensor(Int32Array.from(ids), [1, ids.length]));
    return Array.from(
      E.targetLogProb(
        logits.mul(1 / temperature),
        E.tensor(Int32Array.from([...ids.slice(1), -1]), [1, ids.length]),
      ).dataSync(),
    );
  });
}

describe('the probe of p_t', () => {
  test(
    'on a policy that writes <think> after </info>, the bare probe collapses and the ' + 'in-protocol one does not',
    async () => {
      // The construction: after </info> (and after the prompt), <answer> is ~200 nats less likely than <think>.
      const model = protocolModel(tok);
      const lp = fullLogprobs(model, encode('who?\n<think>x</think><search>q</search><info></info><answer>'), 1);
      expect(lp.at(-2)).toBeLessThan(-100);
      model.dispose();

      const think = await episodes(THINK_PROBE);
      const bare = await episodes(BARE_PROBE);
      for (const [i, r] of think.entries()) {
        // Every greedy episode searches until it runs out of turns (the fourth search gets no response and
        // ends the episode): p_0 and three p_t after tool responses.
        expect(r.turns.map((t) => t.kind)).toEqual(['search', 'search', 'search', 'ended']);
        expect(r.probs.length).toBe(4);
        expect(bare[i].probs.length).toBe(4);
        // The gold answer alone, after `<think>...</think><answer>`: about 1/V per token, nowhere near 0.
        for (const p of r.probs) expect(p).toBeGreaterThan(1e-4);
        // `<answer>` scored after `</info>` (or the prompt) drags the mean to nothing. Were the probe's
        // `</think><answer>` in the mean, the in-protocol p_t would collapse the same way.
        for (const p of bare[i].probs) expect(p).toBeLessThan(1e-9);
      }
    },
  );

  test('probe tokens: the think probe scores the gold answer only, the bare one its tags too; options by name', () => {
    const think = probeTokens(THINK_PROBE, ['melin', 'other'], encode);
    expect(think.prefix).toEqual(encode('<think>I know the answer.</think><answer>'));
    expect(think.answer).toEqual(encode('melin'));
    expect(probeTokens(BARE_PROBE, 'melin', encode)).toEqual({ prefix: [], answer: encode('<answer>melin</answer>') });
    const closed = resolveProbe('think', { close: true });
    expect(closed.name).toBe('think+close');
    expect(probeTokens(closed, 'melin', encode).answer).toEqual(encode('melin</answer>'));
    expect(resolveProbe('think', { prefix: '<think>so</think><answer>' }).prefix).toBe('<think>so</think><answer>');
    expect(() => resolveProbe('bare', { close: true })).toThrow(/already scores <\/answer>/);
    expect(() => resolveProbe('nope')).toThrow(/unknown probe 'nope'/);
    // The mean leaves the prefix out.
    expect(
      probeProbability([-50, -50, Math.log(0.5), Math.log(0.125)], { prefix: [1, 2], answer: [3, 4] }),
    ).toBeCloseTo(0.25, 12);
    expect(() => probeProbability([0], { prefix: [1], answer: [2] })).toThrow(/1 log-probs for a probe of 2 tokens/);
  });
});

describe('igpo eval --dump', () => {
  test('every line reproduces by a full forward over ids[0:pAt[t]] + prefix + answer, to 1e-5', async () => {
    const dir = tempDir('igpo-dump-');
    const ckpt = join(dir, 'model.safetensors');
    const model = protocolModel(tok, 3);
    await saveCheckpoint(ckpt, model, {
      tokenizer: tok,
      metadata: { preset: 'default', probe: JSON.stringify(THINK_PROBE) },
    });
    const dump = join(dir, 'episodes.jsonl');
    await runEval(ckpt, { episodes: 3, seed: 1, device: 'cpu', dump });
    const lines = readFileSync(dump, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.length).toBe(6); // 3 held-out, 3 out-of-domain
    expect(lines.map((l) => l.split)).toEqual(['eval', 'eval', 'eval', 'ood', 'ood', 'ood']);
    let checked = 0;
    for (const line of lines) {
      const { ids, turns, probe, p, pAt, temperature } = line as {
        ids: number[];
        turns: { kind: string; start: number; end: number }[];
        probe: { prefix: number[]; answer: number[] };
        p: number[];
        pAt: number[];
        temperature: number;
      };
      expect(probe).toEqual(probeTokens(THINK_PROBE, line.gold, encode));
      expect(temperature).toBe(PRESETS.default.rl.temperature);
      // Turns are in order, inside ids, and each search turn's response follows it.
      turns.forEach((t, k) => {
        expect(t.start).toBeLessThan(t.end);
        expect(t.end).toBeLessThanOrEqual(ids.length);
        if (k > 0) expect(t.start).toBeGreaterThanOrEqual(turns[k - 1].end);
        expect(tok.decode(ids.slice(t.start, t.end))).toBe('<think>x</think><search>q</search>');
      });
      expect(p.length).toBe(pAt.length);
      expect(pAt[0]).toBe(turns[0].start); // p_0: the question only
      for (const [t, n] of pAt.entries()) {
        if (t > 0) expect(n).toBe(turns[t].start); // after turn t-1's tool response
        const seq = [...ids.slice(0, n), ...probe.prefix, ...probe.answer];
        const lp = fullLogprobs(model, seq, temperature).slice(seq.length - probe.answer.length - 1, seq.length - 1);
        expect(Math.abs(Math.exp(lp.reduce((s, x) => s + x, 0) / lp.length) - p[t])).toBeLessThan(
          1e-5 * Math.max(1, p[t]) + 1e-7,
        );
        checked++;
      }
    }
    expect(checked).toBe(24);
    model.dispose();
  });

  test('the command line writes the file it is given', async () => {
    const dir = tempDir('igpo-dump-cli-');
    const ckpt = join(dir, 'model.safetensors');
    const model = protocolModel(tok, 4);
    await saveCheckpoint(ckpt, model, { tokenizer: tok, metadata: { preset: 'default' } });
    model.dispose();
    const dump = join(dir, 'bare.jsonl');
    const { stdout } = await promisify(execFile)(process.execPath, [
      '--import',
      'tsx',
      'igpo/cli.ts',
      'eval',
      '--checkpoint',
      ckpt,
      '--episodes',
      '2',
      '--probe',
      'bare',
      '--dump',
      dump,
    ]);
    expect(stdout).toMatch(/wrote .*bare\.jsonl: 4 episodes/);
    const lines = readFileSync(dump, 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.length).toBe(4);
    for (const l of lines) {
      expect(l.probe).toEqual(probeTokens(BARE_PROBE, l.gold, encode));
      expect(Object.keys(l)).toEqual(expect.arrayContaining(['ids', 'turns', 'probe', 'p', 'pAt']));
    }
  }, 120_000);
});
