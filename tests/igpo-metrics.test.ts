// The RL step's metrics and updates as properties: advantage collapse counts outcomes, not advantages;
// IG's share of the normalised rewards; IG by the answer's fact; minibatches of whole groups; and the
// registry: one entry per algorithm, each with what the trainer needs.

import { fc, test as fcTest } from '@fast-check/vitest';
import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';
import { GPT } from '../model/gpt.js';
import { defaultTokenizer } from '../model/tokenizer.js';
import { ALGORITHMS, ALGOS, algorithm, defaultRLOptions, outcomeReward, type Algo } from '../igpo/algorithms.js';
import { Episode, makeSplit } from '../igpo/env.js';
import {
  collapsedGroups,
  gtEntropyReduction,
  igByAnswerFact,
  igShare,
  pearson,
  zeroAdvantageGroups,
} from '../igpo/metrics.js';
import type { Rollout, Turn } from '../igpo/rollout.js';
import { groupMinibatches, packRollouts, updatePolicy } from '../igpo/update.js';
import { defaultLossOptions } from '../igpo/loss.js';
import { PRESETS, presetSplit } from '../igpo/presets.js';
import { evaluate, ragTurn } from '../igpo/trainer.js';
import { protocolModel } from './helpers/protocol-model.js';

const prob = fc.double({ min: 1e-6, max: 1, noNaN: true });

/** A rollout of `searches` search turns (each with a response and a p_t) and an answer turn. */
function rollout(probs: readonly number[], outcome: number, endReason = 'answer'): Rollout {
  const turn = (kind: Turn['kind'], k: number): Turn => ({
    tokens: [10 + k, 11],
    logprobs: [-0.5, -0.5],
    observation: kind === 'search' ? [40, 41] : [],
    kind,
  });
  const searches = probs.length - 1;
  return {
    prompt: [1, 2],
    turns: [
      ...Array.from({ length: searches }, (_, k) => turn('search', k)),
      turn(endReason === 'answer' ? 'answer' : 'ended', searches),
    ],
    probs: [...probs],
    probeAt: probs.map((_, k) => 2 + 4 * k),
    probe: { prefix: [], answer: [5] },
    outcome,
    endReason,
  };
}

const groupArb = (outcome: fc.Arbitrary<number>) =>
  fc
    .array(fc.tuple(fc.array(prob, { minLength: 1, maxLength: 4 }), outcome), { minLength: 2, maxLength: 6 })
    .map((rs) => rs.map(([ps, o]) => rollout(ps, o)));

describe('advantage collapse', () => {
  fcTest.prop([
    fc.array(fc.tuple(groupArb(fc.constant(0)), fc.double({ min: 0, max: 1, noNaN: true })), {
      minLength: 1,
      maxLength: 5,
    }),
  ])(
    'is 1 for a step whose outcomes are all equal within every group, whatever IG does; IGPO still has ' +
      'advantages there',
    (groups) => {
      // Each group gets its own constant outcome; IG (the p_t) is arbitrary.
      const gs = groups.map(([g, o]) => g.map((r) => ({ ...r, outcome: o })));
      const outcomes = gs.map((g) => g.map((r) => r.outcome));
      expect(collapsedGroups(outcomes)).toBe(1);
      const packed = packRollouts(gs.flat(), null, 0);
      const batch = { groups: gs, outcomes, packed };
      // GRPO learns nothing from such a step.
      expect(
        Array.from(ALGORITHMS.grpo.estimator(defaultRLOptions('grpo')).estimate(batch).advantages).every(
          (a) => a === 0,
        ),
      ).toBe(true);
      // IGPO does, in every group whose turn rewards (IG, and the outcome) are not all equal.
      gs.forEach((g, q) => {
        const one = packRollouts(g, null, 0);
        const { advantages } = ALGORITHMS.igpo
          .estimator(defaultRLOptions('igpo'))
          .estimate({ groups: [g], outcomes: [outcomes[q]], packed: one });
        const rewards = g.flatMap((r) => ALGORITHMS.igpo.turnRewards(r, r.outcome, defaultRLOptions('igpo')));
        const spread = Math.max(...rewards) - Math.min(...rewards);
        if (spread === 0 || spread > 1e-9)
          expect(zeroAdvantageGroups(one, advantages, g.length)).toBe(spread > 0 ? 0 : 1);
      });
    },
  );

  test('counts the groups whose outcome rewards are all equal, with the format penalty when it is on', () => {
    expect(
      collapsedGroups([
        [0, 0, 0],
        [0, 1, 0],
        [0.5, 0.5, 0.5],
        [1, 1, 0.99],
      ]),
    ).toBe(0.5);
    expect(() => collapsedGroups([])).toThrow(/no groups/);
    const [answered, malformed] = [rollout([0.1], 0), rollout([0.1], 0, 'unclosed-tag')];
    expect([answered, malformed].map((r) => outcomeReward(r, { formatPenalty: null }))).toEqual([0, 0]);
    expect([answered, malformed].map((r) => outcomeReward(r, { formatPenalty: -2 }))).toEqual([0, -2]);
    expect(collapsedGroups([[answered, malformed].map((r) => outcomeReward(r, { formatPenalty: -2 }))])).toBe(0);
  });
});

