// One policy update from finished rollouts: pack each rollout's tokens (prompt, policy turns, tool
// responses) into a batch whose mask keeps only policy tokens, run the policy and the frozen reference
// over it, and take PPO-style minibatch steps on the clipped surrogate loss.

import * as E from '../engine/index.js';
import type { Tensor } from '../engine/index.js';
import type { CausalLM } from '../model/lm.js';
import { entropyFromLogits, policyLoss, type PolicyLossFn, type PolicyLossOptions } from './loss.js';
import type { Rollout } from './rollout.js';

/** Host-side arrays of a packed batch, (B, L) each, L = longest sequence - 1 (inputs predict the next token). */
export interface Packed {
  B: number;
  L: number;
  ids: Int32Array;
  targets: Int32Array;
  mask: Float32Array;
  advantages: Float32Array;
  oldLogp: Float32Array;
  /** Index of the turn whose policy token a position predicts; -1 off the mask. */
  turn: Int32Array;
  /** PPO: value targets and the values before the update, at the same positions (value.ts). */
  returns?: Float32Array;
  oldValues?: Float32Array;
  policyTokens: number;
}

/**
 * Lays rollouts out as training rows. Position j predicts token j + 1; it counts in the loss only when
 * token j + 1 was sampled by the policy, and carries that token's turn advantage and log pi_old.
 * `advantages` null leaves them 0, for an estimator to fill per token (baselines.ts).
 */
export function packRollouts(
  rollouts: readonly Rollout[],
  advantages: readonly (readonly number[])[] | null,
  padId: number,
): Packed {
  const seqs = rollouts.map((r, i) => {
    const ids = [...r.prompt];
    const turn: number[] = r.prompt.map(() => -1);
    const adv: number[] = r.prompt.map(() => 0);
    const old: number[] = r.prompt.map(() => 0);
    if (advantages && advantages[i].length !== r.turns.length)
      throw new Error(`packRollouts: rollout ${i} has ${r.turns.length} turns but ${advantages[i].length} advantages`);
    r.turns.forEach((t, k) => {
      ids.push(...t.tokens, ...t.observation);
      turn.push(...t.tokens.map(() => k), ...t.observation.map(() => -1));
      adv.push(...t.tokens.map(() => advantages?.[i][k] ?? 0), ...t.observation.map(() => 0));
      old.push(...t.logprobs, ...t.observation.map(() => 0));
    });
    return { ids, turn, adv, old };
  });
  const B = rollouts.length;
  const L = Math.max(1, ...seqs.map((s) => s.ids.length - 1));
  const p: Packed = {
    B,
    L,
    ids: new Int32Array(B * L).fill(padId),
    targets: new Int32Array(B * L).fill(-1),
    mask: new Float32Array(B * L),
    advantages: new Float32Array(B * L),
    oldLogp: new Float32Array(B * L),
    turn: new Int32Array(B * L).fill(-1),
    policyTokens: 0,
  };
  seqs.forEach((s, b) => {
    for (let j = 0; j + 1 < s.ids.length; j++) {
      const i = b * L + j;
      p.ids[i] = s.ids[j];
      p.targets[i] = s.ids[j + 1];
      if (s.turn[j + 1] >= 0) {
        p.mask[i] = 1;
        p.turn[i] = s.turn[j + 1];
        p.advantages[i] = s.adv[j + 1];
        p.oldLogp[i] = s.old[j + 1];
        p.policyTokens++;
      }
    }
  });
  return p;
}

/** Per row of a packed batch: positions up to its last target (the rest is padding). */
export function rowLengths(p: Packed): number[] {
  return Array.from({ length: p.B }, (_, b) => {
    let n = p.L;
    while (n > 0 && p.targets[b * p.L + n - 1] === -1) n--;
    return n;
  });
}

/** Some rows of a packed batch as a batch of their own, cut to the longest of them: less padding to run. */
export function selectRows(p: Packed, rows: readonly number[], lens: readonly number[] = rowLengths(p)): Packed {
  const L = Math.max(1, ...rows.map((b) => lens[b]));
  // Every row is at least as long as L in the source, so a row's first L positions are all it needs.
  const take = <A extends Int32Array | Float32Array>(a: A): A => {
    const out = (a instanceof Int32Array ? new Int32Array(rows.length * L) : new Float32Array(rows.length * L)) as A;
    rows.forEach((b, i) => out.set(a.subarray(b * p.L, b * p.L + L), i * L));
    return out;
  };
  return {
    B: rows.length,
    L,
    ids: take(p.ids),
    targets: take(p.targets),
    mask: take(p.mask),
    advantages: take(p.advantages),
    oldLogp: take(p.oldLogp),
    turn: take(p.turn),
    ...(p.returns ? { returns: take(p.returns) } : {}),
    ...(p.oldValues ? { oldValues: take(p.oldValues) } : {}),
    policyTokens: rows.reduce((n, b) => n + p.mask.subarray(b * p.L, (b + 1) * p.L).reduce((a, m) => a + m, 0), 0),
  };
}

