// The search environment: seeded worlds and questions, BM25 against a hand computation, the turn
// parser's verdicts, the episode state machine, the scripted expert's success and lengths, and splits.
// Not the rewards' maths (igpo-math.test.ts) and not the tokenizer (tokenizer.test.ts).

import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { Generator } from '../engine/random.js';
import {
  BM25,
  CHAINS,
  CONTEXT_TOKENS,
  Episode,
  HOPS,
  MALFORMED_REASONS,
  NAME_PATTERN,
  RELATIONS,
  Retriever,
  episodeStream,
  formatInfo,
  generateWorld,
  hopFacts,
  hopTarget,
  makeSplit,
  nameBucket,
  parseFact,
  parseTurn,
  renderFact,
  sampleEpisode,
  summarizeEpisodes,
  tokenCount,
  tokenize,
  type EpisodeSpec,
  type MalformedReason,
  type Relation,
  type Split,
} from '../igpo/env.js';
import { expertDemo, type ExpertFlaw } from '../igpo/expert.js';

// Plain tests use vitest's `it`: @fast-check/vitest's `test(name, fn)` runs fn numRuns times (25 here).
const SPLIT_NAMES: Split[] = ['train', 'eval', 'ood'];
const seedArb = fc.integer({ min: 0, max: 0x7fffffff });
const PRINTABLE = /^[\x20-\x7e\n]*$/;
const normalise = (s: string) =>
  s
    .toLowerCase()
    .replace(/[^a-z0-9 ]/g, '')
    .trim();

/** Runs the (optionally flawed) expert through an Episode; returns the episode and the demo. */
function runExpert(spec: EpisodeSpec, opts: { imperfect?: number; hasty?: number; gen?: Generator } = {}) {
  const ep = Episode.fromSpec(spec);
  const seen: string[] = [];
  const spy = {
    search: (q: string) => {
      const r = ep.retriever.search(q);
      seen.push(formatInfo(r));
      return r;
    },
  };
  const demo = expertDemo(spec.question, spy, opts);
  const observations: string[] = [];
  let last = { done: false } as ReturnType<Episode['step']>;
  for (const t of demo.turns) {
    last = ep.step(t);
    if (last.observation) observations.push(last.observation);
    if (last.done) break;
  }
  return { ep, demo, seen, observations, last };
}

describe('worlds', () => {
  test.prop([seedArb])('a seed determines the world', (seed) => {
    expect(generateWorld(new Generator(seed))).toEqual(generateWorld(new Generator(seed)));
    expect(sampleEpisode('ood', new Generator(seed))).toEqual(sampleEpisode('ood', new Generator(seed)));
  });

  test.prop([seedArb, fc.constantFrom(...SPLIT_NAMES)])(
    'names are pronounceable, distinct, of the split bucket; every hop is functional',
    (seed, split) => {
      const { world } = sampleEpisode(split, new Generator(seed));
      const names = world.entities.map((e) => e.name);
      expect(new Set(names).size).toBe(names.length);
      for (const n of names) {
        expect(n).toMatch(NAME_PATTERN);
        expect(nameBucket(n)).toBe(split);
      }
      expect(world.facts.length).toBeGreaterThanOrEqual(20);
      expect(world.facts.length).toBeLessThanOrEqual(40);
      for (const f of world.facts) expect(f.text).toMatch(PRINTABLE);
      // Each entity of a hop's source kind has exactly one fact for that hop: every question has one answer.
      for (const [hop, def] of Object.entries(HOPS) as [keyof typeof HOPS, (typeof HOPS)[keyof typeof HOPS]][]) {
        for (const e of world.entities.filter((x) => x.kind === def.from)) {
          const found = hopFacts(world.facts, hop, e.name);
          expect(found).toHaveLength(1);
          expect(world.entities.find((x) => x.name === hopTarget(found[0], hop))?.kind).toBe(def.to);
        }
      }
    },
  );

  test.prop([
    fc.constantFrom(...(Object.keys(RELATIONS) as Relation[])),
    fc.nat(),
    fc.stringMatching(NAME_PATTERN),
    fc.stringMatching(NAME_PATTERN),
  ])('every template reads back to its relation and arguments', (rel, i, s, o) => {
    const templates = [...RELATIONS[rel].train, ...RELATIONS[rel].heldOut];
    const text = renderFact(templates[i % templates.length], s, o);
    expect(parseFact(text)).toEqual({ rel, subj: s, obj: o });
  });

  it('chains: 6 one-hop, 7 two-hop, 8 three-hop, all type-correct', () => {
    expect([1, 2, 3].map((n) => CHAINS.filter((c) => c.length === n).length)).toEqual([6, 7, 8]);
    for (const c of CHAINS) for (let i = 1; i < c.length; i++) expect(HOPS[c[i]].from).toBe(HOPS[c[i - 1]].to);
  });
});