describe('what IG contributes', () => {
  test("IG share: the search turns' part of the normalised rewards' sum of squares", () => {
    const rs = [rollout([0.1, 0.4], 1), rollout([0.1], 0)];
    // Normalised rewards [[a, b], [c]]: the first turn of rollout 0 is its only search turn.
    expect(igShare([[1, -2], [1]], rs)).toBeCloseTo(1 / 6, 12);
    expect(igShare([[0, 0], [0]], rs)).toBeNull();
    expect(() => igShare([[1]], rs)).toThrow(/1 rows of rewards for 2 rollouts/);
    // GRPO's entry normalises zeros for IG: share 0. IG-only's answer turns carry 0 before normalising.
    const packed = packRollouts(rs, null, 0);
    const batch = { groups: [rs], outcomes: [[1, 0]], packed };
    expect(
      igShare(ALGORITHMS.grpo.estimator(defaultRLOptions('grpo')).estimate(batch).normalizedTurnRewards!, rs),
    ).toBe(0);
    const share = igShare(
      ALGORITHMS.igpo.estimator(defaultRLOptions('igpo')).estimate(batch).normalizedTurnRewards!,
      rs,
    )!;
    expect(share).toBeGreaterThan(0);
    expect(share).toBeLessThan(1);
  });

  test('IG by the answer fact, the entropy reduction, and the correlation', () => {
    const rs = [rollout([0.1, 0.5], 1), rollout([0.1, 0.2, 0.15], 0), rollout([0.2], 0), rollout([0.1, 0.1], 0)];
    // Rollout 0 was shown the fact at turn 0; rollout 1 found it at turn 1; rollout 3 only at its last
    // search (no response).
    const f = igByAnswerFact(rs, [0, 1, null, 1]);
    expect(f.found).toBeCloseTo((0.4 + 0.05) / 2, 12);
    expect(f.notFound).toBeCloseTo(0, 12); // rollout 3: shown nothing useful; rollout 2 never searched
    expect(f.factTurn).toBeCloseTo((0.4 - 0.05) / 2, 12);
    expect(f.otherTurns).toBeCloseTo((0.1 + 0) / 2, 12);
    expect(gtEntropyReduction(rs)).toBeCloseTo((Math.log(5) + Math.log(1.5) + 0) / 3, 12);
    expect(gtEntropyReduction([rollout([0.3], 1)])).toBeNull();
    expect(pearson([1, 2, 3], [2, 4, 6])).toBeCloseTo(1, 12);
    expect(pearson([1, 2, 3], [1, 1, 1])).toBeNull();
    expect(pearson([1], [1])).toBeNull();
  });

  test('an episode knows the turn whose search first returned the fact that holds the answer', () => {
    const spec = makeSplit('eval', 2, 1)[0];
    const ep = Episode.fromSpec(spec, { maxTurns: 4 });
    const fact = spec.question.chain.at(-1)!;
    expect(fact.text).toContain(spec.question.gold);
    ep.step('<think>t</think><search>zzz</search>');
    expect(ep.answerFactTurn).toBeNull();
    ep.step(`<think>t</think><search>${fact.text}</search>`);
    expect(ep.answerFactTurn).toBe(1);
    ep.step(`<think>t</think><search>${fact.text}</search>`);
    expect(ep.answerFactTurn).toBe(1);
  });
});

