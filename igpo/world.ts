// The search task's data: seeded worlds of invented entities and relations, facts rendered as short
// sentences, 1- to 3-hop questions along relation chains, and the train / eval / ood splits of episodes.
// Not the retriever (retriever.ts), not the turn protocol or the episode state machine (env.ts).

import { Generator } from '../engine/random.js';

export type Kind = 'person' | 'city' | 'country' | 'company';
export type Relation = 'born_in' | 'located_in' | 'capital_of' | 'works_for' | 'founded_by' | 'based_in';

export interface RelationDef {
  subj: Kind;
  obj: Kind;
  /** Templates over {s} and {o}, used by every split. */
  train: readonly string[];
  /** Templates only the out-of-domain split uses. */
  heldOut: readonly string[];
}

/**
 * Every template of a relation, held-out ones included, has the relation's keyword (born, city,
 * capital, works, founded, based), so a query of the entity's name and the keyword finds the fact in
 * any split: held-out templates change how a fact reads, not whether it can be found.
 */
export const RELATIONS: Readonly<Record<Relation, RelationDef>> = {
  born_in: {
    subj: 'person',
    obj: 'city',
    train: ['{s} was born in {o}.', '{o} is where {s} was born.'],
    heldOut: ['in {o}, {s} was born.'],
  },
  located_in: {
    subj: 'city',
    obj: 'country',
    train: ['{s} is a city in {o}.', 'the city {s} lies in {o}.'],
    heldOut: ['{o} has a city named {s}.'],
  },
  capital_of: {
    subj: 'city',
    obj: 'country',
    train: ['{s} is the capital of {o}.', 'the capital of {o} is {s}.'],
    heldOut: ['{o} has {s} as its capital.'],
  },
  works_for: {
    subj: 'person',
    obj: 'company',
    train: ['{s} works for {o}.', '{s} works at {o}.'],
    heldOut: ['{o} is where {s} works.'],
  },
  founded_by: {
    subj: 'company',
    obj: 'person',
    train: ['{s} was founded by {o}.', '{o} founded {s}.'],
    heldOut: ['it was {o} who founded {s}.'],
  },
  based_in: {
    subj: 'company',
    obj: 'city',
    train: ['{s} is based in {o}.', '{o} is where {s} is based.'],
    heldOut: ['{s} is a firm based in {o}.'],
  },
};

export type HopName = 'birthplace' | 'country' | 'capital' | 'employer' | 'founder' | 'base';

/** One step of a question: from an entity of kind `from`, follow `rel` (backwards when `inverse`). */
export interface HopDef {
  rel: Relation;
  inverse: boolean;
  from: Kind;
  to: Kind;
  /** Noun phrase over {x}, for nesting inside the next hop's question. */
  np: string;
  questions: readonly string[];
  heldOutQuestions: readonly string[];
}

export const HOPS: Readonly<Record<HopName, HopDef>> = {
  birthplace: {
    rel: 'born_in',
    inverse: false,
    from: 'person',
    to: 'city',
    np: 'the birthplace of {x}',
    questions: ['where was {x} born?', 'in which city was {x} born?'],
    heldOutQuestions: ['what city is {x} from?'],
  },
  country: {
    rel: 'located_in',
    inverse: false,
    from: 'city',
    to: 'country',
    np: 'the country of {x}',
    questions: ['in which country is {x}?', 'what country is {x} in?'],
    heldOutQuestions: ['{x} lies in which country?'],
  },
  capital: {
    rel: 'capital_of',
    inverse: true,
    from: 'country',
    to: 'city',
    np: 'the capital of {x}',
    questions: ['what is the capital of {x}?', 'which city is the capital of {x}?'],
    heldOutQuestions: ['name the capital of {x}.'],
  },
  employer: {
    rel: 'works_for',
    inverse: false,
    from: 'person',
    to: 'company',
    np: 'the employer of {x}',
    questions: ['who does {x} work for?', 'which company does {x} work for?'],
    heldOutQuestions: ['who employs {x}?'],
  },
  founder: {
    rel: 'founded_by',
    inverse: false,
    from: 'company',
    to: 'person',
    np: 'the founder of {x}',
    questions: ['who founded {x}?', 'who is the founder of {x}?'],
    heldOutQuestions: ['by whom was {x} founded?'],
  },
  base: {
    rel: 'based_in',
    inverse: false,
    from: 'company',
    to: 'city',
    np: 'the base of {x}',
    questions: ['where is {x} based?', 'in which city is {x} based?'],
    heldOutQuestions: ['what city is {x} based in?'],
  },
};

const HOP_NAMES = Object.keys(HOPS) as HopName[];

/**
 * Every type-correct chain of 1 to 3 hops, inner hop first. 'capital' then 'country' is left out: it
 * leads back to the country it started from.
 */