describe('questions', () => {
  test.prop([seedArb, fc.constantFrom(...SPLIT_NAMES)])(
    'the gold answer is reached along the chain, and the chain is in the pool',
    (seed, split) => {
      const { question: q, facts } = sampleEpisode(split, new Generator(seed));
      const pool = new Set(facts.map((f) => f.text));
      expect(q.chain).toHaveLength(q.hops.length);
      expect(q.path[0]).toBe(q.start);
      let cur = q.start;
      q.hops.forEach((hop, i) => {
        const f = q.chain[i];
        expect(pool.has(f.text)).toBe(true);
        // The fact's sentence itself says the hop: read it back, as an agent would.
        const read = parseFact(f.text)!;
        expect(read.rel).toBe(HOPS[hop].rel);
        expect(HOPS[hop].inverse ? read.obj : read.subj).toBe(cur);
        cur = hopTarget(read, hop);
        expect(cur).toBe(q.path[i + 1]);
        expect(hopFacts(facts, hop, q.path[i])).toEqual([f]);
      });
      expect(cur).toBe(q.gold);
      expect(new Set(q.path).size).toBe(q.path.length);
      expect(q.text).toContain(q.start);
      expect(q.text).not.toContain(q.gold);
      expect(q.text).toMatch(PRINTABLE);
    },
  );
});

describe('BM25', () => {
  it('scores match a hand computation on three documents', () => {
    // N = 3, lengths 3, 4, 2, avgdl = 3; "a" and "c" are each in 2 documents: IDF = ln(1 + 1.5 / 2.5) = ln 1.6.
    const bm = new BM25(['a b c', 'A a, d e.', 'c f']);
    expect(bm.avgdl).toBe(3);
    const idf = Math.log(1.6);
    expect(bm.idf('a')).toBeCloseTo(idf, 14);
    expect(bm.idf('b')).toBeCloseTo(Math.log(1 + 2.5 / 1.5), 14);
    expect(bm.idf('zzz')).toBeCloseTo(Math.log(1 + 3.5 / 0.5), 14);
    const s = bm.scores('a c zzz');
    // doc 0: |D| = avgdl, so k1 * (1 - b + b) = 1.2; each term: 1 * 2.2 / (1 + 1.2) = 1.
    expect(s[0]).toBeCloseTo(2 * idf, 12); // 0.94000725849...
    // doc 1: norm = 1.2 * (0.25 + 0.75 * 4/3) = 1.5; "a" twice: 2 * 2.2 / (2 + 1.5).
    expect(s[1]).toBeCloseTo((idf * 4.4) / 3.5, 12); // 0.59086170...
    // doc 2: norm = 1.2 * (0.25 + 0.75 * 2/3) = 0.9; "c" once: 2.2 / 1.9.
    expect(s[2]).toBeCloseTo((idf * 2.2) / 1.9, 12); // 0.54421749...
    expect(s[0]).toBeCloseTo(0.940007258491, 10);
    expect(bm.rank('a c', 3).map((h) => h.index)).toEqual([0, 1, 2]);
    expect(bm.rank('zzz', 3)).toEqual([]);
    expect(bm.rank('c', 1)).toEqual([{ index: 2, score: (idf * 2.2) / 1.9, text: 'c f' }]);
  });

  it('tokenize lowercases and strips punctuation', () => {
    expect(tokenize("In Melin, Tavor's  born.")).toEqual(['in', 'melin', 'tavor', 's', 'born']);
    expect(tokenize(' .,! ')).toEqual([]);
  });

  test.prop([seedArb, fc.constantFrom(...SPLIT_NAMES), fc.nat()])(
    'a query copied from a fact ranks that fact strictly first',
    (seed, split, i) => {
      const { facts } = sampleEpisode(split, new Generator(seed));
      const bm = new BM25(facts.map((f) => f.text));
      const j = i % facts.length;
      const [first, second] = bm.rank(facts[j].text, 2);
      expect(first.index).toBe(j);
      expect(first.score).toBeGreaterThan(second.score);
    },
  );

  it('the retriever returns at most k facts, none that match nothing', () => {
    const r = new Retriever(['tavor was born in melin.', 'melin is a city in varu.', 'kiro works for zelkan.'], {
      k: 2,
    });
    expect(r.search('melin')).toEqual(['tavor was born in melin.', 'melin is a city in varu.']); // the shorter first
    expect(r.search('tavor born')).toEqual(['tavor was born in melin.']);
    expect(r.search('nothing here')).toEqual([]);
    expect(formatInfo(r.search('zelkan'))).toBe('<info>kiro works for zelkan.</info>');
  });
});

