// The search environment's turn protocol and episode state machine: parse a turn (<think> then <search>
// or <answer>), answer searches with <info> from BM25 over the episode's facts, score the answer, record.
// Not the data (world.ts), the retriever (retriever.ts), the expert (expert.ts) or the rollout's sampling.

import { f1Score } from './reward.js';
import { Retriever, type RetrieverOptions } from './retriever.js';
import type { EpisodeSpec, Fact, Question } from './world.js';

export * from './retriever.js';
export * from './world.js';

/** The protocol's tags; the character tokenizer encodes each as one token. */
export const TURN_TAGS = [
  '<think>',
  '</think>',
  '<search>',
  '</search>',
  '<info>',
  '</info>',
  '<answer>',
  '</answer>',
] as const;

const TAG_RE = /<\/?(?:think|search|answer|info)>/g;

/** Length in the character tokenizer's tokens: one per character, one per tag. */
export function tokenCount(text: string): number {
  return text.replace(TAG_RE, '#').length;
}

/** The model context budget (tokens) the environment's text is designed to fit. */
export const CONTEXT_TOKENS = 512;

/** How an episode's text starts: the question and a newline. */
export function formatPrompt(question: Question | string): string {
  return `${typeof question === 'string' ? question : question.text}\n`;
}

/** The tool response to a search: the retrieved facts, space-separated, in one info block. */
export function formatInfo(facts: readonly string[]): string {
  return `<info>${facts.join(' ')}</info>`;
}

export type MalformedReason =
  /** Longer than the turn limit (in tokens). */
  | 'over-long'
  /** An opening tag never closed, or a closing tag never opened. */
  | 'unclosed-tag'
  /** Non-whitespace text outside the blocks. */
  | 'stray-text'
  /** The agent wrote an <info> tag: tool output is the environment's to write. */
  | 'tool-tag'
  /** No <think> block. */
  | 'no-think'
  /** Blocks out of order: a block nested in another, an action before the think, two thinks, two actions. */
  | 'bad-order'
  /** A think and no <search> or <answer> (or nothing at all). */
  | 'no-action'
  | 'empty-query'
  | 'empty-answer';

export const MALFORMED_REASONS: readonly MalformedReason[] = [
  'over-long',
  'unclosed-tag',
  'stray-text',
  'tool-tag',
  'no-think',
  'bad-order',
  'no-action',
  'empty-query',
  'empty-answer',
];

export type ParsedTurn =
  | { kind: 'search'; think: string; query: string }
  | { kind: 'answer'; think: string; answer: string }
  | { kind: 'malformed'; reason: MalformedReason };

export interface ParseOptions {
  /** Longest allowed turn, in tokens; 128 by default (the expert's turns are under 70). */
  maxTokens?: number;
}

type Piece = { tag: string; open: boolean; name: string } | { text: string };