/** Rows [from, to) of one (B * L) array of a packed batch as a (to - from, L) tensor. */
export function rowsOf(p: Packed, a: Int32Array | Float32Array, from: number, to: number, device: E.Device): Tensor {
  return E.tensor(a.subarray(from * p.L, to * p.L), [to - from, p.L], { device });
}

/** Rows [from, to) of a packed batch as tensors. */
function rows(p: Packed, from: number, to: number, device: E.Device) {
  return {
    ids: rowsOf(p, p.ids, from, to, device),
    targets: rowsOf(p, p.targets, from, to, device),
    mask: rowsOf(p, p.mask, from, to, device),
    advantages: rowsOf(p, p.advantages, from, to, device),
    oldLogp: rowsOf(p, p.oldLogp, from, to, device),
  };
}

/**
 * One no-grad pass of a model over a packed batch, `chunk` rows at a time: f maps each chunk's forward
 * (logits, and the final hidden states when `hidden`) to a (rows, L) tensor; the results come back as one
 * (B * L) array. Used for log pi_ref (REINFORCE++'s KL reward) and V_old (PPO) before an update.
 */
export async function scorePacked(
  model: CausalLM,
  packed: Packed,
  f: (out: { logits: Tensor; hidden?: Tensor }, targets: Tensor) => Tensor,
  opts: { chunk: number; hidden?: boolean },
): Promise<Float32Array> {
  const out = new Float32Array(packed.B * packed.L);
  const chunk = Math.max(1, opts.chunk);
  for (let from = 0; from < packed.B; from += chunk) {
    const to = Math.min(packed.B, from + chunk);
    const y = E.noGrad(() =>
      E.tidy(() =>
        f(
          model.forward(rowsOf(packed, packed.ids, from, to, model.device), { returnHidden: opts.hidden }),
          rowsOf(packed, packed.targets, from, to, model.device),
        ),
      ),
    );
    out.set(await y.data(), from * packed.L);
    y.dispose();
  }
  return out;
}

/**
 * The policy's logits at a sampling temperature: logits / temperature. The policy that RL trains is the
 * one the rollouts were sampled from, so its log-probs, the reference's and the entropy all see the same
 * temperature (as verl does); 1 leaves the logits as they are.
 */
export function tempered(logits: Tensor, temperature = 1): Tensor {
  if (!(temperature > 0)) throw new Error(`tempered: the temperature must be positive, got ${temperature}`);
  return temperature === 1 ? logits : logits.mul(1 / temperature);
}

/** log pi(target) of a model at every position of a packed batch (0 where there is no target), at `temperature`. */
export function tokenLogProbs(model: CausalLM, packed: Packed, chunk: number, temperature = 1): Promise<Float32Array> {
  return scorePacked(model, packed, (o, targets) => E.targetLogProb(tempered(o.logits, temperature), targets), {
    chunk,
  });
}

/**
 * A second loss on the policy's forward with parameters of its own: PPO's value head (value.ts). Its
 * gradient reaches the shared decoder scaled by `coef`; its own parameters step with their own optimizer
 * (AdamW, so their step size is that optimizer's learning rate whatever `coef` is).
 */
export interface CriticHook {
  params: readonly Tensor[];
  opt: E.Optimizer;
  coef: number;
  /** Global gradient-norm clip of the critic's own parameters. */
  maxGradNorm: number;
  /** The loss on rows [from, to) of the packed batch, from the policy's final hidden states (to - from, L, C). */
  loss(hidden: Tensor, packed: Packed, from: number, to: number): Tensor;
}

/**
 * Minibatches of whole groups, in verl's order: the step's groups (consecutive runs of `groupSize` rows;
 * the last may be shorter) shuffled by `gen`, then cut into `n` minibatches of as equal a number of
 * groups as possible (fewer when there are fewer groups). Every row is in exactly one minibatch; each
 * minibatch lists its groups' rows in order.
 */
export function groupMinibatches(B: number, groupSize: number, n: number, gen: E.Generator): number[][] {
  for (const [k, v] of Object.entries({ B, groupSize, n }))
    if (!Number.isInteger(v) || v < 1) throw new Error(`groupMinibatches: ${k} must be a positive integer, got ${v}`);
  const groups = gen.shuffle(Array.from({ length: Math.ceil(B / groupSize) }, (_, g) => g));
  const m = Math.min(n, groups.length);
  return Array.from({ length: m }, (_, k) => {
    const mine = groups.slice(Math.floor((k * groups.length) / m), Math.floor(((k + 1) * groups.length) / m));
    return mine.flatMap((g) =>
      Array.from({ length: Math.min(groupSize, B - g * groupSize) }, (_, j) => g * groupSize + j),
    );
  });
}

