// The paper's baselines as properties that pin each definition: RLOO's leave-one-out baseline, REINFORCE++'s
// batch normalisation and KL reward, GSPO's sequence ratio and its gradient (float64 finite differences),
// PPO's GAE and clipped value loss, GiGPO's anchor groups; and one RL step of every algorithm on the smoke preset.

import { fc, test as fcTest } from '@fast-check/vitest';
import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';
import { GPT } from '../model/gpt.js';
import { defaultTokenizer } from '../model/tokenizer.js';
import { ALGORITHMS, ALGOS, defaultRLOptions, lossOptionsOf } from '../igpo/algorithms.js';
import {
  anchorGroups,
  anchorKeys,
  gigpoAdvantages,
  gspoLoss,
  klShapedReturns,
  reinforcePPEstimator,
  rlooAdvantages,
  sequenceRatio,
  stepSearchRewards,
  type GiGPOOptions,
} from '../igpo/baselines.js';
import { broadcastTurns, type StepBatch } from '../igpo/estimator.js';
import { defaultLossOptions, policyLoss, type PolicyLossOptions } from '../igpo/loss.js';
import { zeroAdvantageGroups } from '../igpo/metrics.js';
import type { Rollout } from '../igpo/rollout.js';
import { PRESETS, trainRL } from '../igpo/trainer.js';
import { packRollouts, type Packed } from '../igpo/update.js';
import { batchNormalize, gae, packedGae, policyPositions, ValueHead, valueLoss } from '../igpo/value.js';
import { gradcheck } from '../testing/index.js';

const reward = fc.double({ min: -1, max: 1, noNaN: true });
const f1 = fc.double({ min: 0, max: 1, noNaN: true });
const sum = (xs: readonly number[]) => xs.reduce((s, x) => s + x, 0);

// ---------------------------------------------------------------------------------------------------
// Synthetic rollouts: token ids do not matter, only lengths, observations and outcomes.

interface TurnSpec {
  n: number;
  obs: number[];
}

function rollout(turns: readonly TurnSpec[], outcome: number, prompt: number[] = [1, 2, 3]): Rollout {
  return {
    prompt,
    turns: turns.map((t, k) => ({
      tokens: Array.from({ length: t.n }, (_, j) => 10 + j),
      logprobs: Array.from({ length: t.n }, (_, j) => -0.1 * (j + 1)),
      observation: k < turns.length - 1 ? t.obs : [],
      kind: k < turns.length - 1 ? 'search' : 'answer',
    })),
    probs: [],
    probeAt: [],
    probe: { prefix: [], answer: [5] },
    outcome,
    endReason: 'answer',
  };
}

/** A step batch of groups, their outcome rewards read from the rollouts. */
const stepBatch = (groups: Rollout[][], packed: Packed, extra: Partial<StepBatch> = {}): StepBatch => ({
  groups,
  outcomes: groups.map((g) => g.map((r) => r.outcome)),
  packed,
  ...extra,
});

/** A rollout with 1..4 turns of 1..5 tokens, observations drawn from a tiny alphabet so that anchors collide. */
const rolloutArb = fc
  .tuple(
    fc.array(
      fc.record({
        n: fc.integer({ min: 1, max: 5 }),
        obs: fc.array(fc.integer({ min: 40, max: 41 }), { minLength: 1, maxLength: 2 }),
      }),
      { minLength: 1, maxLength: 4 },
    ),
    f1,
  )
  .map(([turns, outcome]) => rollout(turns, outcome));
const groupArb = (min = 1) => fc.array(rolloutArb, { minLength: min, maxLength: 6 });

// ---------------------------------------------------------------------------------------------------