function lex(text: string): Piece[] {
  const out: Piece[] = [];
  let last = 0;
  for (const m of text.matchAll(TAG_RE)) {
    if (m.index > last) out.push({ text: text.slice(last, m.index) });
    out.push({ tag: m[0], open: m[0][1] !== '/', name: m[0].replace(/[</>]/g, '') });
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push({ text: text.slice(last) });
  return out;
}

const clean = (s: string) => s.trim().replace(/\s+/g, ' ');

/**
 * One agent turn: `<think>T</think>` then `<search>Q</search>` or `<answer>A</answer>`, with only
 * whitespace between and around the blocks. Query and answer come back trimmed, inner whitespace
 * collapsed. Checks run in this order: length, <info> tags, tag balance, stray text, block order, empties.
 */
export function parseTurn(text: string, opts: ParseOptions = {}): ParsedTurn {
  const malformed = (reason: MalformedReason): ParsedTurn => ({ kind: 'malformed', reason });
  if (tokenCount(text) > (opts.maxTokens ?? 128)) return malformed('over-long');
  const pieces = lex(text);
  if (pieces.some((p) => 'tag' in p && p.name === 'info')) return malformed('tool-tag');

  // Blocks are flat: an open tag, optional text, its own close tag.
  const blocks: { name: string; content: string }[] = [];
  let stray = false;
  let nested = false;
  for (let i = 0; i < pieces.length; i++) {
    const p = pieces[i];
    if ('text' in p) {
      if (p.text.trim() !== '') stray = true;
      continue;
    }
    if (!p.open) return malformed('unclosed-tag');
    let content = '';
    let j = i + 1;
    if (j < pieces.length && 'text' in pieces[j]) content = (pieces[j++] as { text: string }).text;
    const close = pieces[j];
    if (close !== undefined && 'tag' in close && !close.open && close.name === p.name) {
      blocks.push({ name: p.name, content });
      i = j;
      continue;
    }
    // Not closed right away: closed later means a block nested inside it, never closed means unbalanced.
    const closedLater = pieces.slice(j).some((q) => 'tag' in q && !q.open && q.name === p.name);
    if (!closedLater) return malformed('unclosed-tag');
    nested = true;
    break;
  }
  if (nested) return malformed('bad-order');
  if (stray) return malformed('stray-text');
  if (blocks.length === 0) return malformed('no-action');
  if (!blocks.some((b) => b.name === 'think')) return malformed('no-think');
  if (blocks[0].name !== 'think' || blocks.length > 2 || (blocks.length === 2 && blocks[1].name === 'think'))
    return malformed('bad-order');
  if (blocks.length === 1) return malformed('no-action');
  const [think, action] = blocks;
  const body = clean(action.content);
  if (action.name === 'search')
    return body === '' ? malformed('empty-query') : { kind: 'search', think: clean(think.content), query: body };
  return body === '' ? malformed('empty-answer') : { kind: 'answer', think: clean(think.content), answer: body };
}

/** Scores a final answer against the gold answer and its aliases, in [0, 1]. */
export type AnswerScore = (answer: string, golds: readonly string[]) => number;

export interface EpisodeOptions extends RetrieverOptions, ParseOptions {
  /** Turns allowed, the answer turn included; 4 by default (3 searches, then an answer). */
  maxTurns?: number;
  /** The episode ends with reward 0 when a search's info block would push the text past this; 512 by default. */
  maxContextTokens?: number;
  /** The final reward; word F1 with SQuAD normalisation (reward.ts) by default. */
  score?: AnswerScore;
}

export type EndReason = 'answer' | 'max-turns' | 'context-full' | MalformedReason;

export interface TurnRecord {
  text: string;
  kind: ParsedTurn['kind'];
  query?: string;
  /** The facts the search returned. */
  retrieved?: string[];
  /** How many of the question's chain facts the search returned. */
  neededHits?: number;
  /** How many of them no earlier search of the episode had returned. */
  newNeeded?: number;
  answer?: string;
  malformed?: MalformedReason;
}

export interface EpisodeRecord {
  question: string;
  gold: string;
  hops: number;
  turns: TurnRecord[];
  searches: number;
  end: EndReason | null;
  reward: number | null;
  answer: string | null;
  /** Chain facts returned by some search, of `neededTotal`. */
  neededFound: number;
  neededTotal: number;
}

/** What one search returned, measured against the facts the question needs (step-reward baselines read it). */
export interface Retrieval {
  /** Chain facts this search returned that no earlier search of the episode had, of `neededTotal`. */
  newNeeded: number;
  neededTotal: number;
  /** Facts this search returned that an earlier search of the episode had returned too, of `returned`. */
  repeated: number;
  returned: number;
}

export interface StepResult {
  done: boolean;
  /** What the search returned, for a search turn (also one that ended the episode). */
  retrieval?: Retrieval;
  /** The <info>..</info> block to append after the turn, when the episode goes on. */
  observation?: string;
  /** The final reward, when done. */
  reward?: number;
  malformed?: MalformedReason;
  /** Why the episode ended, when done. */
  reason?: EndReason;
}

/**
 * One episode: the agent's turns go in through `step`, each search is answered with an info block.
 * The episode ends at an answer (reward: score of the answer), a malformed turn (reward 0, the reason
 * recorded: a well-formed turn is part of the task), the last allowed turn spent on a search
 * ('max-turns', reward 0), or a context overflow ('context-full', reward 0).
 */
export class Episode {
  readonly facts: readonly string[];
  readonly retriever: Retriever;
  readonly prompt: string;
  private readonly opts: Required<Pick<EpisodeOptions, 'maxTurns' | 'maxContextTokens' | 'maxTokens'>> & {
    score: AnswerScore;
  };
  private readonly needed: ReadonlySet<string>;
  /** The question's last chain fact: the one that holds the gold answer. */
  private readonly answerFact: string;
  private readonly seen = new Set<string>();
  /** Every fact some search of the episode returned. */
  private readonly returned = new Set<string>();
  private factTurn: number | null = null;
  private readonly turns: TurnRecord[] = [];
  private text: string;
  private end: EndReason | null = null;
  private reward: number | null = null;
  private answer: string | null = null;

  constructor(
    readonly question: Question,
    facts: readonly (Fact | string)[],
    opts: EpisodeOptions = {},
  ) {
    this.facts = facts.map((f) => (typeof f === 'string' ? f : f.text));
    this.retriever = new Retriever(this.facts, opts);
    this.needed = new Set(question.chain.map((f) => f.text));
    this.answerFact = question.chain[question.chain.length - 1].text;
    this.opts = {
      maxTurns: opts.maxTurns ?? 4,
      maxContextTokens: opts.maxContextTokens ?? CONTEXT_TOKENS,
      maxTokens: opts.maxTokens ?? 128,
      score: opts.score ?? ((answer, golds) => f1Score(answer, golds)),
    };
    this.prompt = formatPrompt(question);
    this.text = this.prompt;
  }

  static fromSpec(spec: EpisodeSpec, opts: EpisodeOptions = {}): Episode {
    return new Episode(spec.question, spec.facts, opts);
  }

  /** The gold answer and its aliases (what the rollout teacher-forces is the first). */
  get gold(): string[] {
    return [this.question.gold, ...this.question.aliases];
  }

  get done(): boolean {
    return this.end !== null;
  }

  get turnCount(): number {
    return this.turns.length;
  }

  /** The turn whose search first returned the fact that holds the gold answer, or null while none has. */
  get answerFactTurn(): number | null {
    return this.factTurn;
  }

  /** The episode's text so far: prompt, then each turn followed by its info block. */
  transcript(): string {
    return this.text;
  }

  step(turnText: string): StepResult {
    if (this.done)
      throw new Error(`Episode.step: the episode has ended (${this.end}); ${this.turns.length} turns were taken`);
    const parsed = parseTurn(turnText, { maxTokens: this.opts.maxTokens });
    this.text += turnText;
    if (parsed.kind === 'malformed') {
      this.turns.push({ text: turnText, kind: 'malformed', malformed: parsed.reason });
      return { ...this.finish(parsed.reason, 0), malformed: parsed.reason };
    }
    if (parsed.kind === 'answer') {
      this.turns.push({ text: turnText, kind: 'answer', answer: parsed.answer });
      this.answer = parsed.answer;
      return this.finish('answer', this.opts.score(parsed.answer, [this.question.gold, ...this.question.aliases]));
    }
    const retrieved = this.retriever.search(parsed.query);
    const hits = retrieved.filter((f) => this.needed.has(f));
    const fresh = hits.filter((f) => !this.seen.has(f));
    for (const f of hits) this.seen.add(f);
    const retrieval: Retrieval = {
      newNeeded: fresh.length,
      neededTotal: this.needed.size,
      repeated: retrieved.filter((f) => this.returned.has(f)).length,
      returned: retrieved.length,
    };
    for (const f of retrieved) this.returned.add(f);
    if (this.factTurn === null && retrieved.includes(this.answerFact)) this.factTurn = this.turns.length;
    this.turns.push({
      text: turnText,
      kind: 'search',
      query: parsed.query,
      retrieved,
      neededHits: hits.length,
      newNeeded: fresh.length,
    });
    if (this.turns.length >= this.opts.maxTurns) return { ...this.finish('max-turns', 0), retrieval };
    const observation = formatInfo(retrieved);
    if (tokenCount(this.text + observation) > this.opts.maxContextTokens)
      return { ...this.finish('context-full', 0), retrieval };
    this.text += observation;
    return { done: false, observation, retrieval };
  }

  private finish(end: EndReason, reward: number): StepResult {
    this.end = end;
    this.reward = reward;
    return { done: true, reward, reason: end };
  }

  /** A plain-data record of the episode so far, for metrics. */
  record(): EpisodeRecord {
    const q = this.question;
    return {
      question: q.text,
      gold: q.gold,
      hops: q.hops.length,
      turns: this.turns.map((t) => ({ ...t, retrieved: t.retrieved && [...t.retrieved] })),
      searches: this.turns.filter((t) => t.kind === 'search').length,
      end: this.end,
      reward: this.reward,
      answer: this.answer,
      neededFound: this.seen.size,
      neededTotal: this.needed.size,
    };
  }
}

export interface EpisodeSummary {
  episodes: number;
  meanReward: number;
  /** Episodes ending with each reason. */
  ends: Partial<Record<EndReason, number>>;
  meanSearches: number;
  /** Fraction of searches that returned at least one chain fact. */
  searchHitRate: number;
  /** Fraction of all chain facts that some search returned. */
  neededRecall: number;
  /** The same by the question's number of hops: episodes, mean reward, mean searches. */
  byHops: Record<number, { episodes: number; meanReward: number; meanSearches: number }>;
}

/** Aggregates finished episodes' records. */
export function summarizeEpisodes(records: readonly EpisodeRecord[]): EpisodeSummary {
  const ends: Partial<Record<EndReason, number>> = {};
  let reward = 0;
  let searches = 0;
  let hitSearches = 0;
  let found = 0;
  let total = 0;
  const byHops: EpisodeSummary['byHops'] = {};
  for (const r of records) {
    const h = (byHops[r.hops] ??= { episodes: 0, meanReward: 0, meanSearches: 0 });
    h.episodes++;
    h.meanReward += r.reward ?? 0;
    h.meanSearches += r.searches;
    if (r.end !== null) ends[r.end] = (ends[r.end] ?? 0) + 1;
    reward += r.reward ?? 0;
    searches += r.searches;
    hitSearches += r.turns.filter((t) => (t.neededHits ?? 0) > 0).length;
    found += r.neededFound;
    total += r.neededTotal;
  }
  const n = records.length;
  for (const h of Object.values(byHops)) {
    h.meanReward /= h.episodes;
    h.meanSearches /= h.episodes;
  }
  return {
    episodes: n,
    meanReward: n ? reward / n : 0,
    ends,
    meanSearches: n ? searches / n : 0,
    searchHitRate: searches ? hitSearches / searches : 0,
    neededRecall: total ? found / total : 0,
    byHops,
  };
}