export interface UpdateOptions {
  loss: PolicyLossOptions;
  /** The policy loss; policyLoss (token-level clipped surrogate) unless an algorithm brings its own (GSPO). */
  lossFn?: PolicyLossFn;
  /** PPO's value head, trained on the same forward. */
  critic?: CriticHook;
  /**
   * The rows of each minibatch, one optimizer step each (PPO's ppo_mini_batch_size), so later ones see
   * ratio != 1; every row exactly once (groupMinibatches gives whole groups).
   */
  minibatches: readonly (readonly number[])[];
  /** Global gradient-norm clip of the policy (TRL's max_grad_norm; not the ratio clip). */
  maxGradNorm: number;
  /** The rollouts' sampling temperature (see tempered); 1 when absent. */
  temperature?: number;
}

export interface UpdateStats {
  loss: number;
  /** The mean over minibatches of clipFracs. */
  clipFrac: number;
  /** Per minibatch, in order: the fraction of its policy tokens whose surrogate was clipped. */
  clipFracs: number[];
  kl: number;
  entropy: number;
  gradNorm: number;
  /** The critic's loss, when there is one. */
  valueLoss?: number;
}

/** Minibatch PPO steps over a packed batch; returns the statistics averaged over minibatches. */
export async function updatePolicy(
  model: CausalLM,
  ref: CausalLM | null,
  opt: E.Optimizer,
  packed: Packed,
  opts: UpdateOptions,
): Promise<UpdateStats> {
  const params = model.parameters();
  const lossFn = opts.lossFn ?? policyLoss;
  const critic = opts.critic;
  const uses = new Array<number>(packed.B).fill(0);
  for (const rows of opts.minibatches) for (const b of rows) uses[b]++;
  const bad = uses.findIndex((u) => u !== 1);
  if (opts.minibatches.some((rows) => rows.some((b) => !(b >= 0 && b < packed.B))) || bad >= 0) {
    throw new Error(
      `updatePolicy: the minibatches must hold each of the ${packed.B} rows exactly ` +
        `once${bad >= 0 ? ` (row ${bad} is in ${uses[bad]})` : ' (a row index is out of range)'}`,
    );
  }
  const sums = { loss: 0, clipFrac: 0, kl: 0, entropy: 0, gradNorm: 0, valueLoss: 0 };
  const clipFracs: number[] = [];
  let n = 0;
  // Each minibatch is cut to its longest row: shorter groups skip the padding (and the attention over
  // it) that the longest episode of the whole step would give them.
  const lens = rowLengths(packed);
  for (const rowsOfMinibatch of opts.minibatches) {
    const part = selectRows(packed, rowsOfMinibatch, lens);
    const [from, to] = [0, part.B];
    const out = E.tidy(() => {
      const r = rows(part, from, to, model.device);
      opt.zeroGrad();
      critic?.opt.zeroGrad();
      const out = model.forward(r.ids, { returnHidden: !!critic }); // (b, L, V), (b, L, C)
      const hidden = out.hidden;
      const logits = tempered(out.logits, opts.temperature);
      const logp = E.targetLogProb(logits, r.targets);
      const refLogp =
        ref && opts.loss.klCoef > 0
          ? E.noGrad(() => E.targetLogProb(tempered(ref.forward(r.ids).logits, opts.temperature), r.targets))
          : undefined;
      const entropy = opts.loss.entropyCoef > 0 ? entropyFromLogits(logits) : undefined;
      const { loss, stats } = lossFn(
        { logp, oldLogp: r.oldLogp, advantages: r.advantages, mask: r.mask, refLogp, entropy },
        opts.loss,
      );
      const valueLoss = critic ? critic.loss(hidden!, part, from, to) : null;
      (valueLoss ? loss.add(valueLoss.mul(critic!.coef)) : loss).backward();
      const gradNorm = E.clipGradNorm(params, opts.maxGradNorm);
      opt.step();
      opt.zeroGrad();
      if (critic) {
        E.clipGradNorm(critic.params, critic.maxGradNorm).dispose();
        critic.opt.step();
        critic.opt.zeroGrad();
      }
      return [loss, stats.clipFrac, stats.kl, stats.entropy, gradNorm, ...(valueLoss ? [valueLoss] : [])] as Tensor[];
    });
    const vals = await Promise.all(out.map((t) => t.item()));
    E.dispose(out);
    sums.loss += vals[0];
    sums.clipFrac += vals[1];
    clipFracs.push(vals[1]);
    sums.kl += vals[2];
    sums.entropy += vals[3];
    sums.gradNorm += vals[4];
    sums.valueLoss += vals[5] ?? 0;
    n++;
  }
  return {
    loss: sums.loss / n,
    clipFrac: sums.clipFrac / n,
    clipFracs,
    kl: sums.kl / n,
    entropy: sums.entropy / n,
    gradNorm: sums.gradNorm / n,
    ...(critic ? { valueLoss: sums.valueLoss / n } : {}),
  };
}

/** A frozen copy of a model: its own storage (AdamW updates the policy in place), no gradients. */
export function frozenCopy(model: CausalLM): CausalLM {
  return model.clone({ frozen: true });
}