describe('parseTurn', () => {
  it('well-formed turns', () => {
    expect(parseTurn('<think>find the base of goso.</think><search>goso based</search>')).toEqual({
      kind: 'search',
      think: 'find the base of goso.',
      query: 'goso based',
    });
    expect(parseTurn(' <think> so </think>\n<answer>  melin  </answer>\n')).toEqual({
      kind: 'answer',
      think: 'so',
      answer: 'melin',
    });
    expect(parseTurn('<think></think><search>a   b</search>')).toEqual({ kind: 'search', think: '', query: 'a b' });
  });

  const cases: [MalformedReason, string][] = [
    ['over-long', `<think>${'x'.repeat(200)}</think><answer>a</answer>`],
    ['unclosed-tag', '<think>abc'],
    ['unclosed-tag', '<think>abc</think><search>q'],
    ['unclosed-tag', 'abc</think><search>q</search>'],
    ['unclosed-tag', '<think>a</search>'],
    ['stray-text', 'well <think>a</think><search>q</search>'],
    ['stray-text', '<think>a</think><search>q</search> and more'],
    ['tool-tag', '<think>a</think><search>q</search><info>made up</info>'],
    ['no-think', '<search>q</search>'],
    ['no-think', '<answer>a</answer>'],
    ['bad-order', '<search>q</search><think>a</think>'],
    ['bad-order', '<think>a</think><think>b</think><search>q</search>'],
    ['bad-order', '<think>a</think><search>q</search><answer>b</answer>'],
    ['bad-order', '<think>a<search>q</search></think>'],
    ['no-action', '<think>a</think>'],
    ['no-action', ''],
    ['no-action', '  \n'],
    ['empty-query', '<think>a</think><search>  </search>'],
    ['empty-answer', '<think>a</think><answer></answer>'],
  ];
  it.each(cases)('%s: %j', (reason, text) => {
    expect(parseTurn(text)).toEqual({ kind: 'malformed', reason });
  });

  it('every reason has a case, and the length limit is in tokens (a tag is one)', () => {
    expect(new Set(cases.map(([r]) => r))).toEqual(new Set(MALFORMED_REASONS));
    expect(tokenCount('<think>ab</think><search>c</search>')).toBe(7);
    const t = `<think>${'x'.repeat(10)}</think><answer>y</answer>`; // 15 tokens, 45 characters
    expect(parseTurn(t, { maxTokens: 15 }).kind).toBe('answer');
    expect(parseTurn(t, { maxTokens: 14 })).toEqual({ kind: 'malformed', reason: 'over-long' });
  });

  const word = fc.stringMatching(/^[a-z0-9.,?']{1,8}$/);
  const words = fc.array(word, { minLength: 1, maxLength: 5 }).map((w) => w.join(' '));
  test.prop([fc.array(word, { maxLength: 5 }).map((w) => w.join(' ')), words, fc.boolean()])(
    'think + action round-trips',
    (think, body, isSearch) => {
      const tag = isSearch ? 'search' : 'answer';
      const parsed = parseTurn(`<think>${think}</think><${tag}>${body}</${tag}>`);
      expect(parsed).toEqual(
        isSearch ? { kind: 'search', think, query: body } : { kind: 'answer', think, answer: body },
      );
    },
  );
});

describe('Episode', () => {
  const spec = sampleEpisode('train', new Generator(5));
  const q = spec.question;
  const search = (query: string) => `<think>x</think><search>${query}</search>`;

  it('searches get info blocks; the answer ends it with its F1', () => {
    const ep = Episode.fromSpec(spec);
    expect(ep.prompt).toBe(`${q.text}\n`);
    expect(ep.gold).toEqual([q.gold]);
    const r1 = ep.step(search(q.start));
    expect(r1.done).toBe(false);
    expect(r1.observation).toBe(formatInfo(ep.retriever.search(q.start)));
    const r2 = ep.step(`<think>x</think><answer>${q.gold}</answer>`);
    expect(r2).toEqual({ done: true, reward: 1, reason: 'answer' });
    expect(ep.transcript()).toBe(
      `${q.text}\n${search(q.start)}${r1.observation}<think>x</think><answer>${q.gold}</answer>`,
    );
    expect(() => ep.step(search('more'))).toThrow(/has ended \(answer\)/);
    const rec = ep.record();
    expect(rec).toMatchObject({ searches: 1, end: 'answer', reward: 1, answer: q.gold, neededTotal: q.hops.length });
    expect(rec.turns[0].query).toBe(q.start);
  });

  it('a wrong answer scores 0; a partly right one gets partial F1', () => {
    expect(new Episode(q, spec.facts).step('<think>x</think><answer>nobody</answer>').reward).toBe(0);
    expect(new Episode(q, spec.facts).step(`<think>x</think><answer>${q.gold} nobody</answer>`).reward).toBeCloseTo(
      2 / 3,
      12,
    );
  });

  it('a malformed turn ends the episode with reward 0 and its reason', () => {
    const ep = Episode.fromSpec(spec);
    ep.step(search(q.start));
    expect(ep.step('<search>q</search>')).toEqual({ done: true, reward: 0, reason: 'no-think', malformed: 'no-think' });
    expect(ep.record().end).toBe('no-think');
  });

  it('running out of turns ends with reward 0 (max-turns), after maxTurns - 1 info blocks', () => {
    const ep = new Episode(q, spec.facts, { maxTurns: 3 });
    expect(ep.step(search('a')).done).toBe(false);
    expect(ep.step(search('b')).done).toBe(false);
    const last = ep.step(search(q.start));
    expect(last).toMatchObject({ done: true, reward: 0, reason: 'max-turns' });
    expect(last.observation).toBeUndefined();
    expect(last.retrieval!.returned).toBeGreaterThan(0); // the search ran; its response is never shown
    expect(ep.record().searches).toBe(3);
  });

  it('an info block that would overflow the context ends the episode (context-full)', () => {
    const ep = new Episode(q, spec.facts, { maxContextTokens: tokenCount(`${q.text}\n${search(q.start)}`) + 5 });
    const res = ep.step(search(q.start));
    expect(res).toMatchObject({ done: true, reward: 0, reason: 'context-full' });
    expect(res.observation).toBeUndefined();
  });

  it('the record counts chain facts retrieved, and summaries tally end reasons', () => {
    const runs = makeSplit('train', 11, 40).map((s) => runExpert(s).ep.record());
    for (const r of runs) {
      expect(r.neededFound).toBe(r.neededTotal);
      const searches = r.turns.filter((t) => t.kind === 'search');
      expect(searches.every((t) => t.neededHits! >= 1)).toBe(true);
      expect(searches.reduce((n, t) => n + t.newNeeded!, 0)).toBe(r.neededTotal);
    }
    const bad = new Episode(q, spec.facts);
    bad.step('<think>a');
    const sum = summarizeEpisodes([...runs, bad.record()]);
    expect(sum.ends).toEqual({ answer: 40, 'unclosed-tag': 1 });
    expect(sum.meanReward).toBeCloseTo(40 / 41, 12);
    expect(sum.searchHitRate).toBe(1);
    // By hops: the expert searches once per hop; the malformed episode counts with its question's hops.
    const all = [...runs, bad.record()];
    expect(Object.values(sum.byHops).reduce((n, h) => n + h.episodes, 0)).toBe(41);
    for (const [h, v] of Object.entries(sum.byHops)) {
      const rs = all.filter((r) => r.hops === Number(h));
      expect(v.episodes).toBe(rs.length);
      expect(v.meanSearches).toBeCloseTo(rs.reduce((n, r) => n + r.searches, 0) / rs.length, 12);
      expect(v.meanReward).toBeCloseTo(rs.reduce((n, r) => n + (r.reward ?? 0), 0) / rs.length, 12);
    }
    expect(sum.byHops[2].meanSearches).toBeGreaterThan(sum.byHops[1].meanSearches);
  });
});

describe('scripted expert', () => {
  it('solves at least 95% of 200 train episodes through Episode.step, seeing what the episode shows', () => {
    let solved = 0;
    const mismatched: string[] = [];
    for (const spec of makeSplit('train', 2026, 200)) {
      const { demo, seen, observations, last } = runExpert(spec);
      // The expert searched exactly as the episode did, and saw the same info blocks.
      if (JSON.stringify(seen) !== JSON.stringify(observations) || demo.turns.length !== spec.question.hops.length + 1)
        mismatched.push(spec.question.text);
      const right = normalise(demo.answer) === normalise(spec.question.gold);
      if (last.reward !== (right ? 1 : 0)) mismatched.push(spec.question.text);
      if (last.done && last.reason === 'answer' && right) solved++;
    }
    expect(mismatched).toEqual([]);
    expect(solved / 200).toBeGreaterThanOrEqual(0.95);
  });

  it('solves eval and ood episodes too', () => {
    for (const split of ['eval', 'ood'] as const) {
      const rewards = makeSplit(split, 7, 100).map((s) => runExpert(s).last.reward ?? 0);
      expect(rewards.reduce((a, b) => a + b, 0) / 100).toBeGreaterThanOrEqual(0.95);
    }
  });

  it('imperfect demonstrations stay well-formed, use every flaw, and fail more often', () => {
    const gen = new Generator(3);
    const flaws = new Set<ExpertFlaw | null>();
    const rate = (imperfect: number) => {
      let ok = 0;
      for (const spec of makeSplit('train', 99, 200)) {
        const { demo, last } = runExpert(spec, { imperfect, gen });
        flaws.add(demo.flaw);
        if (demo.turns.some((t) => parseTurn(t).kind === 'malformed'))
          throw new Error(`malformed demo: ${demo.turns.join('')}`);
        if (last.reward === 1) ok++;
      }
      return ok / 200;
    };
    const half = rate(0.5);
    const all = rate(1);
    expect(flaws).toEqual(new Set(['vague-query', 'skip-hop', 'early-answer', null]));
    expect(half).toBeLessThan(0.9);
    expect(half).toBeGreaterThan(all);
    expect(all).toBeLessThan(0.5);
    expect(() => expertDemo(makeSplit('train', 1, 1)[0].question, { search: () => [] }, { imperfect: 0.5 })).toThrow(
      /needs a Generator/,
    );
  });

  it(
    'a hasty demonstration of a multi-hop question answers after its first search; 1-hop questions ' +
      'are never hasty',
    () => {
      const gen = new Generator(5);
      let hastyMulti = 0;
      let multi = 0;
      for (const spec of makeSplit('train', 98, 200)) {
        const n = spec.question.hops.length;
        const { demo, last } = runExpert(spec, { hasty: 0.6, gen });
        const searches = demo.turns.filter((t) => parseTurn(t).kind === 'search').length;
        if (n === 1) {
          expect(demo.flaw).toBeNull();
          expect(searches).toBe(1);
          continue;
        }
        multi++;
        if (demo.flaw === 'early-answer') {
          hastyMulti++;
          expect(demo.flawHop).toBe(1);
          expect(searches).toBe(1);
          expect(last.reward ?? 0).toBeLessThan(1); // it answers with the first hop's entity
        } else {
          expect(demo.flaw).toBeNull();
          expect(searches).toBe(n);
        }
      }
      expect(multi).toBeGreaterThan(50);
      expect(Math.abs(hastyMulti / multi - 0.6)).toBeLessThan(0.15);
      expect(() => expertDemo(makeSplit('train', 1, 1)[0].question, { search: () => [] }, { hasty: 0.5 })).toThrow(
        /needs a Generator/,
      );
    },
  );

  it('episode text (question, expert turns, info blocks) fits the 512-token context in every split', () => {
    const gen = new Generator(4);
    for (const split of SPLIT_NAMES) {
      const texts = makeSplit(split, 8, 200).flatMap((spec) =>
        [0, 1].map((imperfect) => runExpert(spec, { imperfect, gen }).ep.transcript()),
      );
      expect(texts.filter((t) => !PRINTABLE.test(t) || t.toLowerCase() !== t)).toEqual([]);
      // Measured: at most about 310 tokens in train and eval, 420 in ood (3 hops).
      expect(Math.max(...texts.map(tokenCount))).toBeLessThan(CONTEXT_TOKENS);
    }
  });
});

describe('splits', () => {
  const sets = Object.fromEntries(SPLIT_NAMES.map((s) => [s, makeSplit(s, 1, 200)])) as Record<Split, EpisodeSpec[]>;
  const hopCounts = (eps: EpisodeSpec[]) => new Set(eps.map((e) => e.question.hops.length));
  const names = (eps: EpisodeSpec[]) => new Set(eps.flatMap((e) => e.world.entities.map((x) => x.name)));

  it('train and eval ask 1-2 hops, ood 3', () => {
    expect(hopCounts(sets.train)).toEqual(new Set([1, 2]));
    expect(hopCounts(sets.eval)).toEqual(new Set([1, 2]));
    expect(hopCounts(sets.ood)).toEqual(new Set([3]));
  });

  it('the splits share no entity names', () => {
    const [tr, ev, od] = SPLIT_NAMES.map((s) => names(sets[s]));
    expect(ev.size).toBeGreaterThan(1000);
    expect([...ev].filter((n) => tr.has(n))).toEqual([]);
    expect([...od].filter((n) => tr.has(n) || ev.has(n))).toEqual([]);
  });

  it('only ood uses held-out templates, for about half its facts and questions', () => {
    for (const s of ['train', 'eval'] as const) {
      expect(sets[s].some((e) => e.question.heldOut || e.facts.some((f) => f.heldOut))).toBe(false);
      const offTemplate = sets[s]
        .flatMap((e) => e.facts)
        .filter((f) => !RELATIONS[f.rel].train.some((t) => renderFact(t, f.subj, f.obj) === f.text));
      expect(offTemplate).toEqual([]);
    }
    const facts = sets.ood.flatMap((e) => e.facts);
    const heldFacts = facts.filter((f) => f.heldOut).length / facts.length;
    const heldQuestions = sets.ood.filter((e) => e.question.heldOut).length / sets.ood.length;
    expect(heldFacts).toBeGreaterThan(0.4);
    expect(heldFacts).toBeLessThan(0.6);
    expect(heldQuestions).toBeGreaterThan(0.35);
    expect(heldQuestions).toBeLessThan(0.65);
  });

  it('splits are seeded: same seed same episodes, the stream matches the fixed set, seeds and splits differ', () => {
    expect(makeSplit('eval', 1, 20)).toEqual(sets.eval.slice(0, 20));
    const stream = episodeStream('train', 1);
    expect(Array.from({ length: 5 }, () => stream.next().value)).toEqual(sets.train.slice(0, 5));
    expect(makeSplit('train', 2, 5).map((e) => e.question.text)).not.toEqual(
      sets.train.slice(0, 5).map((e) => e.question.text),
    );
    // Fresh worlds per episode: within a split, questions hardly ever repeat.
    expect(new Set(sets.train.map((e) => e.question.text)).size).toBeGreaterThan(195);
  });
});
