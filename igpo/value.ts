// PPO's critic for the baselines comparison: a value head on the decoder's final hidden states, GAE over
// policy tokens only, and the clipped value loss. Not the policy loss (loss.ts) and not the training loop:
// the critic plugs into updatePolicy through its CriticHook and into the trainer as an estimator.

import * as E from '../engine/index.js';
import type { Tensor } from '../engine/index.js';
import type { CausalLM } from '../model/lm.js';
import type { AdvantageEstimator, StepBatch, StepAdvantages } from './estimator.js';
import { rowsOf, scorePacked, type CriticHook, type Packed } from './update.js';

export interface ValueOptions {
  /** Discount and GAE lambda over policy tokens; verl's and Search-R1's PPO use 1 and 1. */
  gamma: number;
  lambda: number;
  /** Value clipping: V_old + clip(V - V_old, -clipRange, clipRange) (verl's cliprange_value). */
  clipRange: number;
  /** Weight of the value loss where it reaches the shared decoder (TRL's vf_coef). */
  coef: number;
  /** The head's learning rate as a multiple of the policy's (verl: critic 1e-5 vs actor 1e-6). */
  lrScale: number;
  /** Whiten the advantages over the batch's policy tokens (verl's GAE does). */
  whiten: boolean;
  eps: number;
}

export const defaultValueOptions: ValueOptions = {
  gamma: 1,
  lambda: 1,
  clipRange: 0.5,
  coef: 0.1,
  lrScale: 10,
  whiten: true,
  eps: 1e-6,
};

/**
 * Generalised advantage estimation (Schulman et al. 2016) over one sequence of steps, the last terminal:
 * delta_t = r_t + gamma V_{t+1} - V_t (V_T = 0), A_t = delta_t + gamma lambda A_{t+1}, returns R_t = A_t + V_t.
 * With lambda = 1 and V = 0, A_t is the discounted return sum_{k >= t} gamma^(k - t) r_k.
 * Deviation: none from the paper's estimator; the episode always ends at its last step (no truncation bootstrap).
 */
export function gae(
  rewards: readonly number[],
  values: readonly number[],
  gamma: number,
  lambda: number,
): { advantages: number[]; returns: number[] } {
  if (rewards.length !== values.length) throw new Error(`gae: ${rewards.length} rewards but ${values.length} values`);
  const T = rewards.length;
  const advantages = new Array<number>(T);
  let next = 0;
  let acc = 0;
  for (let t = T - 1; t >= 0; t--) {
    const delta = rewards[t] + gamma * next - values[t];
    advantages[t] = acc = delta + gamma * lambda * acc;
    next = values[t];
  }
  return { advantages, returns: advantages.map((a, t) => a + values[t]) };
}

/** Positions of each row's policy tokens in a packed batch, in order. */
export function policyPositions(packed: Packed): number[][] {
  return Array.from({ length: packed.B }, (_, b) => {
    const out: number[] = [];
    for (let j = 0; j < packed.L; j++) if (packed.mask[b * packed.L + j] === 1) out.push(b * packed.L + j);
    return out;
  });
}

/**
 * Batch whitening: (x - mean) / (std + eps) over the masked positions of a (B * L) array; 0 elsewhere; an
 * all-equal batch gives zeros. Deviation from verl's masked_whiten (and REINFORCE++'s code): population std.
 */
export function batchNormalize(x: ArrayLike<number>, mask: ArrayLike<number>, eps: number): Float32Array {
  let n = 0;
  let sum = 0;
  for (let i = 0; i < x.length; i++) {
    if (mask[i] !== 1) continue;
    n++;
    sum += x[i];
  }
  const out = new Float32Array(x.length);
  if (n === 0) return out;
  const mean = sum / n;
  let ss = 0;
  for (let i = 0; i < x.length; i++) if (mask[i] === 1) ss += (x[i] - mean) ** 2;
  const std = Math.sqrt(ss / n);
  if (std <= 1e-12 * Math.max(1, Math.abs(mean))) return out;
  for (let i = 0; i < x.length; i++) if (mask[i] === 1) out[i] = (x[i] - mean) / (std + eps);
  return out;
}

/**
 * GAE over each row's policy tokens with the outcome reward on its last policy token. Tool-response tokens
 * are skipped, not stepped through: the value at the next turn's first policy token (which has read the
 * response) bootstraps the last token of the turn before. values: V_old at every packed position.
 * Deviation from PPO as in verl: the per-token KL is not folded into the reward (the KL stays a loss term,
 * as for every algorithm here); whitening uses the population std.
 */
export function packedGae(
  packed: Packed,
  values: ArrayLike<number>,
  outcomes: readonly number[],
  opts: Pick<ValueOptions, 'gamma' | 'lambda' | 'whiten' | 'eps'>,
): StepAdvantages {
  if (outcomes.length !== packed.B) throw new Error(`packedGae: ${outcomes.length} outcomes for ${packed.B} rows`);
  const adv = new Float64Array(packed.B * packed.L);
  const returns = new Float32Array(packed.B * packed.L);
  policyPositions(packed).forEach((pos, b) => {
    if (pos.length === 0) return;
    const r = pos.map((_, k) => (k === pos.length - 1 ? outcomes[b] : 0));
    const g = gae(
      r,
      pos.map((i) => values[i]),
      opts.gamma,
      opts.lambda,
    );
    pos.forEach((i, k) => {
      adv[i] = g.advantages[k];
      returns[i] = g.returns[k];
    });
  });
  return { advantages: opts.whiten ? batchNormalize(adv, packed.mask, opts.eps) : Float32Array.from(adv), returns };
}

