// Turn-level advantages for a group of rollouts of one question: group normalisation of the turn
// rewards, then a discounted sum over later turns. Pure functions over ragged arrays; no tensors.

export interface TurnAdvantageOptions {
  /** Discount over turns; the paper uses 1. */
  gamma?: number;
  /**
   * 'joint' (the paper): all turn rewards of the group are normalised together.
   * 'separate' (the authors' code): the final-turn F1s among themselves, the IGs among themselves.
   */
  norm?: 'joint' | 'separate';
  /** Added to the population std. */
  eps?: number;
}

/** (x - mean) / (std + eps) over a flat list, population std; an all-equal list gives zeros. */
function zscore(xs: readonly number[], eps: number): number[] {
  if (xs.length === 0) return [];
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const std = Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length);
  // Equal values must give exactly 0 even with eps = 0 (no 0/0), and rounding must not make noise of them.
  if (std <= 1e-12 * Math.max(1, Math.abs(mean))) return xs.map(() => 0);
  return xs.map((x) => (x - mean) / (std + eps));
}

/**
 * The group normalisation of turn rewards. rewards[i][t]: rollout i's reward for turn t (IG for every
 * turn but the last, F1 for the last); rollouts may have different turn counts. Returns the same ragged
 * shape, A[i][t]: 'joint' z-scores every reward of the group together, 'separate' the last turns'
 * among themselves and the others among themselves.
 * Deviation: none from the paper's Eq. for normalisation; 'separate' follows the authors' code.
 */
export function normalizeGroupRewards(
  rewards: readonly (readonly number[])[],
  opts: Pick<TurnAdvantageOptions, 'norm' | 'eps'> = {},
): number[][] {
  const { norm = 'joint', eps = 1e-6 } = opts;
  rewards.forEach((r, i) => {
    if (r.length === 0) throw new Error(`normalizeGroupRewards: rollout ${i} has no turns`);
    r.forEach((x, t) => {
      if (!Number.isFinite(x)) throw new Error(`normalizeGroupRewards: rewards[${i}][${t}] = ${x} is not finite`);
    });
  });
  let at = 0;
  if (norm === 'joint') {
    const flat = zscore(rewards.flat(), eps);
    return rewards.map((r) => flat.slice(at, (at += r.length)));
  }
  const finals = zscore(
    rewards.map((r) => r[r.length - 1]),
    eps,
  );
  const gains = zscore(
    rewards.flatMap((r) => r.slice(0, -1)),
    eps,
  );
  return rewards.map((r, i) => [...gains.slice(at, (at += r.length - 1)), finals[i]]);
}

/** A~[i][t] = sum_{k >= t} gamma^(k - t) * A[i][k], per rollout. Deviation: none from the paper's Eq. */
export function discountedSums(a: readonly (readonly number[])[], gamma: number): number[][] {
  return a.map((row) => {
    const out = new Array<number>(row.length);
    let acc = 0;
    for (let t = row.length - 1; t >= 0; t--) out[t] = acc = row[t] + gamma * acc;
    return out;
  });
}

/** IGPO's turn advantages: normalise within the group (normalizeGroupRewards), then discount (discountedSums). */
export function groupTurnAdvantages(
  rewards: readonly (readonly number[])[],
  opts: TurnAdvantageOptions = {},
): number[][] {
  return discountedSums(normalizeGroupRewards(rewards, opts), opts.gamma ?? 1);
}

/** Outcome-only group advantage (GRPO): each rollout's single reward, z-scored in the group. */
export function groupOutcomeAdvantages(rewards: readonly number[], eps = 1e-6): number[] {
  return zscore(rewards, eps);
}
