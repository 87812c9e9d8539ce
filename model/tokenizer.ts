// A character-level tokenizer for the multi-turn search agent: one id per printable ASCII character
// or newline, and one id per special token (the agent's tags, <eos>, <pad>, <unk>).
// Not a subword (BPE) tokenizer, and not a chat template: turn layout is the environment's business.

/** The agent's tags, in id order. Each encodes to exactly one token wherever it appears in text. */
export const TAGS = [
  '<think>',
  '</think>',
  '<search>',
  '</search>',
  '<info>',
  '</info>',
  '<answer>',
  '</answer>',
] as const;
/** Control tokens. They are never produced by `encode` from text: a literal "<eos>" is five characters. */
export const CONTROL = ['<pad>', '<unk>', '<eos>'] as const;

/** Printable ASCII (space through tilde) plus newline: 96 characters. */
export const ALPHABET: readonly string[] = [
  '\n',
  ...Array.from({ length: 0x7e - 0x20 + 1 }, (_, i) => String.fromCharCode(0x20 + i)),
];

export interface TokenizerJSON {
  type: 'char';
  version: 1;
  /** Special tokens in id order: ids 0 .. specials.length - 1. */
  specials: string[];
  /** Single characters in id order, after the specials. */
  chars: string[];
}

export interface DecodeOptions {
  /** Text for <eos>; '' by default. */
  eos?: string;
  /** Text for <pad>; '' by default. */
  pad?: string;
  /** Text for <unk>; its tag '<unk>' by default. */
  unk?: string;
}

export interface EncodeReport {
  ids: number[];
  /** Each unknown character (a whole code point, so an emoji is one entry), in order of appearance. */
  unknown: string[];
}

const REQUIRED_SPECIALS: readonly string[] = [...CONTROL, ...TAGS];

export class Tokenizer {
  readonly vocabSize: number;
  readonly pad: number;
  readonly unk: number;
  readonly eos: number;
  readonly think: number;
  readonly thinkEnd: number;
  readonly search: number;
  readonly searchEnd: number;
  readonly info: number;
  readonly infoEnd: number;
  readonly answer: number;
  readonly answerEnd: number;
  /** Unknown characters seen by every `encode` call on this tokenizer, with their counts. */
  readonly unknownCounts = new Map<string, number>();

  private readonly specials: readonly string[];
  private readonly chars: readonly string[];
  private readonly byName = new Map<string, number>();
  private readonly charId = new Map<string, number>();
  /** Tags matched in text, with their ids. No tag is a prefix of another, so greedy matching is unambiguous. */
  private readonly tagIds: readonly (readonly [string, number])[];

  constructor(specials: readonly string[] = REQUIRED_SPECIALS, chars: readonly string[] = ALPHABET) {
    for (const name of REQUIRED_SPECIALS) {
      if (!specials.includes(name))
        throw new Error(`Tokenizer: special token '${name}' is missing (specials: ${specials.join(' ')})`);
    }
    for (const c of chars) {
      if ([...c].length !== 1)
        throw new Error(`Tokenizer: alphabet entry ${JSON.stringify(c)} is not a single character`);
    }
    this.specials = [...specials];
    this.chars = [...chars];
    this.vocabSize = specials.length + chars.length;
    [...specials, ...chars].forEach((name, id) => {
      if (this.byName.has(name))
        throw new Error(`Tokenizer: token ${JSON.stringify(name)} appears twice in the vocabulary`);
      this.byName.set(name, id);
    });
    chars.forEach((c, i) => this.charId.set(c, specials.length + i));
    const tagSet = new Set<string>(TAGS);
    this.tagIds = specials.filter((s) => tagSet.has(s)).map((s) => [s, this.byName.get(s)!] as const);

    const id = (name: string) => this.byName.get(name)!;
    this.pad = id('<pad>');
    this.unk = id('<unk>');
    this.eos = id('<eos>');
    this.think = id('<think>');
    this.thinkEnd = id('</think>');
    this.search = id('<search>');
    this.searchEnd = id('</search>');
    this.info = id('<info>');
    this.infoEnd = id('</info>');
    this.answer = id('<answer>');
    this.answerEnd = id('</answer>');
  }

