// The scripted expert that writes demonstrations for the supervised warm-up: one search per hop, each
// query built from the entity it read in the previous info block, then the answer. Optionally flawed.
// Not a policy that is trained, and not the episode loop (env.ts runs its turns like any agent's).

import type { Generator } from '../engine/random.js';
import type { Searcher } from './retriever.js';
import { HOPS, parseFact, type HopName, type Question } from './world.js';

/**
 * The query the expert sends for a hop from entity {x}: the name and the relation's keyword, nothing
 * else, since common words ('is', 'in') would let other facts outscore the one that names {x}.
 */
export const HOP_QUERIES: Readonly<Record<HopName, string>> = {
  birthplace: '{x} born',
  country: '{x} city',
  capital: 'capital {x}',
  employer: '{x} works',
  founder: '{x} founded',
  base: '{x} based',
};

/**
 * The deliberate mistakes of an imperfect demonstration:
 * - 'vague-query': one hop's query is the bare entity name (it still works when the fact ranks in the top k);
 * - 'skip-hop': one hop is not searched, and the next query uses the unresolved entity;
 * - 'early-answer': answers before the last hop is searched, with the entity it has so far.
 */
export type ExpertFlaw = 'vague-query' | 'skip-hop' | 'early-answer';

export interface ExpertOptions {
  /** Probability that the demonstration has one flaw; 0 by default. */
  imperfect?: number;
  /**
   * Probability that a multi-hop demonstration is hasty: it answers right after its first search, with
   * the entity that search gave (an 'early-answer' at hop 1), whatever `imperfect` drew; 0 by default.
   * Above 0.5 a model that imitates the demonstrations answers 2-hop questions after one search when it
   * decodes greedily: a deficit the F1 reward, and the information gain of a second search, can undo.
   */
  hasty?: number;
  /** Draws the flaw and its hop; needed when `imperfect` > 0. */
  gen?: Generator;
}

export interface ExpertDemo {
  turns: string[];
  answer: string;
  flaw: ExpertFlaw | null;
  /** The hop (0-based) the flaw hit. */
  flawHop: number | null;
  /** Whether every hop's fact was found in what the searches returned. */
  resolved: boolean;
}

/** Reads the entity that `hop` leads to from `from` out of retrieved fact sentences, if one says it. */
export function readHop(facts: readonly string[], hop: HopName, from: string): string | undefined {
  const h = HOPS[hop];
  for (const text of facts) {
    const f = parseFact(text);
    if (f && f.rel === h.rel && (h.inverse ? f.obj : f.subj) === from) return h.inverse ? f.subj : f.obj;
  }
  return undefined;
}

/** A guess when the hop's fact is missing: the target of the first retrieved fact of the right relation. */
function guessHop(facts: readonly string[], hop: HopName): string | undefined {
  const h = HOPS[hop];
  for (const text of facts) {
    const f = parseFact(text);
    if (f && f.rel === h.rel) return h.inverse ? f.subj : f.obj;
  }
  return undefined;
}

function chooseFlaw(nHops: number, gen: Generator): { flaw: ExpertFlaw; hop: number } {
  const flaws: ExpertFlaw[] = nHops > 1 ? ['vague-query', 'skip-hop', 'early-answer'] : ['vague-query', 'early-answer'];
  const flaw = flaws[gen.int(flaws.length)];
  // skip-hop skips an inner hop; early-answer stops before a hop (before the first only in 1-hop questions).
  if (flaw === 'skip-hop') return { flaw, hop: gen.int(nHops - 1) };
  if (flaw === 'early-answer') return { flaw, hop: nHops > 1 ? 1 + gen.int(nHops - 1) : 0 };
  return { flaw, hop: gen.int(nHops) };
}

/**
 * A demonstration for `question`: for each hop, `<think>..</think><search>..</search>` (the searcher
 * answers it as the episode will), then `<think>..</think><answer>..</answer>`. Only the question's
 * plan (its hops and the entity it names) is given; every later entity is read from search results.
 */
export function expertDemo(question: Question, retriever: Searcher, opts: ExpertOptions = {}): ExpertDemo {
  const rate = opts.imperfect ?? 0;
  const hasty = opts.hasty ?? 0;
  if ((rate > 0 || hasty > 0) && !opts.gen)
    throw new Error(`expertDemo: imperfect = ${rate}, hasty = ${hasty} needs a Generator (opts.gen)`);
  const isHasty = question.hops.length > 1 && hasty > 0 && opts.gen!.random() < hasty;
  const flawed: { flaw: ExpertFlaw; hop: number } | null = isHasty
    ? { flaw: 'early-answer', hop: 1 }
    : rate > 0 && opts.gen!.random() < rate
      ? chooseFlaw(question.hops.length, opts.gen!)
      : null;

  const turns: string[] = [];
  let cur = question.start;
  let resolved = true;
  for (const [i, hop] of question.hops.entries()) {
    if (flawed?.hop === i && flawed.flaw === 'early-answer') break;
    if (flawed?.hop === i && flawed.flaw === 'skip-hop') {
      resolved = false;
      continue;
    }
    const goal = HOPS[hop].np.replace('{x}', cur);
    const query = flawed?.hop === i && flawed.flaw === 'vague-query' ? cur : HOP_QUERIES[hop].replace('{x}', cur);
    turns.push(`<think>find ${goal}.</think><search>${query}</search>`);
    const facts = retriever.search(query);
    let next = readHop(facts, hop, cur);
    if (next === undefined) {
      resolved = false;
      next = guessHop(facts, hop) ?? cur;
    }
    cur = next;
  }
  if (flawed && flawed.flaw !== 'vague-query') resolved = false;
  turns.push(`<think>so it is ${cur}.</think><answer>${cur}</answer>`);
  return { turns, answer: cur, flaw: flawed?.flaw ?? null, flawHop: flawed?.hop ?? null, resolved };
}

/** The demonstration's turns only. */
export function expertTurns(question: Question, retriever: Searcher, opts: ExpertOptions = {}): string[] {
  return expertDemo(question, retriever, opts).turns;
}
