// The character tokenizer: round trips over its alphabet (tags included), one token per tag, unknown
// characters reported as <unk>, range-checked decoding, and the JSON form a checkpoint stores.

import { fc, test } from '@fast-check/vitest';
import { describe, expect, it } from 'vitest';
import { ALPHABET, TAGS, Tokenizer, defaultTokenizer } from '../model/tokenizer.js';

const tok = defaultTokenizer();
const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Strings over the alphabet with tags mixed in, so tags appear whole, split and next to '<'. */
const pieces = fc.oneof(
  fc.constantFrom(...ALPHABET),
  fc.constantFrom(...TAGS),
  fc.constantFrom('<', '</', '<eos>', '<pad>', '<unk>'),
);
const agentText = fc.array(pieces, { maxLength: 60 }).map((p) => p.join(''));

describe('Tokenizer', () => {
  it('vocabulary: 11 specials + 96 characters, named ids distinct', () => {
    expect(tok.vocabSize).toBe(107);
    const named = [
      tok.pad,
      tok.unk,
      tok.eos,
      tok.think,
      tok.thinkEnd,
      tok.search,
      tok.searchEnd,
      tok.info,
      tok.infoEnd,
      tok.answer,
      tok.answerEnd,
    ];
    expect(new Set(named).size).toBe(11);
    expect(tok.id('<eos>')).toBe(tok.eos);
    expect(tok.id('</answer>')).toBe(tok.answerEnd);
    expect(tok.id('a')).toBeGreaterThanOrEqual(11);
    expect(() => tok.id('<tool>')).toThrow(/no token "<tool>"/);
  });

  test.prop([agentText])('decode(encode(s)) == s over the alphabet, tags included', (s) => {
    const { ids, unknown } = tok.encodeWithReport(s);
    expect(unknown).toEqual([]);
    expect(tok.decode(ids)).toBe(s);
  });

  test.prop([agentText])('encoding is canonical: encode(decode(encode(s))) == encode(s)', (s) => {
    const ids = tok.encode(s);
    expect(tok.encode(tok.decode(ids))).toEqual(ids);
  });

  test.prop([fc.constantFrom(...TAGS), agentText, agentText])(
    'every tag is exactly one token, wherever it appears',
    (tag, a, b) => {
      expect(tok.encode(tag)).toEqual([tok.id(tag)]);
      // '<' occurs only at a tag's start, so no match can straddle the tag: the pieces encode independently.
      expect(tok.encode(a + tag + b)).toEqual([...tok.encode(a), tok.id(tag), ...tok.encode(b)]);
    },
  );

  it('control tokens are not parsed from text; a partial tag is plain characters', () => {
    expect(tok.encode('<eos>')).toHaveLength(5);
    expect(tok.encode('<answer')).toHaveLength(7);
    expect(tok.encode('<<answer>>')).toEqual([tok.id('<'), tok.answer, tok.id('>')]);
  });

  test.prop([agentText, fc.constantFrom('é', '😀', '\t', '\r', '中', '\u0000'), agentText])(
    'an unknown character becomes one <unk>, is reported, and decodes to the unk marker',
    (a, bad, b) => {
      const t = defaultTokenizer();
      const { ids, unknown } = t.encodeWithReport(a + bad + b);
      expect(unknown).toEqual([bad]);
      expect(ids.filter((id) => id === t.unk)).toHaveLength(1);
      expect(t.unknownCounts.get(bad)).toBe(1);
      expect(t.decode(ids)).toBe(a + '<unk>' + b);
      expect(t.decode(ids, { unk: '\uFFFD' })).toBe(a + '\uFFFD' + b);
    },
  );

  it('unknownCounts accumulates across calls', () => {
    const t = defaultTokenizer();
    t.encode('café 😀😀');
    t.encode('é');
    expect(Object.fromEntries(t.unknownCounts)).toEqual({ é: 2, '😀': 2 });
  });

  it('<eos> and <pad> render as empty text by default, or as configured', () => {
    const ids = [tok.think, tok.id('h'), tok.id('i'), tok.thinkEnd, tok.eos, tok.pad, tok.pad];
    expect(tok.decode(ids)).toBe('<think>hi</think>');
    expect(tok.decode(ids, { eos: '<eos>', pad: '_' })).toBe('<think>hi</think><eos>__');
  });

  test.prop([fc.oneof(fc.integer({ min: 107 }), fc.integer({ max: -1 }), fc.double({ noInteger: true }))])(
    'decoding an out-of-range or non-integer id throws, naming the id and the vocab size',
    (id) => {
      expect(() => tok.decode([tok.eos, id])).toThrow(
        new RegExp(`token id ${escapeRegExp(String(id))} is out of range for vocab size 107`),
      );
    },
  );

  it('JSON round trip keeps every id; bad JSON is refused with the field named', () => {
    const back = Tokenizer.fromJSON(JSON.stringify(tok));
    expect(back.toJSON()).toEqual(tok.toJSON());
    const s = '<search>capital of Veroa</search>\n<info>Veroa is in Lomb.</info>';
    expect(back.encode(s)).toEqual(tok.encode(s));
    expect(() => Tokenizer.fromJSON({ ...tok.toJSON(), type: 'bpe' })).toThrow(/type must be 'char'/);
    expect(() => Tokenizer.fromJSON({ ...tok.toJSON(), chars: [1, 2] })).toThrow(/chars must be an array of strings/);
    expect(() => Tokenizer.fromJSON({ ...tok.toJSON(), specials: ['<pad>'] })).toThrow(
      /special token '<unk>' is missing/,
    );
    expect(() => Tokenizer.fromJSON({ ...tok.toJSON(), chars: ['a', 'a'] })).toThrow(/"a" appears twice/);
    expect(() => Tokenizer.fromJSON({ ...tok.toJSON(), chars: ['ab'] })).toThrow(/not a single character/);
  });
});