  /** The id of a special token ('<eos>', '<think>', ...) or of a single alphabet character. */
  id(tokenName: string): number {
    const id = this.byName.get(tokenName);
    if (id === undefined) throw new Error(`Tokenizer.id: no token ${JSON.stringify(tokenName)} in the vocabulary`);
    return id;
  }

  /** The token's text form: a special's tag, or the character. */
  token(id: number): string {
    this.checkId(id);
    return id < this.specials.length ? this.specials[id] : this.chars[id - this.specials.length];
  }

  isSpecial(id: number): boolean {
    this.checkId(id);
    return id < this.specials.length;
  }

  /** Encode, mapping unknown characters to <unk>; they are added to `unknownCounts`. */
  encode(text: string): number[] {
    return this.encodeWithReport(text).ids;
  }

  /** Greedy left to right: a complete tag at the current position wins, else one character (or <unk>). */
  encodeWithReport(text: string): EncodeReport {
    const ids: number[] = [];
    const unknown: string[] = [];
    let i = 0;
    outer: while (i < text.length) {
      if (text.charCodeAt(i) === 0x3c /* '<' */) {
        for (const [tag, id] of this.tagIds) {
          if (text.startsWith(tag, i)) {
            ids.push(id);
            i += tag.length;
            continue outer;
          }
        }
      }
      // A whole code point, so an astral character (emoji) is one <unk>, not two surrogates.
      const c = String.fromCodePoint(text.codePointAt(i)!);
      i += c.length;
      const id = this.charId.get(c);
      if (id !== undefined) {
        ids.push(id);
      } else {
        ids.push(this.unk);
        unknown.push(c);
        this.unknownCounts.set(c, (this.unknownCounts.get(c) ?? 0) + 1);
      }
    }
    return { ids, unknown };
  }

  /** Specials render as their tag text, except <eos> and <pad> ('' unless configured). Bad ids throw. */
  decode(ids: Iterable<number>, opts: DecodeOptions = {}): string {
    const eos = opts.eos ?? '';
    const pad = opts.pad ?? '';
    const unk = opts.unk ?? '<unk>';
    let out = '';
    for (const id of ids) {
      this.checkId(id);
      if (id === this.eos) out += eos;
      else if (id === this.pad) out += pad;
      else if (id === this.unk) out += unk;
      else out += id < this.specials.length ? this.specials[id] : this.chars[id - this.specials.length];
    }
    return out;
  }

  toJSON(): TokenizerJSON {
    return { type: 'char', version: 1, specials: [...this.specials], chars: [...this.chars] };
  }

  /** From `toJSON()`'s object (or its JSON text), checking every field. */
  static fromJSON(json: unknown): Tokenizer {
    const fail = (why: string): never => {
      throw new Error(`Tokenizer.fromJSON: ${why}`);
    };
    let obj: unknown = json;
    if (typeof json === 'string') {
      try {
        obj = JSON.parse(json);
      } catch (e) {
        return fail(`not JSON: ${(e as Error).message}`);
      }
    }
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) return fail('expected an object');
    const o = obj as Record<string, unknown>;
    if (o.type !== 'char') fail(`type must be 'char', got ${JSON.stringify(o.type)}`);
    if (o.version !== 1) fail(`version must be 1, got ${JSON.stringify(o.version)}`);
    const strings = (field: string): string[] => {
      const v = o[field];
      if (!Array.isArray(v) || !v.every((s) => typeof s === 'string'))
        return fail(`${field} must be an array of strings`);
      return v as string[];
    };
    return new Tokenizer(strings('specials'), strings('chars'));
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new Error(
        `Tokenizer: token id ${id} is out of range for vocab size ${this.vocabSize} (expected an integer in ` +
          `0..${this.vocabSize - 1})`,
      );
    }
  }
}

/** Specials first (<pad> = 0, <unk> = 1, <eos> = 2, then the tags), then newline and space..tilde: 107 ids. */
export function defaultTokenizer(): Tokenizer {
  return new Tokenizer();
}