describe('RLOO', () => {
  fcTest.prop([fc.array(reward, { minLength: 2, maxLength: 8 })])(
    'A_i = r_i - mean_{j != i} r_j = (G / (G - 1)) (r_i - mean r); the group sums to 0',
    (rs) => {
      const A = rlooAdvantages(rs);
      const G = rs.length;
      const mean = sum(rs) / G;
      A.forEach((a, i) => {
        expect(a).toBeCloseTo(rs[i] - sum(rs.filter((_, j) => j !== i)) / (G - 1), 12);
        expect(a).toBeCloseTo((G / (G - 1)) * (rs[i] - mean), 12);
      });
      expect(sum(A)).toBeCloseTo(0, 12);
    },
  );

  fcTest.prop([
    fc.array(reward, { minLength: 2, maxLength: 8 }),
    fc.nat(),
    fc.double({ min: -1, max: 1, noNaN: true }),
  ])(
    'the baseline excludes the sample itself: moving r_i by d moves A_i by d and each other A_j by -d / (G - 1)',
    (rs, k, d) => {
      const i = k % rs.length;
      const moved = rs.map((r, j) => (j === i ? r + d : r));
      const [A, B] = [rlooAdvantages(rs), rlooAdvantages(moved)];
      B.forEach((b, j) => expect(b - A[j]).toBeCloseTo(j === i ? d : -d / (rs.length - 1), 12));
    },
  );

  test('a group of one, or of equal rewards, gives exact zeros; every turn of a rollout gets its A_i', () => {
    expect(rlooAdvantages([0.7])).toEqual([0]);
    expect(rlooAdvantages([0.3, 0.3, 0.3])).toEqual([0, 0, 0]);
    const group = [
      rollout(
        [
          { n: 2, obs: [40] },
          { n: 3, obs: [] },
        ],
        1,
      ),
      rollout([{ n: 1, obs: [] }], 0),
    ];
    const packed = packRollouts(group, null, 0);
    const adv = ALGORITHMS.rloo.estimator(defaultRLOptions('rloo')).estimate(stepBatch([group], packed)).advantages;
    expect(rowValues(packed, adv, 0)).toEqual([1, 1, 1, 1, 1]);
    expect(rowValues(packed, adv, 1)).toEqual([-1]);
  });
});

/** The advantages at row b's policy positions, in order. */
function rowValues(p: Packed, a: ArrayLike<number>, b: number): number[] {
  return policyPositions(p)[b].map((i) => a[i]);
}

// ---------------------------------------------------------------------------------------------------