/**
 * The clipped value loss of PPO2 (as in baselines/verl): 0.5 max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2),
 * averaged over policy tokens. values, oldValues, returns, mask: (B, T).
 * Deviation: none.
 */
export function valueLoss(values: Tensor, oldValues: Tensor, returns: Tensor, mask: Tensor, clipRange: number): Tensor {
  const clipped = oldValues.add(E.minimum(E.maximum(values.sub(oldValues), -clipRange), clipRange));
  const l = E.maximum(values.sub(returns).square(), clipped.sub(returns).square()).mul(0.5);
  return l.mul(mask).sum().div(E.maximum(mask.sum(), 1));
}

/** A scalar per position from the final hidden state: V(h) = h w + b. */
export class ValueHead {
  readonly w: Tensor; // (C, 1)
  readonly b: Tensor; // (1)

  constructor(nEmbd: number, opts: { generator?: E.Generator; device?: E.Device; dtype?: 'float32' | 'float64' } = {}) {
    const common = { device: opts.device, dtype: opts.dtype ?? 'float32', requiresGrad: true } as const;
    this.w = E.randn([nEmbd, 1], { ...common, generator: opts.generator ?? new E.Generator(0), std: 0.02 });
    this.b = E.zeros([1], common);
  }

  parameters(): Tensor[] {
    return [this.w, this.b];
  }

  /** hidden (B, T, C) -> values (B, T). */
  forward(hidden: Tensor): Tensor {
    const [B, T] = hidden.shape;
    return hidden.matmul(this.w).add(this.b).reshape([B, T]);
  }

  dispose(): void {
    E.dispose(this.parameters());
  }
}

/**
 * PPO's critic: a ValueHead on the policy's decoder with its own AdamW (learning rate lrScale x the policy's).
 * The value loss backpropagates into the shared decoder scaled by `coef` (a shared-trunk actor-critic as in
 * TRL's value-head models; verl's critic is a separate copy of the model instead: twice the compute).
 */
export class Critic implements CriticHook {
  readonly head: ValueHead;
  readonly opt: E.AdamW;
  readonly coef: number;
  readonly maxGradNorm = 1;

  constructor(
    model: CausalLM,
    policyLr: number,
    readonly opts: ValueOptions,
    seed: number,
  ) {
    this.head = new ValueHead(model.hiddenSize, {
      generator: new E.Generator(seed),
      device: model.device,
      dtype: model.dtype,
    });
    this.opt = new E.AdamW(this.head.parameters(), {
      lr: policyLr * opts.lrScale,
      weightDecay: 0,
      betas: [0.9, 0.999],
    });
    this.coef = opts.coef;
  }

  get params(): Tensor[] {
    return this.head.parameters();
  }

  /** V_old at every position of a packed batch: one no-grad pass before the update. */
  values(model: CausalLM, packed: Packed, chunk: number): Promise<Float32Array> {
    return scorePacked(model, packed, (o) => this.head.forward(o.hidden!), { chunk, hidden: true });
  }

  loss(hidden: Tensor, packed: Packed, from: number, to: number): Tensor {
    if (!packed.returns || !packed.oldValues)
      throw new Error('Critic.loss: the packed batch has no returns / old values (did the PPO estimator run?)');
    const d = hidden.device;
    return valueLoss(
      this.head.forward(hidden),
      rowsOf(packed, packed.oldValues, from, to, d),
      rowsOf(packed, packed.returns, from, to, d),
      rowsOf(packed, packed.mask, from, to, d),
      this.opts.clipRange,
    );
  }

  /** The head's weights and its optimizer's state, to resume a run (loadState). */
  async saveState(): Promise<{
    w: Float32Array | Float64Array;
    b: Float32Array | Float64Array;
    optimizer: E.AdamWState;
  }> {
    return {
      w: (await this.head.w.data()) as Float32Array,
      b: (await this.head.b.data()) as Float32Array,
      optimizer: await this.opt.saveState(),
    };
  }

  loadState(state: { w: ArrayLike<number>; b: ArrayLike<number>; optimizer: E.AdamWState }): void {
    for (const [p, values] of [
      [this.head.w, state.w],
      [this.head.b, state.b],
    ] as const) {
      if (values.length !== p.size)
        throw new Error(`Critic.loadState: ${values.length} values for a head parameter of ${p.size}`);
      const t = E.tensor(p.dtype === 'float64' ? Float64Array.from(values) : Float32Array.from(values), p.shape, {
        device: p.device,
      });
      p.assign(t);
      t.dispose();
    }
    this.opt.loadState(state.optimizer);
  }

  dispose(): void {
    this.opt.dispose();
    this.head.dispose();
  }
}

/**
 * PPO (Schulman et al. 2017) as an advantage estimator: GAE over policy tokens with the critic's V_old and
 * the outcome reward (F1) on each rollout's last policy token; returns are the critic's targets.
 * Deviations: see packedGae and Critic; the policy loss is the shared clipped surrogate of loss.ts (with its
 * dual clip, k3 KL loss term and entropy bonus, as for every algorithm in the comparison).
 */
export function ppoEstimator(opts: ValueOptions): AdvantageEstimator {
  return {
    needsValues: true,
    estimate(batch: StepBatch): StepAdvantages {
      if (!batch.values) throw new Error('ppo: the estimator needs the critic values of the batch');
      return packedGae(batch.packed, batch.values, batch.outcomes.flat(), opts);
    },
  };
}