describe('minibatches of whole groups', () => {
  fcTest.prop([
    fc.integer({ min: 1, max: 40 }),
    fc.integer({ min: 1, max: 8 }),
    fc.integer({ min: 1, max: 6 }),
    fc.integer({ min: 0, max: 1000 }),
  ])(
    'every row is used exactly once per epoch, no group is split, and minibatches differ by at most one group',
    (B, groupSize, n, seed) => {
      const mbs = groupMinibatches(B, groupSize, n, new E.Generator(seed));
      const groups = Math.ceil(B / groupSize);
      expect(mbs.length).toBe(Math.min(n, groups));
      expect(mbs.flat().sort((a, b) => a - b)).toEqual(Array.from({ length: B }, (_, i) => i));
      const counts = mbs.map((rows) => {
        const gs = new Set(rows.map((r) => Math.floor(r / groupSize)));
        for (const g of gs)
          expect(rows.filter((r) => Math.floor(r / groupSize) === g).length).toBe(
            Math.min(groupSize, B - g * groupSize),
          );
        return gs.size;
      });
      expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
    },
  );

  test('the order is shuffled by the generator, and an update refuses a plan that drops or repeats a row', async () => {
    const orders = new Set(
      [0, 1, 2, 3, 4, 5].map((s) => JSON.stringify(groupMinibatches(16, 2, 2, new E.Generator(s)))),
    );
    expect(orders.size).toBeGreaterThan(1);
    const tok = defaultTokenizer();
    const model = new GPT({
      vocabSize: tok.vocabSize,
      blockSize: 64,
      nLayer: 1,
      nHead: 2,
      nEmbd: 16,
      ropeBase: 10000,
      normEps: 1e-5,
    });
    const packed = packRollouts([rollout([0.1, 0.2], 1), rollout([0.1], 0), rollout([0.3], 1)], null, tok.pad);
    const opt = new E.AdamW(model.parameters(), { lr: 1e-3 });
    const opts = { loss: { ...defaultLossOptions, klCoef: 0 }, maxGradNorm: 1 };
    await expect(updatePolicy(model, null, opt, packed, { ...opts, minibatches: [[0, 1]] })).rejects.toThrow(
      /each of the 3 rows exactly once \(row 2 is in 0\)/,
    );
    await expect(
      updatePolicy(model, null, opt, packed, {
        ...opts,
        minibatches: [
          [0, 1],
          [1, 2],
        ],
      }),
    ).rejects.toThrow(/row 1 is in 2/);
    const stats = await updatePolicy(model, null, opt, packed, { ...opts, minibatches: [[2], [0, 1]] });
    expect(stats.clipFracs.length).toBe(2);
    expect(stats.clipFracs[0]).toBe(0); // the first minibatch is on-policy: ratio 1, nothing clipped
    opt.dispose();
    model.dispose();
  });
});

describe('the registry', () => {
  test('one entry per algorithm, each with a display name, a section, turn rewards and an estimator', () => {
    expect(ALGOS).toEqual(['igpo', 'grpo', 'ig', 'rloo', 'ppo', 'reinforce++', 'gspo', 'gigpo', 'stepsearch']);
    const r = rollout([0.1, 0.3, 0.6], 0.5);
    for (const name of ALGOS) {
      const a = algorithm(name);
      expect(a.display.length).toBeGreaterThan(0);
      expect(['outcome', 'step']).toContain(a.section);
      const rewards = a.turnRewards(r, r.outcome, defaultRLOptions(name));
      expect(rewards.length).toBe(r.turns.length);
      const withIG = (['igpo', 'ig'] as Algo[]).includes(name);
      expect(rewards.slice(0, -1).reduce((s, x) => s + x, 0)).toBeCloseTo(withIG ? 0.5 : 0, 12);
      expect(typeof a.estimator(defaultRLOptions(name)).estimate).toBe('function');
    }
    expect(() => algorithm('dpo')).toThrow(/unknown algorithm 'dpo' \(known: igpo, grpo/);
  });
});

describe('the study\u2019s settings', () => {
  test('the sparse preset draws mostly 2-hop questions for training and eval; out-of-domain keeps its 3 hops', () => {
    const hops = (split: 'train' | 'eval' | 'ood') =>
      makeSplit(presetSplit(PRESETS.sparse, split), 5, 300).map((e) => e.question.hops.length);
    for (const split of ['train', 'eval'] as const) {
      const two = hops(split).filter((h) => h === 2).length / 300;
      expect(two).toBeGreaterThan(0.85);
      expect(hops(split).every((h) => h <= 2)).toBe(true);
    }
    expect(hops('ood').every((h) => h === 3)).toBe(true);
    // The default preset draws exactly the splits' own episodes.
    expect(makeSplit(presetSplit(PRESETS.default, 'eval'), 5, 20)).toEqual(makeSplit('eval', 5, 20));
  });

  test(
    'inference-only baselines: CoT never searches; CoT+RAG searches once, with the ' + 'question, then never',
    async () => {
      const tok = defaultTokenizer();
      const model = protocolModel(tok); // it would search at every turn if it could
      const specs = makeSplit('eval', 3, 3);
      const seen: Rollout[] = [];
      const cot = await evaluate(model, tok, specs, PRESETS.default, { mode: 'cot', onEpisode: (r) => seen.push(r) });
      expect(cot.meanSearches).toBe(0);
      expect(seen.every((r) => r.turns.length === 1 && !r.turns[0].tokens.includes(tok.search))).toBe(true);
      seen.length = 0;
      const rag = await evaluate(model, tok, specs, PRESETS.default, { mode: 'rag', onEpisode: (r) => seen.push(r) });
      expect(rag.meanSearches).toBe(1);
      seen.forEach((r, i) => {
        expect(tok.decode(r.prompt)).toContain(ragTurn(specs[i].question.text) + '<info>');
        expect(r.turns.every((t) => !t.tokens.includes(tok.search))).toBe(true);
      });
      const agent = await evaluate(model, tok, specs, PRESETS.default);
      expect(agent.meanSearches).toBe(4);
      model.dispose();
    },
  );
});
