// The IGPO pipeline end to end at toy size: rollouts keep sampled ids and mask tool tokens, p_t equals a
// full forward's teacher-forced probe probability, turn rewards follow the algorithm, and `train` writes its files.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';
import { GPT } from '../model/gpt.js';
import { defaultTokenizer } from '../model/tokenizer.js';
import { Episode, makeSplit } from '../igpo/env.js';
import { ALGORITHMS, defaultRLOptions } from '../igpo/algorithms.js';
import { probeTokens, THINK_PROBE } from '../igpo/reward.js';
import { collectRollouts, type AgentTask, type Rollout } from '../igpo/rollout.js';
import { PRESETS, runTraining } from '../igpo/trainer.js';
import { packRollouts, rowLengths, selectRows, tempered, tokenLogProbs } from '../igpo/update.js';
import { entropyFromLogits, policyLoss } from '../igpo/loss.js';
import { useTempDirs } from './helpers/tempdir.js';

const tempDir = useTempDirs();

const tok = defaultTokenizer();

/** A scripted task: replies to every search with a fixed info block; ends on an answer with reward 1. */
function scripted(prompt: string): AgentTask {
  return {
    prompt,
    gold: 'melin',
    step: (turn) =>
      turn.includes('</answer>')
        ? { done: true, reward: 1, reason: 'answer' }
        : { done: false, observation: '<info>tavor was born in melin.</info>' },
  };
}

