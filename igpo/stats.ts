// The statistics of the study over paired seeds: a mean with its 95% confidence interval (Student's t
// over seeds, n - 1 degrees of freedom), and the paired difference of two algorithms with its own.
// Pure functions over arrays; the t quantile is stdlib's.

import tQuantile from '@stdlib/stats-base-dists-t-quantile';

export interface Interval {
  /** Seeds (or pairs) the estimate is over. */
  n: number;
  mean: number;
  /** The sample standard deviation (n - 1 in the denominator); null for one value. */
  sd: number | null;
  /** The 95% interval mean +- t_{0.975, n-1} sd / sqrt(n); null for one value. */
  lo: number | null;
  hi: number | null;
}

/** Mean and 95% Student-t interval over independent values (one per seed). */
export function tInterval(xs: readonly number[], level = 0.95): Interval {
  const n = xs.length;
  if (n === 0) throw new Error('tInterval: no values');
  if (xs.some((x) => !Number.isFinite(x))) throw new Error(`tInterval: values must be finite, got [${xs.join(', ')}]`);
  const mean = xs.reduce((s, x) => s + x, 0) / n;
  if (n === 1) return { n, mean, sd: null, lo: null, hi: null };
  const sd = Math.sqrt(xs.reduce((s, x) => s + (x - mean) ** 2, 0) / (n - 1));
  const half = tQuantile(1 - (1 - level) / 2, n - 1) * (sd / Math.sqrt(n));
  return { n, mean, sd, lo: mean - half, hi: mean + half };
}

/**
 * The paired difference a - b over seeds present in both (every algorithm of a seed starts from the same
 * warm start and sees the same questions): the interval of the per-seed differences.
 */
export function pairedDifference(
  a: ReadonlyMap<number, number>,
  b: ReadonlyMap<number, number>,
  level = 0.95,
): Interval & { seeds: number[] } {
  const seeds = [...a.keys()].filter((s) => b.has(s)).sort((x, y) => x - y);
  if (seeds.length === 0) throw new Error('pairedDifference: no seed in common');
  return {
    ...tInterval(
      seeds.map((s) => a.get(s)! - b.get(s)!),
      level,
    ),
    seeds,
  };
}

/** Whether an interval contains 0 (or cannot say: a single value). */
export function includesZero(i: Interval): boolean {
  return i.lo === null || i.hi === null || (i.lo <= 0 && i.hi >= 0);
}

/** "0.438 [0.355, 0.521]", or "0.438 (1 seed)". */
export function fmtInterval(i: Interval, digits = 3): string {
  return i.lo === null || i.hi === null
    ? `${i.mean.toFixed(digits)} (1 seed)`
    : `${i.mean.toFixed(digits)} [${i.lo.toFixed(digits)}, ${i.hi.toFixed(digits)}]`;
}
