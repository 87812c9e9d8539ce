// IGPO's maths as properties: information gain, F1, group-normalised turn advantages, and the clipped
// surrogate loss (its gradient at ratio 1, clipping, dual clip, KL, aggregation).

import { fc, test as fcTest } from '@fast-check/vitest';
import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';
import { groupTurnAdvantages } from '../igpo/advantage.js';
import { aggregate, klK3, policyLoss, type PolicyLossOptions } from '../igpo/loss.js';
import { answerProbability, f1Score, informationGains, normalizeAnswer } from '../igpo/reward.js';

const prob = fc.double({ min: 0, max: 1, noNaN: true });
const reward = fc.double({ min: -1, max: 1, noNaN: true });
const ragged = fc.array(fc.array(reward, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 6 });

describe('rewards', () => {
  fcTest.prop([fc.array(prob, { minLength: 1, maxLength: 8 })])(
    'information gains telescope: their sum is p_last - p_0',
    (ps) => {
      const ig = informationGains(ps);
      expect(ig.length).toBe(ps.length - 1);
      expect(ig.reduce((s, x) => s + x, 0)).toBeCloseTo(ps[ps.length - 1] - ps[0], 12);
      ig.forEach((g, i) => expect(g).toBe(ps[i + 1] - ps[i]));
    },
  );

  test('log-space gains and probability checks', () => {
    expect(informationGains([0.25, 0.5], { logSpace: true })[0]).toBeCloseTo(Math.log(2), 12);
    expect(() => informationGains([0.5, 1.5])).toThrow(/probs\[1\] = 1.5/);
    expect(answerProbability([Math.log(0.5), Math.log(0.125)])).toBeCloseTo(0.25, 12);
  });

  test('F1 follows the SQuAD script', () => {
    expect(normalizeAnswer('The  Melin, City!')).toBe('melin city');
    expect(f1Score('melin', 'Melin')).toBe(1);
    expect(f1Score('the melin', 'melin')).toBe(1);
    expect(f1Score('melin city', 'melin')).toBeCloseTo(2 / 3, 12); // p = 1/2, r = 1
    expect(f1Score('tavor', 'melin')).toBe(0);
    expect(f1Score('tavor', ['melin', 'tavor'])).toBe(1);
    expect(f1Score('', 'a')).toBe(1); // both normalise to empty
    expect(f1Score('x', '')).toBe(0);
    expect(f1Score('a a b', 'a b b')).toBeCloseTo(2 / 3, 12); // clipped counts
  });

  fcTest.prop([fc.string(), fc.string()])('F1 is in [0, 1], symmetric, and 1 on itself', (a, b) => {
    const f = f1Score(a, b);
    expect(f).toBeGreaterThanOrEqual(0);
    expect(f).toBeLessThanOrEqual(1);
    expect(f).toBeCloseTo(f1Score(b, a), 12);
    expect(f1Score(a, a)).toBe(1);
  });
});

describe('groupTurnAdvantages', () => {
  fcTest.prop([ragged])(
    'joint: the normalised rewards (gamma = 0) have mean 0 and population std 1 over the group',
    (rs) => {
      const a = groupTurnAdvantages(rs, { gamma: 0, eps: 0 }).flat();
      const flat = rs.flat();
      const mean = flat.reduce((s, x) => s + x, 0) / flat.length;
      const std = Math.sqrt(flat.reduce((s, x) => s + (x - mean) ** 2, 0) / flat.length);
      expect(a.reduce((s, x) => s + x, 0)).toBeCloseTo(0, 9);
      if (std > 1e-12 * Math.max(1, Math.abs(mean)))
        expect(Math.sqrt(a.reduce((s, x) => s + x * x, 0) / a.length)).toBeCloseTo(1, 6);
      else a.forEach((x) => expect(x).toBe(0));
    },
  );

  fcTest.prop([ragged, fc.double({ min: 0, max: 1, noNaN: true })])(
    'same ragged shape; discounting is the sum over later turns',
    (rs, gamma) => {
      const A = groupTurnAdvantages(rs, { gamma: 0 });
      const D = groupTurnAdvantages(rs, { gamma });
      expect(D.map((r) => r.length)).toEqual(rs.map((r) => r.length));
      D.forEach((row, i) =>
        row.forEach((d, t) => {
          let s = 0;
          for (let k = t; k < row.length; k++) s += gamma ** (k - t) * A[i][k];
          expect(d).toBeCloseTo(s, 9);
        }),
      );
    },
  );

  fcTest.prop([
    fc.integer({ min: 1, max: 6 }),
    fc.integer({ min: 1, max: 4 }),
    reward,
    fc.constantFrom<'joint' | 'separate'>('joint', 'separate'),
  ])('a group whose rewards are all equal gives zeros, never NaN (eps = 0 too)', (G, T, r, norm) => {
    const rs = Array.from({ length: G }, () => new Array<number>(T).fill(r));
    for (const eps of [0, 1e-6])
      groupTurnAdvantages(rs, { norm, eps })
        .flat()
        .forEach((x) => expect(x).toBe(0));
  });

  test('separate: final F1s and IGs are normalised among themselves', () => {
    const rs = [
      [0.2, 1],
      [0.4, 0.6, 0],
    ];
    const A = groupTurnAdvantages(rs, { norm: 'separate', gamma: 0, eps: 0 });
    // finals 1, 0 -> +1, -1; IGs 0.2, 0.4, 0.6 -> mean 0.4, std sqrt(0.08/3)
    const s = Math.sqrt(0.08 / 3);
    expect(A[0][1]).toBeCloseTo(1, 12);
    expect(A[1][2]).toBeCloseTo(-1, 12);
    expect(A[0][0]).toBeCloseTo(-0.2 / s, 9);
    expect(A[1][1]).toBeCloseTo(0.2 / s, 9);
    // With IGs all zero, 'separate' reduces to GRPO: every turn carries the rollout's z-scored F1.
    const grpo = groupTurnAdvantages(
      [[0, 0, 1], [0, 0.5], [0]].map((r) => r.map((x, t) => (t < r.length - 1 ? 0 : x))),
      { norm: 'separate' },
    );
    expect(grpo.map((r) => new Set(r.map((x) => x.toFixed(12))).size)).toEqual([1, 1, 1]);
    expect(() => groupTurnAdvantages([[]])).toThrow(/rollout 0 has no turns/);
    expect(() => groupTurnAdvantages([[NaN]])).toThrow(/not finite/);
  });
});