describe('rollouts', () => {
  test(
    'ids are kept as sampled, tool tokens are masked, and p_t is the teacher-forced probe probability at the ' +
      'scoring temperature',
    async () => {
      const model = new GPT(
        { vocabSize: tok.vocabSize, blockSize: 256, nLayer: 1, nHead: 2, nEmbd: 16, ropeBase: 10000, normEps: 1e-5 },
        { generator: new E.Generator(1), dtype: 'float64' },
      );
      const tasks = [scripted('where was tavor born?\n'), scripted('who?\n')];
      const temperature = 0.7;
      const rollouts = await collectRollouts(
        model,
        tok,
        tasks,
        { maxTurns: 3, maxTurnTokens: 12, sampling: {}, probe: THINK_PROBE, scoreTemperature: temperature },
        new E.Generator(2),
      );
      const probe = probeTokens(THINK_PROBE, 'melin', (t) => tok.encode(t));
      expect(probe.answer).toEqual(tok.encode('melin')); // the gold answer only: no tag is scored
      for (const r of rollouts) {
        expect(r.turns.length).toBeGreaterThan(0);
        expect(r.probe).toEqual(probe);
        // p_0 after the prompt, one more after each turn that got a response.
        expect(r.probs.length).toBe(1 + r.turns.filter((t) => t.observation.length > 0).length);
        let prefix = [...r.prompt];
        /**
         * A full forward over ctx + probe, independent of the decoder's cache: exp of the answer tokens' mean log-prob.
         */
        const expectP = (ctx: number[]) => {
          const seq = [...ctx, ...probe.prefix, ...probe.answer];
          const lp = E.tidy(() => {
            const { logits } = model.forward(E.tensor(Int32Array.from(seq), [1, seq.length]));
            return Array.from(
              E.targetLogProb(
                logits.mul(1 / temperature),
                E.tensor(Int32Array.from([...seq.slice(1), -1]), [1, seq.length]),
              ).dataSync(),
            );
          });
          const from = ctx.length + probe.prefix.length - 1; // the position predicting the answer's first token
          const ans = lp.slice(from, from + probe.answer.length);
          return Math.exp(ans.reduce((s, x) => s + x, 0) / ans.length);
        };
        expect(r.probs[0]).toBeCloseTo(expectP(prefix), 9);
        expect(r.probeAt[0]).toBe(r.prompt.length);
        let k = 1;
        for (const t of r.turns) {
          prefix = [...prefix, ...t.tokens, ...t.observation];
          if (t.observation.length > 0) {
            expect(r.probeAt[k]).toBe(prefix.length);
            expect(r.probs[k++]).toBeCloseTo(expectP(prefix), 9);
          }
        }
      }
      const adv = rollouts.map((r) => r.turns.map((_, t) => t + 1));
      const packed = packRollouts(rollouts, adv, tok.pad);
      rollouts.forEach((r, b) => {
        const seq = [...r.prompt, ...r.turns.flatMap((t) => [...t.tokens, ...t.observation])];
        let pos = r.prompt.length;
        r.turns.forEach((t, k) => {
          t.tokens.forEach((id, j) => {
            const i = b * packed.L + pos + j - 1; // position predicting this token
            expect(packed.targets[i]).toBe(id);
            expect(packed.mask[i]).toBe(1);
            expect(packed.advantages[i]).toBe(k + 1);
            expect(packed.oldLogp[i]).toBeCloseTo(t.logprobs[j], 6);
          });
          pos += t.tokens.length;
          t.observation.forEach((_, j) => expect(packed.mask[b * packed.L + pos + j - 1]).toBe(0));
          pos += t.observation.length;
        });
        expect(pos).toBe(seq.length);
        for (let j = 0; j + 1 < r.prompt.length; j++) expect(packed.mask[b * packed.L + j]).toBe(0);
      });
    },
  );

  test(
    'at a sampling temperature, the update scores tokens with the tempered policy they ' + 'were sampled from',
    async () => {
      const model = new GPT(
        { vocabSize: tok.vocabSize, blockSize: 256, nLayer: 1, nHead: 2, nEmbd: 16, ropeBase: 10000, normEps: 1e-5 },
        { generator: new E.Generator(3), dtype: 'float64' },
      );
      const tasks = [scripted('where was tavor born?\n'), scripted('who?\n'), scripted('where?\n')];
      const rollouts = await collectRollouts(
        model,
        tok,
        tasks,
        { maxTurns: 2, maxTurnTokens: 10, sampling: { temperature: 0.7 }, probe: THINK_PROBE, scoreTemperature: null },
        new E.Generator(5),
      );
      const packed = packRollouts(
        rollouts,
        rollouts.map((r) => r.turns.map(() => 1)),
        tok.pad,
      );
      const at = async (temperature: number) => {
        const lp = await tokenLogProbs(model, packed, 2, temperature);
        return Array.from(packed.mask).flatMap((m, i) => (m ? [Math.abs(lp[i] - packed.oldLogp[i])] : []));
      };
      const same = await at(0.7);
      expect(same.length).toBeGreaterThan(10);
      expect(Math.max(...same)).toBeLessThan(1e-5); // ratio 1 before the first update
      expect(Math.max(...(await at(1)))).toBeGreaterThan(1e-3); // the untempered policy is another one
      expect(() => tempered(E.zeros([1]), 0)).toThrow(/positive/);
    },
  );

  test(
    'a minibatch of rows cut to its longest row keeps every row, and every log-prob, as in ' + 'the full batch',
    async () => {
      const model = new GPT(
        { vocabSize: tok.vocabSize, blockSize: 256, nLayer: 1, nHead: 2, nEmbd: 16, ropeBase: 10000, normEps: 1e-5 },
        { generator: new E.Generator(6), dtype: 'float64' },
      );
      const tasks = ['where was tavor born?\n', 'who?\n', 'where?\n', 'and who was born in melin, then?\n'].map(
        scripted,
      );
      const rollouts = await collectRollouts(
        model,
        tok,
        tasks,
        { maxTurns: 3, maxTurnTokens: 14, sampling: {}, probe: THINK_PROBE, scoreTemperature: null },
        new E.Generator(7),
      );
      const packed = packRollouts(
        rollouts,
        rollouts.map((r) => r.turns.map((_, k) => k - 0.5)),
        tok.pad,
      );
      const lens = rowLengths(packed);
      rollouts.forEach((r, b) =>
        expect(lens[b]).toBe(
          r.prompt.length + r.turns.reduce((n, t) => n + t.tokens.length + t.observation.length, 0) - 1,
        ),
      );
      const rows = [...lens.keys()].sort((a, b) => lens[a] - lens[b]).slice(0, 2); // the two shortest rows
      const part = selectRows(packed, rows);
      expect(part.L).toBe(Math.max(...rows.map((b) => lens[b])));
      expect(part.L).toBeLessThan(packed.L);
      const full = await tokenLogProbs(model, packed, 4);
      const cut = await tokenLogProbs(model, part, 4);
      rows.forEach((b, i) => {
        for (let j = 0; j < part.L; j++) {
          const [src, dst] = [b * packed.L + j, i * part.L + j];
          for (const k of ['ids', 'targets', 'mask', 'advantages', 'oldLogp', 'turn'] as const)
            expect(part[k][dst]).toBe(packed[k][src]);
          if (packed.mask[src]) expect(cut[dst]).toBeCloseTo(full[src], 12);
        }
      });
      expect(part.policyTokens).toBe(
        rows.reduce((n, b) => n + packed.mask.subarray(b * packed.L, (b + 1) * packed.L).reduce((a, m) => a + m, 0), 0),
      );
    },
  );

  test('tool-response, prompt and padding tokens get exactly zero gradient; policy tokens do not', () => {
    const t = (tokens: number[], observation: number[], kind: 'search' | 'answer') => ({
      tokens,
      logprobs: tokens.map(() => -1),
      observation,
      kind,
    });
    const rollouts: Rollout[] = [
      {
        prompt: [20, 21, 22],
        turns: [t([30, 31], [40, 41, 42], 'search'), t([32], [], 'answer')],
        probs: [],
        probeAt: [],
        probe: { prefix: [], answer: [5] },
        outcome: 1,
        endReason: 'answer',
      },
      {
        prompt: [20],
        turns: [t([33, 34, 35], [], 'answer')],
        probs: [],
        probeAt: [],
        probe: { prefix: [], answer: [5] },
        outcome: 0,
        endReason: 'answer',
      },
    ];
    const packed = packRollouts(rollouts, [[0.5, 1], [-1]], tok.pad);
    const logits = E.randn([packed.B, packed.L, tok.vocabSize], {
      dtype: 'float64',
      generator: new E.Generator(4),
      requiresGrad: true,
    });
    const f64 = (a: ArrayLike<number>) => E.tensor(Float64Array.from(a), [packed.B, packed.L]);
    const logp = E.targetLogProb(logits, E.tensor(packed.targets, [packed.B, packed.L]));
    const { loss } = policyLoss({
      logp,
      oldLogp: f64(packed.oldLogp),
      advantages: f64(packed.advantages),
      mask: f64(packed.mask),
      refLogp: logp.detach().sub(0.1),
      entropy: entropyFromLogits(logits),
    });
    loss.backward();
    const g = logits.grad!.dataSync();
    const V = tok.vocabSize;
    for (let i = 0; i < packed.B * packed.L; i++) {
      const row = Array.from(g.subarray(i * V, (i + 1) * V));
      if (packed.mask[i] === 0) expect(row.every((x) => x === 0)).toBe(true);
      else expect(row.some((x) => x !== 0)).toBe(true);
    }
    expect(Array.from(packed.mask).filter((m) => m === 1).length).toBe(6);
  });

  test('turn rewards: IG on searches, outcome on the last turn, per algorithm', () => {
    const t = (kind: 'search' | 'answer' | 'ended') => ({
      tokens: [1],
      logprobs: [0],
      observation: kind === 'search' ? [2] : [],
      kind,
    });
    const r: Rollout = {
      prompt: [1],
      turns: [t('search'), t('search'), t('answer')],
      probs: [0.1, 0.3, 0.6],
      probeAt: [1, 3, 5],
      probe: { prefix: [], answer: [5] },
      outcome: 0.5,
      endReason: 'answer',
    };
    const close = (a: number[], b: number[]) => a.forEach((x, i) => expect(x).toBeCloseTo(b[i], 12));
    const rewards = (algo: 'igpo' | 'grpo' | 'ig', x: Rollout, opts = defaultRLOptions(algo)) =>
      ALGORITHMS[algo].turnRewards(x, x.outcome, opts);
    close(rewards('igpo', r), [0.2, 0.3, 0.5]);
    close(rewards('grpo', r), [0, 0, 0.5]);
    close(rewards('ig', r), [0.2, 0.3, 0]);
    close(rewards('igpo', r, { ...defaultRLOptions('igpo'), logSpace: true }), [Math.log(3), Math.log(2), 0.5]);
    // Out of turns after a search: that search got no response and no p_t, so no gain; the outcome is 0.
    const cut: Rollout = {
      ...r,
      turns: [t('search'), t('search')],
      probs: [0.1, 0.3],
      probeAt: [1, 3],
      outcome: 0,
      endReason: 'max-turns',
    };
    close(rewards('igpo', cut), [0.2, 0]);
  });
});