describe('REINFORCE++', () => {
  const batchArb = fc.array(groupArb(1), { minLength: 1, maxLength: 4 }).chain((groups) => {
    const packed = packRollouts(groups.flat(), null, 0);
    const n = packed.B * packed.L;
    const lp = fc
      .array(fc.double({ min: -5, max: 0, noNaN: true }), { minLength: n, maxLength: n })
      .map((a) => Float32Array.from(a));
    return fc.tuple(fc.constant(groups), fc.constant(packed), lp, lp, fc.constantFrom(0, 0.001, 0.1));
  });

  fcTest.prop([batchArb])(
    'advantages have batch mean 0 (and std 1 unless all equal) over every policy token of the step; 0 off the mask',
    ([groups, packed, logp, refLogp, klCoef]) => {
      const { advantages } = reinforcePPEstimator({ klCoef, gamma: 1, eps: 0 }).estimate(
        stepBatch(groups, packed, { logp, refLogp }),
      );
      const on = Array.from(advantages).filter((_, i) => packed.mask[i] === 1);
      expect(on.length).toBe(packed.policyTokens);
      expect(sum(on) / on.length).toBeCloseTo(0, 5);
      const sd = Math.sqrt(sum(on.map((x) => x * x)) / on.length);
      if (on.some((x) => x !== 0)) expect(sd).toBeCloseTo(1, 4);
      advantages.forEach((a, i) => packed.mask[i] === 0 && expect(a).toBe(0));
    },
  );

  fcTest.prop([batchArb, fc.double({ min: 0, max: 1, noNaN: true })])(
    'returns: the outcome on the last policy token and the k1 KL on every token, summed over later policy tokens',
    ([groups, packed, logp, refLogp], gamma) => {
      const klCoef = 0.05;
      const G = klShapedReturns(
        packed,
        groups.flat().map((r) => r.outcome),
        logp,
        refLogp,
        { klCoef, gamma },
      );
      policyPositions(packed).forEach((pos, b) => {
        const r = pos.map(
          (i, k) => (k === pos.length - 1 ? groups.flat()[b].outcome : 0) - klCoef * (logp[i] - refLogp[i]),
        );
        pos.forEach((i, k) => expect(G[i]).toBeCloseTo(sum(r.slice(k).map((x, m) => gamma ** m * x)), 9));
      });
    },
  );

  test(
    'normalisation is global: a group whose outcomes are all equal still gets advantages when ' +
      'another group differs',
    () => {
      const groups = [
        [rollout([{ n: 2, obs: [] }], 0), rollout([{ n: 2, obs: [] }], 0)],
        [rollout([{ n: 2, obs: [] }], 1), rollout([{ n: 2, obs: [] }], 0)],
      ];
      const packed = packRollouts(groups.flat(), null, 0);
      const zeros = new Float32Array(packed.B * packed.L);
      const { advantages } = reinforcePPEstimator({ klCoef: 0.001, gamma: 1, eps: 0 }).estimate(
        stepBatch(groups, packed, { logp: zeros, refLogp: zeros }),
      );
      expect(rowValues(packed, advantages, 0).every((a) => a < 0)).toBe(true);
      expect(zeroAdvantageGroups(packed, advantages, 2)).toBe(0);
      // With the policy equal to the reference (the first step) and equal outcomes everywhere: exact zeros.
      const flat = [[rollout([{ n: 2, obs: [] }], 0), rollout([{ n: 3, obs: [] }], 0)]];
      const p2 = packRollouts(flat.flat(), null, 0);
      const lp = Float32Array.from({ length: p2.B * p2.L }, (_, i) => -i / 7);
      expect(
        Array.from(
          reinforcePPEstimator({ klCoef: 0.001, gamma: 1, eps: 1e-6 }).estimate(
            stepBatch(flat, p2, { logp: lp, refLogp: lp }),
          ).advantages,
        ).every((a) => a === 0),
      ).toBe(true);
    },
  );

  test('the KL moves from the loss into the reward', () => {
    expect(lossOptionsOf(defaultRLOptions('reinforce++')).klCoef).toBe(0);
    expect(ALGORITHMS['reinforce++'].estimator(defaultRLOptions('reinforce++')).needsRefLogp).toBe(true);
    expect(lossOptionsOf(defaultRLOptions('igpo')).klCoef).toBe(defaultLossOptions.klCoef);
  });

  fcTest.prop([
    fc.array(reward, { minLength: 1, maxLength: 20 }),
    fc.array(fc.boolean(), { minLength: 20, maxLength: 20 }),
  ])('batchNormalize: masked mean 0, all-equal gives zeros', (xs, m) => {
    const mask = xs.map((_, i) => (m[i] ? 1 : 0));
    const y = batchNormalize(xs, mask, 0);
    const on = Array.from(y).filter((_, i) => mask[i] === 1);
    if (on.length) expect(sum(on) / on.length).toBeCloseTo(0, 5);
    expect(
      Array.from(
        batchNormalize(
          xs.map(() => 0.25),
          mask,
          0,
        ),
      ).every((v) => v === 0),
    ).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------

describe('GSPO', () => {
  const f64 = (xs: ArrayLike<number>, shape: number[]) => E.tensor(Float64Array.from(xs), shape);
  const opts = (clipLow: number, clipHigh: number): PolicyLossOptions => ({
    ...defaultLossOptions,
    clipLow,
    clipHigh,
    klCoef: 0,
    entropyCoef: 0,
  });

  /**
   * B rows of T tokens: old log-probs, a perturbation of them, a mask with at least one token per row, and one
   * advantage per row.
   */
  const seqArb = (maxDelta: number) =>
    fc.tuple(fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 5 })).chain(([B, T]) =>
      fc.record({
        B: fc.constant(B),
        T: fc.constant(T),
        old: fc.array(fc.double({ min: -4, max: -0.01, noNaN: true }), { minLength: B * T, maxLength: B * T }),
        delta: fc.array(fc.double({ min: -maxDelta, max: maxDelta, noNaN: true }), {
          minLength: B * T,
          maxLength: B * T,
        }),
        mask: fc
          .array(fc.boolean(), { minLength: B * T, maxLength: B * T })
          .map((m) => m.map((x, i) => (x || i % T === 0 ? 1 : 0))),
        adv: fc.array(reward, { minLength: B, maxLength: B }),
      }),
    );

  /** The definition in plain float64 JS: -(1/B) sum_i min(s_i A_i, clip(s_i) A_i), s_i = exp(mean_t (logp - old)). */
  function reference(
    logp: ArrayLike<number>,
    s: { B: number; T: number; old: number[]; mask: number[]; adv: number[] },
    lo: number,
    hi: number,
  ): number {
    let total = 0;
    for (let b = 0; b < s.B; b++) {
      let d = 0;
      let n = 0;
      for (let t = 0; t < s.T; t++) {
        if (!s.mask[b * s.T + t]) continue;
        d += logp[b * s.T + t] - s.old[b * s.T + t];
        n++;
      }
      const r = Math.exp(d / n);
      total += Math.min(r * s.adv[b], Math.min(Math.max(r, 1 - lo), 1 + hi) * s.adv[b]);
    }
    return -total / s.B;
  }

  const advTokens = (s: { B: number; T: number; adv: number[] }) =>
    Array.from({ length: s.B * s.T }, (_, i) => s.adv[Math.floor(i / s.T)]);

  fcTest.prop([seqArb(0)])('the sequence ratio is exactly 1 when the policy equals the sampling policy', (s) => {
    const lp = f64(s.old, [s.B, s.T]);
    Array.from(sequenceRatio(lp, lp, f64(s.mask, [s.B, s.T])).dataSync()).forEach((r) => expect(r).toBe(1));
  });

  fcTest.prop([seqArb(0.5)])(
    'the sequence ratio is exp of the mean log-ratio over the row\u2019s policy tokens (length-normalised)',
    (s) => {
      const logp = s.old.map((o, i) => o + s.delta[i]);
      const r = Array.from(
        sequenceRatio(f64(logp, [s.B, s.T]), f64(s.old, [s.B, s.T]), f64(s.mask, [s.B, s.T])).dataSync(),
      );
      r.forEach((x, b) => {
        const idx = Array.from({ length: s.T }, (_, t) => b * s.T + t).filter((i) => s.mask[i]);
        expect(x).toBeCloseTo(Math.exp(sum(idx.map((i) => s.delta[i])) / idx.length), 12);
      });
    },
  );

  fcTest.prop([
    seqArb(0.5),
    fc.constantFrom<[number, number]>([3e-4, 4e-4], [0.2, 0.2], [0.05, 0.1]),
    fc.integer({ min: 0, max: 1 << 30 }),
  ])(
    'its gradient matches the sequence-level definition: float64 finite differences through the engine and of ' +
      'the definition',
    (s, [lo, hi], seed) => {
      const logp = s.old.map((o, i) => o + s.delta[i]);
      const loss = (lp: E.Tensor) =>
        gspoLoss(
          {
            logp: lp,
            oldLogp: f64(s.old, [s.B, s.T]),
            advantages: f64(advTokens(s), [s.B, s.T]),
            mask: f64(s.mask, [s.B, s.T]),
          },
          opts(lo, hi),
        ).loss;
      // Keep away from the clip kinks, where neither side's derivative is the gradient.
      const ratios = Array.from(
        E.noGrad(() =>
          sequenceRatio(f64(logp, [s.B, s.T]), f64(s.old, [s.B, s.T]), f64(s.mask, [s.B, s.T])),
        ).dataSync(),
      );
      fc.pre(ratios.every((r) => Math.abs(r - (1 - lo)) > 1e-4 && Math.abs(r - (1 + hi)) > 1e-4));
      expect(loss(f64(logp, [s.B, s.T])).dataSync()[0]).toBeCloseTo(reference(logp, s, lo, hi), 12);
      gradcheck(loss, [{ shape: [s.B, s.T], data: logp }], { name: 'gspoLoss', seed });
      // The engine's gradient against central differences of the plain definition.
      const x = E.tensor(Float64Array.from(logp), [s.B, s.T], { requiresGrad: true });
      loss(x).backward();
      const g = x.grad!.dataSync();
      const h = 1e-6;
      logp.forEach((v, i) => {
        const up = logp.slice();
        const dn = logp.slice();
        up[i] = v + h;
        dn[i] = v - h;
        expect(Math.abs(g[i] - (reference(up, s, lo, hi) - reference(dn, s, lo, hi)) / (2 * h))).toBeLessThan(1e-6);
      });
    },
  );

  fcTest.prop([seqArb(0)])(
    'at ratio 1 its gradient is -A_i / (B |y_i|) per policy token: GRPO\u2019s (seq-mean-token-mean) gradient',
    (s) => {
      const grad = (f: typeof gspoLoss) => {
        const x = E.tensor(Float64Array.from(s.old), [s.B, s.T], { requiresGrad: true });
        f(
          { logp: x, oldLogp: x.detach(), advantages: f64(advTokens(s), [s.B, s.T]), mask: f64(s.mask, [s.B, s.T]) },
          opts(3e-4, 4e-4),
        ).loss.backward();
        return Array.from(x.grad!.dataSync());
      };
      const g = grad(gspoLoss);
      const grpo = grad(policyLoss);
      g.forEach((v, i) => {
        const b = Math.floor(i / s.T);
        const n = sum(s.mask.slice(b * s.T, (b + 1) * s.T));
        expect(v).toBeCloseTo(s.mask[i] ? -s.adv[b] / (s.B * n) : 0, 12);
        expect(v).toBeCloseTo(grpo[i], 12);
      });
    },
  );

  test('a sequence outside the clip range on the side its advantage pushes gets no gradient', () => {
    // s = e^0.01, e^-0.01
    const x = E.tensor(Float64Array.from([0.01, 0.01, -0.01, -0.01]), [2, 2], { requiresGrad: true });
    const { loss, stats } = gspoLoss(
      {
        logp: x,
        oldLogp: f64([0, 0, 0, 0], [2, 2]),
        advantages: f64([1, 1, 1, 1], [2, 2]),
        mask: f64([1, 1, 1, 1], [2, 2]),
      },
      opts(3e-4, 4e-4),
    );
    loss.backward();
    const g = Array.from(x.grad!.dataSync());
    expect(g.slice(0, 2).map(Math.abs)).toEqual([0, 0]); // s > 1 + 4e-4 with A > 0: clipped
    expect(g[2]).toBeCloseTo(-Math.exp(-0.01) / 2 / 2, 12); // s < 1 - 3e-4 with A > 0: the min keeps the unclipped term
    expect(stats.clipFrac.dataSync()[0]).toBeCloseTo(0.5, 12);
    expect(lossOptionsOf(defaultRLOptions('gspo'))).toMatchObject({ clipLow: 3e-4, clipHigh: 4e-4 });
    expect(ALGORITHMS.gspo.lossFn).toBe(gspoLoss);
  });
});

// ---------------------------------------------------------------------------------------------------

describe('PPO: GAE and the value loss', () => {
  const seq = fc.array(reward, { minLength: 1, maxLength: 10 });
  const gammaArb = fc.double({ min: 0, max: 1, noNaN: true });

  fcTest.prop([seq, gammaArb])('lambda = 1 with a zero value function gives the discounted return', (r, gamma) => {
    const { advantages, returns } = gae(
      r,
      r.map(() => 0),
      gamma,
      1,
    );
    advantages.forEach((a, t) => {
      const G = sum(r.slice(t).map((x, k) => gamma ** k * x));
      expect(a).toBeCloseTo(G, 12);
      expect(returns[t]).toBeCloseTo(G, 12);
    });
  });

  fcTest.prop([
    seq.chain((r) => fc.tuple(fc.constant(r), fc.array(reward, { minLength: r.length, maxLength: r.length }))),
    gammaArb,
  ])('lambda = 1: A_t = G_t - V_t; lambda = 0: A_t = r_t + gamma V_{t+1} - V_t', ([r, v], gamma) => {
    const one = gae(r, v, gamma, 1);
    const zero = gae(r, v, gamma, 0);
    r.forEach((_, t) => {
      expect(one.advantages[t]).toBeCloseTo(sum(r.slice(t).map((x, k) => gamma ** k * x)) - v[t], 12);
      expect(zero.advantages[t]).toBeCloseTo(r[t] + gamma * (v[t + 1] ?? 0) - v[t], 12);
    });
  });

  fcTest.prop([groupArb(1), gammaArb, fc.double({ min: 0, max: 1, noNaN: true })])(
    'over a packed batch, GAE runs over policy tokens only: tool responses are skipped and the outcome sits on the ' +
      'last policy token',
    (group, gamma, lambda) => {
      const packed = packRollouts(group, null, 0);
      const values = Float32Array.from({ length: packed.B * packed.L }, (_, i) => Math.sin(i));
      const { advantages, returns } = packedGae(
        packed,
        values,
        group.map((r) => r.outcome),
        { gamma, lambda, whiten: false, eps: 0 },
      );
      policyPositions(packed).forEach((pos, b) => {
        const ref = gae(
          pos.map((_, k) => (k === pos.length - 1 ? group[b].outcome : 0)),
          pos.map((i) => values[i]),
          gamma,
          lambda,
        );
        pos.forEach((i, k) => {
          expect(advantages[i]).toBeCloseTo(ref.advantages[k], 5);
          expect(returns![i]).toBeCloseTo(ref.returns[k], 5);
        });
      });
      advantages.forEach((a, i) => packed.mask[i] === 0 && expect(a).toBe(0));
    },
  );

  test('the value loss: 0.5 (V - R)^2 inside the clip range; the larger of clipped and unclipped outside it', () => {
    const t = (xs: number[]) => E.tensor(Float64Array.from(xs), [1, xs.length]);
    // V moved 0.1 from V_old (inside 0.5): plain squared error.
    expect(valueLoss(t([0.6]), t([0.5]), t([1]), t([1]), 0.5).dataSync()[0]).toBeCloseTo(0.5 * 0.16, 12);
    // V moved 2 toward R = 3 from V_old = 0: clipped to 0.5, whose error (2.5^2) is larger than the
    // unclipped one (1^2).
    expect(valueLoss(t([2]), t([0]), t([3]), t([1]), 0.5).dataSync()[0]).toBeCloseTo(0.5 * 6.25, 12);
    // Masked positions do not count.
    expect(valueLoss(t([2, 9]), t([2, 0]), t([1, 0]), t([1, 0]), 0.5).dataSync()[0]).toBeCloseTo(0.5, 12);
  });

  test('the value head reads the decoder\u2019s final hidden states (the tied head\u2019s input)', () => {
    const model = new GPT(
      { vocabSize: 11, blockSize: 8, nLayer: 1, nHead: 2, nEmbd: 8, ropeBase: 10000, normEps: 1e-5 },
      { dtype: 'float64' },
    );
    const ids = E.tensor(Int32Array.from([1, 2, 3, 4, 5, 6]), [2, 3]);
    const { logits, hidden } = model.forward(ids, { returnHidden: true });
    expect(hidden!.shape).toEqual([2, 3, 8]);
    const again = E.matmulT(hidden!, model.p('wte'), false, true).dataSync();
    Array.from(logits.dataSync()).forEach((x, i) => expect(x).toBeCloseTo(again[i], 12));
    expect(model.forward(ids).hidden).toBeUndefined();
    const head = new ValueHead(8, { dtype: 'float64' });
    expect(head.forward(hidden!).shape).toEqual([2, 3]);
  });
});

// ---------------------------------------------------------------------------------------------------

describe('GiGPO', () => {
  const opts: GiGPOOptions = { omega: 1, gamma: 0.95, norm: 'std', eps: 0 };
  /** What the environment showed before turn t: the prompt and the observations of turns 0..t-1. */
  const history = (r: Rollout, t: number) =>
    JSON.stringify([r.prompt, ...r.turns.slice(0, t).map((u) => u.observation)]);

  fcTest.prop([groupArb(2)])(
    'step groups contain only identical observations, and every identical observation is in one group',
    (group) => {
      const anchors = [...anchorGroups(group).values()];
      for (const members of anchors) {
        const [i0, t0] = members[0];
        for (const [i, t] of members) {
          expect(t).toBe(t0);
          expect(history(group[i], t)).toBe(history(group[i0], t0));
        }
      }
      // A partition of all (rollout, turn) pairs, maximal: equal histories never sit in two groups.
      expect(sum(anchors.map((m) => m.length))).toBe(sum(group.map((r) => r.turns.length)));
      const seen = new Map<string, number>();
      anchors.forEach((members, g) =>
        members.forEach(([i, t]) => {
          const h = history(group[i], t);
          expect(seen.get(h) ?? g).toBe(g);
          seen.set(h, g);
        }),
      );
      // Turn 0 of every rollout shares the question: one anchor group of size G.
      expect(anchors.find((m) => m.some(([, t]) => t === 0))!.length).toBe(group.length);
      group.forEach((r) => expect(anchorKeys(r).length).toBe(r.turns.length));
    },
  );

  fcTest.prop([groupArb(2), fc.double({ min: 0, max: 2, noNaN: true })])(
    'A = A^E + omega A^S: the step part has mean 0 in each anchor group and is 0 in a singleton',
    (group, omega) => {
      const outcomes = group.map((r) => r.outcome);
      const A = gigpoAdvantages(group, outcomes, { ...opts, omega });
      const E0 = gigpoAdvantages(group, outcomes, { ...opts, omega: 0 });
      E0.forEach((row) => row.forEach((a) => expect(a).toBe(row[0]))); // the episode part is per rollout
      for (const members of anchorGroups(group).values()) {
        const step = members.map(([i, t]) => A[i][t] - E0[i][t]);
        expect(sum(step)).toBeCloseTo(0, 9);
        if (members.length === 1) expect(step[0]).toBeCloseTo(0, 12);
      }
    },
  );

  test('step returns are gamma-discounted outcomes, normalised within the anchor group', () => {
    // Two rollouts with the same first observation: turn 1 shares an anchor; the third searched elsewhere.
    const g = [
      rollout(
        [
          { n: 1, obs: [40] },
          { n: 1, obs: [] },
        ],
        1,
      ),
      rollout(
        [
          { n: 1, obs: [40] },
          { n: 1, obs: [41] },
          { n: 1, obs: [] },
        ],
        0,
      ),
      rollout(
        [
          { n: 1, obs: [41] },
          { n: 1, obs: [] },
        ],
        0,
      ),
    ];
    const A = gigpoAdvantages(g, [1, 0, 0], { ...opts, omega: 1 });
    const episode = [2 / Math.sqrt(2), -1 / Math.sqrt(2), -1 / Math.sqrt(2)]; // z-scores of 1, 0, 0
    // Turn 1 of rollouts 0 and 1 (returns 1 and 0): +1 and -1. Turn 1 of rollout 2 and turn 2 of rollout 1: singletons.
    expect(A[0][1]).toBeCloseTo(episode[0] + 1, 12);
    expect(A[1][1]).toBeCloseTo(episode[1] - 1, 12);
    expect(A[2][1]).toBeCloseTo(episode[2], 12);
    expect(A[1][2]).toBeCloseTo(episode[1], 12);
    // Turn 0 (all three): returns 0.95, 0, 0.
    expect(A[0][0]).toBeCloseTo(episode[0] + 2 / Math.sqrt(2), 12);
    // All outcomes equal: everything 0, never NaN.
    expect(
      gigpoAdvantages(g, [0, 0, 0], opts)
        .flat()
        .every((a) => a === 0),
    ).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------------

describe('StepSearch', () => {
  test(
    'a search earns the share of the gold facts it found first, minus the share of its results seen before; the ' +
      'outcome comes last',
    () => {
      const r = rollout(
        [
          { n: 1, obs: [40] },
          { n: 1, obs: [41] },
          { n: 1, obs: [] },
        ],
        0.5,
      );
      r.turns[0].retrieval = { newNeeded: 1, neededTotal: 2, repeated: 0, returned: 2 };
      r.turns[1].retrieval = { newNeeded: 0, neededTotal: 2, repeated: 1, returned: 2 };
      expect(stepSearchRewards(r, 0.5, { gain: 1, redundancy: 1 })).toEqual([0.5, -0.5, 0.5]);
      expect(stepSearchRewards(r, -2, { gain: 2, redundancy: 0 })).toEqual([1, 0, -2]);
      // Its advantages are IGPO's estimator over these rewards: a group whose rewards differ has advantages.
      const g = [r, rollout([{ n: 2, obs: [] }], 0.5)];
      const est = ALGORITHMS.stepsearch
        .estimator(defaultRLOptions('stepsearch'))
        .estimate(stepBatch([g], packRollouts(g, null, 0)));
      expect(Array.from(est.advantages).some((a) => a !== 0)).toBe(true);
    },
  );

  test('the environment reports each search\u2019s new gold facts and repeated results', async () => {
    const { Episode, makeSplit } = await import('../igpo/env.js');
    const spec = makeSplit('train', 4, 1)[0];
    const ep = Episode.fromSpec(spec, { maxTurns: 4 });
    const fact = spec.question.chain[0].text;
    const first = ep.step(`<think>a</think><search>${fact}</search>`).retrieval!;
    expect(first.newNeeded).toBe(1);
    expect(first.neededTotal).toBe(spec.question.chain.length);
    expect(first.repeated).toBe(0);
    const again = ep.step(`<think>a</think><search>${fact}</search>`).retrieval!;
    expect(again).toEqual({
      newNeeded: 0,
      neededTotal: first.neededTotal,
      repeated: first.returned,
      returned: first.returned,
    });
  });
});

describe('the shared loop', () => {
  test('turn advantages broadcast to their policy tokens; zero-advantage groups count whole groups', () => {
    const rs = [
      rollout(
        [
          { n: 2, obs: [40, 41] },
          { n: 1, obs: [] },
        ],
        1,
      ),
      rollout([{ n: 3, obs: [] }], 0),
      rollout([{ n: 1, obs: [] }], 0),
      rollout([{ n: 2, obs: [] }], 0),
    ];
    const packed = packRollouts(rs, null, 0);
    const adv = broadcastTurns(packed, [[0.5, -0.5], [0], [0], [0]]);
    expect(rowValues(packed, adv, 0)).toEqual([0.5, 0.5, -0.5]);
    expect(zeroAdvantageGroups(packed, adv, 2)).toBe(1);
    expect(zeroAdvantageGroups(packed, new Float32Array(adv.length), 2)).toBe(2);
  });

  test('trainRL runs one step of every algorithm on the smoke preset', async () => {
    const tok = defaultTokenizer();
    const preset = { ...PRESETS.smoke, rl: { ...PRESETS.smoke.rl, steps: 1, evalEpisodes: 2 } };
    for (const algo of ALGOS) {
      const model = new GPT(
        { vocabSize: tok.vocabSize, ropeBase: 10000, normEps: 1e-5, ...preset.model },
        { generator: new E.Generator(1) },
      );
      const before = E.memory().liveTensors;
      const res = await trainRL(model, tok, preset, defaultRLOptions(algo), 0);
      expect(E.memory().liveTensors, `${algo} leaked tensors`).toBe(before);
      expect(res.steps.length, algo).toBe(1);
      const m = res.steps[0];
      expect(m.algo).toBe(algo);
      for (const k of ['loss', 'kl', 'entropy', 'gradNorm', 'clipFrac', 'zeroAdvantageGroups'] as const)
        expect(Number.isFinite(m[k]), `${algo} ${k}`).toBe(true);
      expect(m.valueLoss !== undefined, algo).toBe(algo === 'ppo');
      model.dispose();
    }
  });
});
