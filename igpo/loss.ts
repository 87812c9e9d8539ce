// The policy loss of IGPO (and of the baselines that share it): PPO's clipped surrogate with asymmetric
// clip range and dual clip, a k3 KL penalty against a frozen reference, an entropy bonus, and the three
// token aggregations in use. Tensors in, a scalar loss and its statistics out; no model code here.

import * as E from '../engine/index.js';
import type { Tensor } from '../engine/index.js';

export type Aggregation = 'token-mean' | 'seq-mean-token-mean' | 'seq-mean-token-sum';

export interface PolicyLossOptions {
  /** Clip range 1 - clipLow .. 1 + clipHigh on the ratio (DAPO-style asymmetric when they differ). */
  clipLow: number;
  clipHigh: number;
  /** Dual clip (Ye et al. 2020): for A < 0 the loss is at most -A * c. */
  dualClip: number;
  /** KL coefficient beta (k3 estimator); 0 skips the reference. */
  klCoef: number;
  /** Entropy bonus coefficient. */
  entropyCoef: number;
  aggregation: Aggregation;
}

/** The defaults: clip 0.2 / 0.2, dual clip 3, beta 0.001, entropy 0.001, the paper's aggregation. */
export const defaultLossOptions: PolicyLossOptions = {
  clipLow: 0.2,
  clipHigh: 0.2,
  dualClip: 3,
  klCoef: 0.001,
  entropyCoef: 0.001,
  aggregation: 'seq-mean-token-mean',
};

export interface PolicyLossInputs {
  /** (B, T) log pi_theta of each taken token (differentiable). */
  logp: Tensor;
  /** (B, T) log pi_old from the sampling pass. */
  oldLogp: Tensor;
  /** (B, T) per-token advantages. */
  advantages: Tensor;
  /** (B, T) 1 on policy tokens, 0 on prompt, tool-response and padding tokens. */
  mask: Tensor;
  /** (B, T) log pi_ref, required when klCoef > 0. */
  refLogp?: Tensor;
  /** (B, T) entropy of pi_theta at each position (differentiable), required when entropyCoef > 0. */
  entropy?: Tensor;
}

export interface PolicyLossStats {
  /** Fraction of policy tokens whose surrogate was clipped (gradient cut). */
  clipFrac: Tensor;
  /** Mean k3 KL over policy tokens. */
  kl: Tensor;
  /** Mean entropy over policy tokens. */
  entropy: Tensor;
  /** Mean policy-gradient term. */
  pgLoss: Tensor;
}

/** Aggregates a (B, T) per-token quantity over masked tokens. */
export function aggregate(x: Tensor, mask: Tensor, how: Aggregation): Tensor {
  const m = x.mul(mask);
  if (how === 'token-mean') return m.sum().div(E.maximum(mask.sum(), 1));
  const perSeq = m.sum(1); // (B)
  if (how === 'seq-mean-token-sum') return perSeq.mean();
  return perSeq.div(E.maximum(mask.sum(1), 1)).mean();
}

/** k3 = exp(r) - r - 1 with r = logp_ref - logp, r clamped to [-20, 20] so a far-off token cannot overflow. */
export function klK3(logp: Tensor, refLogp: Tensor): Tensor {
  const r = E.minimum(E.maximum(refLogp.sub(logp), -20), 20);
  return r.exp().sub(r).sub(1);
}

/** Entropy of softmax(logits) along the last axis: -sum p log p. */
export function entropyFromLogits(logits: Tensor): Tensor {
  const lp = E.logSoftmax(logits);
  return lp.exp().mul(lp).sum(-1).neg();
}

/**
 * A policy loss: the token-level clipped surrogate below, or a variant (GSPO's sequence-level ratio in baselines.ts).
 */
export type PolicyLossFn = (inp: PolicyLossInputs, opts: PolicyLossOptions) => { loss: Tensor; stats: PolicyLossStats };

/** Checks that every (B, T) input has logp's shape. */
export function checkLossInputs(name: string, inp: PolicyLossInputs): void {
  const { logp, oldLogp, advantages, mask } = inp;
  for (const [k, t] of Object.entries({
    oldLogp,
    advantages,
    mask,
    ...(inp.refLogp ? { refLogp: inp.refLogp } : {}),
    ...(inp.entropy ? { entropy: inp.entropy } : {}),
  })) {
    if (!E.sameShape(t.shape, logp.shape))
      throw new Error(`${name}: ${k} ${E.fmt(t.shape)} must match logp ${E.fmt(logp.shape)}`);
  }
}

/**
 * loss_token = max(-A r, -A clip(r, 1 - clipLow, 1 + clipHigh)), then for A < 0 min(that, -A c);
 * plus klCoef * k3 KL minus entropyCoef * entropy; aggregated over policy tokens.
 */
export function policyLoss(
  inp: PolicyLossInputs,
  opts: PolicyLossOptions = defaultLossOptions,
): { loss: Tensor; stats: PolicyLossStats } {
  checkLossInputs('policyLoss', inp);
  const { logp, oldLogp, advantages: A, mask } = inp;
  const ratio = logp.sub(oldLogp).exp();
  const pg1 = A.neg().mul(ratio);
  const pg2 = A.neg().mul(E.minimum(E.maximum(ratio, 1 - opts.clipLow), 1 + opts.clipHigh));
  const clipped = E.maximum(pg1, pg2);
  const pg = E.where(E.lt(A, 0), E.minimum(clipped, A.neg().mul(opts.dualClip)), clipped);
  return withPenalties(aggregate(pg, mask, opts.aggregation), pg, E.ne(pg, pg1), inp, opts);
}

/**
 * The part of the loss every surrogate shares: pgLoss (already aggregated) plus the aggregate over policy
 * tokens of klCoef * k3 KL - entropyCoef * entropy; and the statistics, from the per-token surrogate pg and
 * the per-token flag `clipped` (1 where the surrogate's gradient was cut).
 */
export function withPenalties(
  pgLoss: Tensor,
  pg: Tensor,
  clipped: Tensor,
  inp: PolicyLossInputs,
  opts: PolicyLossOptions,
): { loss: Tensor; stats: PolicyLossStats } {
  const { logp, mask } = inp;
  let penalty: Tensor | null = null;
  let kl: Tensor | null = null;
  if (opts.klCoef > 0) {
    if (!inp.refLogp) throw new Error('policyLoss: klCoef > 0 needs refLogp');
    kl = klK3(logp, inp.refLogp);
    penalty = kl.mul(opts.klCoef);
  }
  if (opts.entropyCoef > 0) {
    if (!inp.entropy) throw new Error('policyLoss: entropyCoef > 0 needs entropy');
    const bonus = inp.entropy.mul(opts.entropyCoef);
    penalty = penalty ? penalty.sub(bonus) : bonus.neg();
  }
  const loss = penalty ? pgLoss.add(aggregate(penalty, mask, opts.aggregation)) : pgLoss;
  const stats = E.noGrad(() => {
    const n = E.maximum(mask.sum(), 1);
    const tokenMean = (x: Tensor) => x.mul(mask).sum().div(n);
    return {
      clipFrac: tokenMean(clipped),
      kl: kl ? tokenMean(kl) : E.zeros([], { device: logp.device, dtype: logp.dtype }),
      entropy: inp.entropy ? tokenMean(inp.entropy) : E.zeros([], { device: logp.device, dtype: logp.dtype }),
      pgLoss: tokenMean(pg),
    };
  });
  return { loss, stats };
}