describe('train', () => {
  test('the smoke preset writes metrics, a loadable checkpoint, curves and a report', async () => {
    const out = tempDir('igpo-');
    const res = await runTraining({
      preset: PRESETS.smoke,
      rl: defaultRLOptions('igpo'),
      seed: 0,
      device: 'cpu',
      outDir: out,
    });
    const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const warmup = lines.filter((l) => l.phase === 'warmup');
    const rl = lines.filter((l) => l.phase === 'rl');
    expect(warmup.map((l) => l.step)).toEqual([0, 1, 2, 3]);
    expect(warmup.every((l) => Number.isFinite(l.loss) && l.learning_rate > 0)).toBe(true);
    expect(rl.length).toBe(PRESETS.smoke.rl.steps);
    // TRL's and verl's names where they have one (README.md lists every key).
    for (const k of [
      'timestamp',
      'num_tokens',
      'reward',
      'reward_std',
      'frac_reward_zero_std',
      'advantages/mean',
      'advantages/max',
      'response_length/mean',
      'turns/mean',
      'kl',
      'entropy',
      'grad_norm',
      'learning_rate',
      'clip_ratio',
      'clip_ratio/minibatches',
      'ig/mean',
      'ig/share',
      'gt_entropy_reduction',
      'timing_s/rollout',
      'timing_s/update',
    ])
      expect(rl[0], k).toHaveProperty(k);
    expect(rl[1].num_tokens).toBeGreaterThan(rl[0].num_tokens);
    expect(rl[1]).toHaveProperty('eval/f1');
    for (const f of ['model.safetensors', 'warmstart.safetensors', 'curves.svg', 'report.md'])
      expect(existsSync(join(out, f))).toBe(true);
    const report = readFileSync(join(out, 'report.md'), 'utf8');
    expect(report).toMatch(/^# IGPO training report/);
    expect(report).toMatch(/in-domain F1 \(4 episodes\) \| \d\.\d{3} \| \d\.\d{3}/);
    expect(res.warmupLosses.length).toBe(PRESETS.smoke.warmup.steps);
  });

  test('evaluation episodes come from held-out worlds', () => {
    const train = makeSplit('train', 0, 20).map((s) => s.question.start);
    const evalSet = makeSplit('eval', 0, 20).map((s) => s.question.start);
    expect(train.filter((n) => evalSet.includes(n))).toEqual([]);
    expect(Episode.fromSpec(makeSplit('eval', 0, 1)[0]).prompt.endsWith('\n')).toBe(true);
  });
});