describe('policyLoss', () => {
  const opts = (o: Partial<PolicyLossOptions> = {}): PolicyLossOptions => ({
    clipLow: 0.2,
    clipHigh: 0.28,
    dualClip: 3,
    klCoef: 0,
    entropyCoef: 0,
    aggregation: 'token-mean',
    ...o,
  });
  const f64 = (xs: number[][]) => E.tensor(Float64Array.from(xs.flat()), [xs.length, xs[0].length]);

  fcTest.prop([
    fc.array(fc.tuple(fc.double({ min: -3, max: 0, noNaN: true }), reward, fc.boolean()), {
      minLength: 2,
      maxLength: 8,
    }),
    fc.constantFrom<'token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum'>(
      'token-mean',
      'seq-mean-token-mean',
      'seq-mean-token-sum',
    ),
  ])('at ratio 1 the gradient equals the plain policy gradient -A * dlogp (aggregated)', (toks, aggregation) => {
    const row = (f: (t: (typeof toks)[number]) => number) => [toks.map(f)];
    const logp = f64(row((t) => t[0])).requiresGrad_();
    const mask = f64(row((t) => (t[2] ? 1 : 0)));
    const adv = f64(row((t) => t[1]));
    policyLoss({ logp, oldLogp: logp.detach(), advantages: adv, mask }, opts({ aggregation })).loss.backward();
    const n = Math.max(1, toks.filter((t) => t[2]).length);
    const scale = aggregation === 'seq-mean-token-sum' ? 1 : 1 / n;
    Array.from(logp.grad!.dataSync()).forEach((g, i) =>
      expect(g).toBeCloseTo(toks[i][2] ? -toks[i][1] * scale : 0, 12),
    );
  });

  test('clipping cuts the gradient outside the trust region, on the side the advantage pushes', () => {
    // ratio 1.5 > 1 + clipHigh with A > 0: clipped, no gradient. ratio 0.5 < 1 - clipLow with A > 0: not clipped.
    const logp = f64([[Math.log(1.5), Math.log(0.5), Math.log(0.5)]]).requiresGrad_();
    const old = f64([[0, 0, 0]]);
    const adv = f64([[1, 1, -1]]);
    const { loss, stats } = policyLoss({ logp, oldLogp: old, advantages: adv, mask: f64([[1, 1, 1]]) }, opts());
    loss.backward();
    const g = Array.from(logp.grad!.dataSync());
    expect(Math.abs(g[0])).toBe(0);
    expect(g[1]).toBeCloseTo((-1 * 0.5) / 3, 12);
    expect(Math.abs(g[2])).toBe(0); // A < 0 and ratio 0.5 < 0.8: clipped at 0.8
    expect(stats.clipFrac.dataSync()[0]).toBeCloseTo(2 / 3, 12);
  });

  test('dual clip bounds the loss of a negative advantage by -A * c', () => {
    const logp = f64([[Math.log(10)]]).requiresGrad_();
    const { loss } = policyLoss({ logp, oldLogp: f64([[0]]), advantages: f64([[-2]]), mask: f64([[1]]) }, opts());
    expect(loss.dataSync()[0]).toBeCloseTo(6, 12); // min(2 * 10, 2 * 3)
    loss.backward();
    expect(Math.abs(logp.grad!.dataSync()[0])).toBe(0);
  });

  test('k3 KL is 0 at the reference, positive elsewhere, and its gradient pulls toward the reference', () => {
    const lp = f64([[-1, -2]]).requiresGrad_();
    const kl = klK3(lp, f64([[-1, -1]]));
    expect(Array.from(kl.dataSync())[0]).toBe(0);
    expect(Array.from(kl.dataSync())[1]).toBeCloseTo(Math.E - 1 - 1, 12);
    kl.sum().backward();
    expect(lp.grad!.dataSync()[1]).toBeLessThan(0); // raising logp toward ref lowers the KL
    expect(Number.isFinite(klK3(f64([[0]]), f64([[-1000]])).dataSync()[0])).toBe(true);
  });

  test('aggregations weigh tokens and sequences as named', () => {
    const x = f64([
      [1, 2, 3],
      [4, 0, 0],
    ]);
    const m = f64([
      [1, 1, 1],
      [1, 0, 0],
    ]);
    expect(aggregate(x, m, 'token-mean').dataSync()[0]).toBeCloseTo(10 / 4, 12);
    expect(aggregate(x, m, 'seq-mean-token-mean').dataSync()[0]).toBeCloseTo((2 + 4) / 2, 12);
    expect(aggregate(x, m, 'seq-mean-token-sum').dataSync()[0]).toBeCloseTo((6 + 4) / 2, 12);
  });
});