export const CHAINS: readonly (readonly HopName[])[] = (() => {
  const out: HopName[][] = [];
  const grow = (chain: HopName[]) => {
    out.push(chain);
    if (chain.length === 3) return;
    const last = HOPS[chain[chain.length - 1]];
    for (const h of HOP_NAMES) {
      if (HOPS[h].from !== last.to) continue;
      if (chain[chain.length - 1] === 'capital' && h === 'country') continue;
      grow([...chain, h]);
    }
  };
  for (const h of HOP_NAMES) grow([h]);
  return out;
})();

// ---------------------------------------------------------------------------------------------------
// Names

const ONSETS = 'bdfgklmnprstvz';
const VOWELS = 'aeiou';
const CODAS = 'nrls';

/** A consonant, a vowel, sometimes a closing consonant: 'ta', 'vor'. */
function syllable(gen: Generator): string {
  const s = ONSETS[gen.int(ONSETS.length)] + VOWELS[gen.int(VOWELS.length)];
  return gen.random() < 0.25 ? s + CODAS[gen.int(CODAS.length)] : s;
}

/** A name is two (80%) or three syllables. */
export const NAME_PATTERN = /^(?:[bdfgklmnprstvz][aeiou][nrls]?){2,3}$/;

export type NameBucket = 'train' | 'eval' | 'ood';

/** FNV-1a, 32 bits. */
function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/**
 * Which split a name belongs to, by its hash: half the names are training names, a quarter held-out
 * eval names, a quarter out-of-domain names. So no eval or ood entity name is ever seen in training.
 */
export function nameBucket(name: string): NameBucket {
  const h = fnv1a(name) & 3;
  return h < 2 ? 'train' : h === 2 ? 'eval' : 'ood';
}

/** Every word of every template, question and noun phrase, plus the expert's words: never a name. */
export const RESERVED_WORDS: ReadonlySet<string> = new Set(
  [
    ...Object.values(RELATIONS).flatMap((r) => [...r.train, ...r.heldOut]),
    ...Object.values(HOPS).flatMap((h) => [h.np, ...h.questions, ...h.heldOutQuestions]),
    'find next then answer so found need unknown',
  ]
    .join(' ')
    .replace(/[^a-z]+/g, ' ')
    .split(' ')
    .filter(Boolean),
);

/** Draws distinct names of one bucket; some are near-copies of earlier ones ('tavor', 'tamel'). */
class NameMaker {
  private readonly used = new Map<string, string[]>();

  constructor(
    private readonly gen: Generator,
    private readonly bucket: NameBucket,
    private readonly similarRate: number,
  ) {}

