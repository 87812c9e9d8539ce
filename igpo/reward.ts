// IGPO's rewards as pure functions: turn-level information gain from the ground-truth answer's
// probability after each turn, the probes that measure that probability, and the outcome reward
// (SQuAD-style word F1). No model code here: the log-probs come from the rollout's decoder.

/**
 * Information gain per turn: IG_t = p_t - p_{t-1} for t = 1..T-1, where probs[t] is the policy's
 * probability of the ground-truth answer after turn t (probs[0]: given the question only), as a probe
 * scores it (probeProbability). With `logSpace`, IG_t = log p_t - log p_{t-1} (the authors'
 * `log_prob_diff` option), p clamped at 1e-30 so that an underflowed p gives a finite gain.
 * Deviation: none from the paper (its Eq. for r_t); turn 0 has no reward, so the result has T-1 entries.
 */
export function informationGains(probs: readonly number[], opts: { logSpace?: boolean } = {}): number[] {
  for (const [t, p] of probs.entries()) {
    if (!(p >= 0 && p <= 1)) throw new Error(`informationGains: probs[${t}] = ${p} is not a probability`);
  }
  const f = opts.logSpace ? (p: number) => Math.log(Math.max(p, 1e-30)) : (p: number) => p;
  return probs.slice(1).map((p, i) => f(p) - f(probs[i]));
}

/**
 * p_t from the teacher-forced log-probs of the answer tokens: exp of their mean (a length-normalised
 * geometric mean, as the paper defines it). An empty answer has probability 1 by this definition; we
 * refuse it instead.
 */
export function answerProbability(tokenLogprobs: readonly number[]): number {
  if (tokenLogprobs.length === 0) throw new Error('answerProbability: the answer has no tokens');
  return Math.exp(tokenLogprobs.reduce((s, x) => s + x, 0) / tokenLogprobs.length);
}

/**
 * How p_t is measured: after the context, teacher-force `prefix` (not scored), then `scored` with
 * `{gold}` replaced by the ground truth; p_t is the exp of the mean log-prob over the scored tokens only.
 */
export interface Probe {
  /** The probe's name in metrics and reports. */
  name: string;
  prefix: string;
  /** Contains `{gold}` exactly once. */
  scored: string;
}

/**
 * The policy's own opening of an answer turn (every turn it writes starts with `<think>`), then the gold
 * answer alone: the paper's p_t, over the answer's tokens. The authors' code teacher-forces a fixed
 * pseudo-reply of the same shape ("... </think> <answer> gt </answer>").
 */
export const THINK_PROBE: Probe = {
  name: 'think',
  prefix: '<think>I know the answer.</think><answer>',
  scored: '{gold}',
};

/**
 * The probe this project used first: `<answer>gold</answer>` straight after the context, every token
 * scored. After `</info>` the policy writes `<think>`, never `<answer>`, so the tags' log-probs dominate
 * the mean and p_t measures them, not the answer. Kept by name so that its effect can be measured.
 */
export const BARE_PROBE: Probe = { name: 'bare', prefix: '', scored: '<answer>{gold}</answer>' };

export const PROBES: Readonly<Record<'think' | 'bare', Probe>> = { think: THINK_PROBE, bare: BARE_PROBE };

/**
 * A named probe with the options the command line exposes: another opening text (`prefix`), and
 * `close` to score the closing `</answer>` too.
 */
export function resolveProbe(name: string, opts: { prefix?: string; close?: boolean } = {}): Probe {
  const base = (PROBES as Record<string, Probe>)[name];
  if (!base) throw new Error(`probe: unknown probe '${name}' (known: ${Object.keys(PROBES).join(', ')})`);
  if (opts.close && base.scored.endsWith('</answer>')) throw new Error(`probe: '${name}' already scores </answer>`);
  const prefix = opts.prefix ?? base.prefix;
  const scored = opts.close ? `${base.scored}</answer>` : base.scored;
  const parts = [opts.prefix !== undefined ? 'prefix' : '', opts.close ? 'close' : ''].filter(Boolean);
  return { name: parts.length ? `${name}+${parts.join('+')}` : name, prefix, scored };
}

/** The token ids a probe teacher-forces for a gold answer: the unscored prefix and the scored answer. */
export function probeTokens(
  probe: Probe,
  gold: string | readonly string[],
  encode: (text: string) => number[],
): { prefix: number[]; answer: number[] } {
  const g = typeof gold === 'string' ? gold : gold[0];
  if (probe.scored.split('{gold}').length !== 2)
    throw new Error(`probe '${probe.name}': scored text must contain {gold} once, got ${JSON.stringify(probe.scored)}`);
  const answer = encode(probe.scored.replace('{gold}', g));
  if (answer.length === 0) throw new Error(`probe '${probe.name}': the gold answer ${JSON.stringify(g)} has no tokens`);
  return { prefix: encode(probe.prefix), answer };
}

/**
 * p_t of a probe from the log-probs of its teacher-forced tokens (prefix then answer, in order): the
 * answer's probability by answerProbability, the prefix's tokens left out of the mean.
 */
export function probeProbability(
  tokenLogprobs: readonly number[],
  tokens: { prefix: readonly number[]; answer: readonly number[] },
): number {
  const n = tokens.prefix.length + tokens.answer.length;
  if (tokenLogprobs.length !== n)
    throw new Error(`probeProbability: ${tokenLogprobs.length} log-probs for a probe of ${n} tokens`);
  return answerProbability(tokenLogprobs.slice(tokens.prefix.length));
}

const ARTICLES = new Set(['a', 'an', 'the']);

/** SQuAD's answer normalisation: lowercase, drop punctuation, drop articles, collapse whitespace. */
export function normalizeAnswer(s: string): string {
  return s
    .toLowerCase()
    .replace(/[!"#$%&'()*+,\-./:;<=>?@[\\\]^_`{|}~]/g, '')
    .split(/\s+/)
    .filter((w) => w.length > 0 && !ARTICLES.has(w))
    .join(' ');
}

function f1Single(prediction: string, gold: string): number {
  const p = normalizeAnswer(prediction).split(' ').filter(Boolean);
  const g = normalizeAnswer(gold).split(' ').filter(Boolean);
  if (p.length === 0 || g.length === 0) return p.length === g.length ? 1 : 0;
  const counts = new Map<string, number>();
  for (const w of g) counts.set(w, (counts.get(w) ?? 0) + 1);
  let common = 0;
  for (const w of p) {
    const c = counts.get(w) ?? 0;
    if (c > 0) {
      common++;
      counts.set(w, c - 1);
    }
  }
  if (common === 0) return 0;
  const precision = common / p.length;
  const recall = common / g.length;
  return (2 * precision * recall) / (precision + recall);
}

/** Word-level F1 of a prediction against a gold answer or its aliases (the maximum), as in SQuAD's script. */
export function f1Score(prediction: string, gold: string | readonly string[]): number {
  const golds = typeof gold === 'string' ? [gold] : gold;
  if (golds.length === 0) throw new Error('f1Score: no gold answer given');
  return Math.max(...golds.map((g) => f1Single(prediction, g)));
}