  make(): string {
    const gen = this.gen;
    const earlier = [...this.used.values()];
    for (let attempt = 0; ; attempt++) {
      let syl: string[];
      if (earlier.length > 0 && attempt < 20 && gen.random() < this.similarRate) {
        // A distractor that differs from an earlier name in its last syllable only.
        syl = [...earlier[gen.int(earlier.length)]];
        syl[syl.length - 1] = syllable(gen);
      } else {
        syl = Array.from({ length: gen.random() < 0.8 ? 2 : 3 }, () => syllable(gen));
      }
      const name = syl.join('');
      if (this.used.has(name) || RESERVED_WORDS.has(name) || nameBucket(name) !== this.bucket) continue;
      this.used.set(name, syl);
      return name;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Worlds and facts

export interface Entity {
  name: string;
  kind: Kind;
}

export interface Fact {
  rel: Relation;
  subj: string;
  obj: string;
  text: string;
  /** Rendered from a held-out template. */
  heldOut: boolean;
}

export interface World {
  entities: Entity[];
  facts: Fact[];
}

export interface WorldOptions {
  /** The name bucket every entity's name is drawn from ('train' by default). */
  bucket?: NameBucket;
  /** Probability that a fact is rendered from a held-out template (0 by default). */
  heldOutFacts?: number;
  /** Probability that a name is a near-copy of an earlier one (0.3 by default). */
  similarNames?: number;
}

export function renderFact(template: string, subj: string, obj: string): string {
  return template.replace('{s}', subj).replace('{o}', obj);
}

const FACT_PARSERS: readonly { rel: Relation; re: RegExp; subjFirst: boolean }[] = (
  Object.keys(RELATIONS) as Relation[]
).flatMap((rel) =>
  [...RELATIONS[rel].train, ...RELATIONS[rel].heldOut].map((t) => ({
    rel,
    re: new RegExp('^' + t.replace(/[.?]/g, '\\$&').replace('{s}', '([a-z]+)').replace('{o}', '([a-z]+)') + '$'),
    subjFirst: t.indexOf('{s}') < t.indexOf('{o}'),
  })),
);

/** Reads a fact sentence back into its relation and arguments; null when no template matches. */
export function parseFact(text: string): { rel: Relation; subj: string; obj: string } | null {
  for (const p of FACT_PARSERS) {
    const m = p.re.exec(text);
    if (m) return p.subjFirst ? { rel: p.rel, subj: m[1], obj: m[2] } : { rel: p.rel, subj: m[2], obj: m[1] };
  }
  return null;
}

function pick<T>(gen: Generator, items: readonly T[]): T {
  return items[gen.int(items.length)];
}

function between(gen: Generator, lo: number, hi: number): number {
  return lo + gen.int(hi - lo + 1);
}

/**
 * A small world: 2-3 countries with 2-3 cities each (one the capital), 5-8 people, 3-4 companies.
 * Every person is born in one city and works for one company; every company has one founder and one
 * base: each hop has exactly one answer. 22 to 36 facts.
 */
export function generateWorld(gen: Generator, opts: WorldOptions = {}): World {
  const names = new NameMaker(gen, opts.bucket ?? 'train', opts.similarNames ?? 0.3);
  const heldOutRate = opts.heldOutFacts ?? 0;
  const entities: Entity[] = [];
  const make = (kind: Kind): string => {
    const name = names.make();
    entities.push({ name, kind });
    return name;
  };
  const facts: Fact[] = [];
  const fact = (rel: Relation, subj: string, obj: string) => {
    const heldOut = gen.random() < heldOutRate;
    const def = RELATIONS[rel];
    facts.push({ rel, subj, obj, text: renderFact(pick(gen, heldOut ? def.heldOut : def.train), subj, obj), heldOut });
  };

  const cities: string[] = [];
  for (let c = between(gen, 2, 3); c > 0; c--) {
    const country = make('country');
    const own = Array.from({ length: between(gen, 2, 3) }, () => make('city'));
    for (const city of own) fact('located_in', city, country);
    fact('capital_of', pick(gen, own), country);
    cities.push(...own);
  }
  const companies = Array.from({ length: between(gen, 3, 4) }, () => make('company'));
  const people = Array.from({ length: between(gen, 5, 8) }, () => make('person'));
  for (const p of people) {
    fact('born_in', p, pick(gen, cities));
    fact('works_for', p, pick(gen, companies));
  }
  for (const m of companies) {
    fact('founded_by', m, pick(gen, people));
    fact('based_in', m, pick(gen, cities));
  }
  return { entities, facts };
}

/** The facts that answer `hop` from `entity` (exactly one in a generated world when kinds match). */
export function hopFacts(facts: readonly Fact[], hop: HopName, entity: string): Fact[] {
  const h = HOPS[hop];
  return facts.filter((f) => f.rel === h.rel && (h.inverse ? f.obj : f.subj) === entity);
}

/** The entity a fact leads to when read along `hop`. */
export function hopTarget(fact: Fact | { subj: string; obj: string }, hop: HopName): string {
  return HOPS[hop].inverse ? fact.subj : fact.obj;
}

// ---------------------------------------------------------------------------------------------------
// Questions

export interface Question {
  text: string;
  /** Inner hop first: ['employer', 'base'] asks for the base of the employer of `start`. */
  hops: HopName[];
  start: string;
  /** start, then each hop's answer: path[hops.length] is the gold answer. */
  path: string[];
  /** The fact each hop needs, in order. */
  chain: Fact[];
  gold: string;
  /** Other accepted answers; the generated worlds have none, the field is for other data sets. */
  aliases: string[];
  /** Phrased with a held-out question template. */
  heldOut: boolean;
}

/** "in which country is the base of the employer of tavor?": inner hops nest as noun phrases. */
export function renderQuestion(
  hops: readonly HopName[],
  start: string,
  gen: Generator,
  heldOutRate = 0,
): { text: string; heldOut: boolean } {
  let x = start;
  for (const h of hops.slice(0, -1)) x = HOPS[h].np.replace('{x}', x);
  const last = HOPS[hops[hops.length - 1]];
  const heldOut = gen.random() < heldOutRate;
  return { text: pick(gen, heldOut ? last.heldOutQuestions : last.questions).replace('{x}', x), heldOut };
}

/**
 * The question along `hops` from `start`, or null when the chain breaks or revisits an entity (so the
 * answer is never an entity the question already names or passes through).
 */
export function makeQuestion(
  world: World,
  hops: readonly HopName[],
  start: string,
  gen: Generator,
  heldOutRate = 0,
): Question | null {
  const path = [start];
  const chain: Fact[] = [];
  for (const h of hops) {
    const found = hopFacts(world.facts, h, path[path.length - 1]);
    if (found.length !== 1) return null;
    const next = hopTarget(found[0], h);
    if (path.includes(next)) return null;
    chain.push(found[0]);
    path.push(next);
  }
  const { text, heldOut } = renderQuestion(hops, start, gen, heldOutRate);
  return { text, hops: [...hops], start, path, chain, gold: path[path.length - 1], aliases: [], heldOut };
}

// ---------------------------------------------------------------------------------------------------
// Splits

export type Split = 'train' | 'eval' | 'ood';

export interface SplitConfig {
  name: string;
  /** hopWeights[h - 1] is the relative frequency of h-hop questions. */
  hopWeights: readonly [number, number, number];
  bucket: NameBucket;
  heldOutFacts: number;
  heldOutQuestions: number;
  similarNames: number;
}

/**
 * train and eval: 1-2 hops, training templates, disjoint name sets (and seed streams). ood: 3 hops, its
 * own names, and half of its facts and questions phrased with held-out templates.
 */
export const SPLITS: Readonly<Record<Split, SplitConfig>> = {
  train: {
    name: 'train',
    hopWeights: [0.4, 0.6, 0],
    bucket: 'train',
    heldOutFacts: 0,
    heldOutQuestions: 0,
    similarNames: 0.3,
  },
  eval: {
    name: 'eval',
    hopWeights: [0.4, 0.6, 0],
    bucket: 'eval',
    heldOutFacts: 0,
    heldOutQuestions: 0,
    similarNames: 0.3,
  },
  ood: {
    name: 'ood',
    hopWeights: [0, 0, 1],
    bucket: 'ood',
    heldOutFacts: 0.5,
    heldOutQuestions: 0.5,
    similarNames: 0.3,
  },
};

/** What an episode starts from: the question and its pool of facts (the world's facts, shuffled). */
export interface EpisodeSpec {
  split: string;
  question: Question;
  facts: Fact[];
  world: World;
}

function drawHops(gen: Generator, weights: readonly number[]): number {
  const total = weights.reduce((s, w) => s + w, 0);
  if (!(total > 0)) throw new Error(`sampleEpisode: hop weights ${JSON.stringify(weights)} sum to ${total}`);
  let u = gen.random() * total;
  for (let i = 0; i < weights.length; i++) {
    u -= weights[i];
    if (u < 0 && weights[i] > 0) return i + 1;
  }
  return weights.findLastIndex((w) => w > 0) + 1;
}

/** One episode of a split, drawn fresh: a new world every time, so nothing can be memorised. */
export function sampleEpisode(split: Split | SplitConfig, gen: Generator): EpisodeSpec {
  const cfg = typeof split === 'string' ? SPLITS[split] : split;
  const nHops = drawHops(gen, cfg.hopWeights);
  const chains = CHAINS.filter((c) => c.length === nHops);
  for (;;) {
    const world = generateWorld(gen, {
      bucket: cfg.bucket,
      heldOutFacts: cfg.heldOutFacts,
      similarNames: cfg.similarNames,
    });
    // A few starts per world; a chain can fail to be simple (revisit an entity) in a given world.
    for (let attempt = 0; attempt < 8; attempt++) {
      const hops = pick(gen, chains);
      const starts = world.entities.filter((e) => e.kind === HOPS[hops[0]].from);
      const q = makeQuestion(world, hops, pick(gen, starts).name, gen, cfg.heldOutQuestions);
      if (q) return { split: cfg.name, question: q, facts: gen.shuffle(world.facts), world };
    }
  }
}

const SPLIT_SALT: Readonly<Record<Split, number>> = { train: 0x7a11, eval: 0xe4a1, ood: 0x00d5 };

/**
 * A split's own seed stream: the same seed gives different episodes in different splits. A split given
 * by its config (a preset's other hop mix, say) draws from the stream of the split its name is.
 */
function splitGenerator(split: Split | SplitConfig, seed: number): Generator {
  const name = typeof split === 'string' ? split : split.name;
  if (!Object.hasOwn(SPLIT_SALT, name))
    throw new Error(`splitGenerator: split '${name}' is none of ${Object.keys(SPLIT_SALT).join(', ')}`);
  return new Generator((Math.imul(Math.trunc(seed) >>> 0, 0x9e3779b1) ^ SPLIT_SALT[name as Split]) >>> 0);
}

/** An endless, seeded stream of a split's episodes. */
export function* episodeStream(split: Split | SplitConfig, seed: number): IterableIterator<EpisodeSpec> {
  const gen = splitGenerator(split, seed);
  for (;;) yield sampleEpisode(split, gen);
}

/** A fixed, seeded set of `size` episodes (a held-out eval set, say). */
export function makeSplit(split: Split | SplitConfig, seed: number, size = 256): EpisodeSpec[] {
  const gen = splitGenerator(split, seed);
  return Array.from({ length: size }, () => sampleEpisode(split, gen));
}
