// A Hugging Face model directory's tokenizer (tokenizer.json, with tokenizer_config.json and config.json for
// the eos and pad ids), read offline through @huggingface/tokenizers (pure JS: BPE, WordPiece, Unigram).
// Not a chat template and not a BOS policy: encode adds no special tokens, and turn layout is the caller's.

import { Tokenizer as HFLibTokenizer } from '@huggingface/tokenizers';
import { existsSync } from 'node:fs';
import { copyFile, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { TextTokenizer } from '../lm.js';

/**
 * The part of @huggingface/tokenizers' Tokenizer used here. Its typings import their siblings without file
 * extensions, which NodeNext resolution cannot follow, so they arrive as `any`: this restores the types.
 */
interface LibTokenizer {
  encode(text: string, opts: { add_special_tokens: boolean }): { ids: number[]; tokens: string[] };
  decode(ids: number[], opts: { skip_special_tokens: boolean; clean_up_tokenization_spaces: boolean }): string;
  token_to_id(token: string): number | undefined;
  id_to_token(id: number): string | undefined;
  /** Token to id over ids 0 .. the largest; with true, the added tokens too. */
  get_vocab(withAddedTokens: boolean): Map<string, number>;
}
const Tokenizer = HFLibTokenizer as new (tokenizerJson: object, tokenizerConfig: object) => LibTokenizer;

export interface HFDecodeOptions {
  /**
   * Drop special tokens (eos, pad, bos and the other tokens tokenizer.json marks special) from the text;
   * false by default, so each renders as its content ('</s>', '<|endoftext|>').
   */
  skipSpecialTokens?: boolean;
}

/** What a directory's JSON files say about one special token: its id, and the file that said it. */
interface Found {
  id: number;
  from: string;
}

type JSONObject = Record<string, unknown>;

/** The tokenizer_config.json fields that name a token, as strings or as {content} (AddedToken) objects. */
const TOKEN_FIELDS = ['bos_token', 'eos_token', 'unk_token', 'pad_token', 'sep_token', 'cls_token', 'mask_token'];

/**
 * A tokenizer.json tokenizer. encode never adds special tokens (no BOS, no EOS: the caller decides); text that
 * spells an added token ('</s>', '<|im_end|>') still encodes to that token, as in Hugging Face's own
 * tokenizers. decode keeps special tokens unless asked (see HFDecodeOptions) and never "cleans up" spaces,
 * so decode(encode(s)) === s for text without added-token spellings.
 */
export class HFTokenizer implements TextTokenizer {
  /** Ids 0 .. vocabSize - 1: the model's vocabulary and the added tokens (one past the largest id). */
  readonly vocabSize: number;
  /** tokenizer_config.json's pad_token, else config.json's pad_token_id, else eos (Llama has no pad). */
  readonly pad: number;
  /** tokenizer_config.json's eos_token, else config.json's eos_token_id (the first when it is a list). */
  readonly eos: number;
  /** tokenizer_config.json's bos_token, else config.json's bos_token_id; undefined when neither gives one. */
  readonly bos: number | undefined;

  private constructor(
    private readonly tok: LibTokenizer,
    ids: { vocabSize: number; eos: number; pad: number; bos: number | undefined },
  ) {
    this.vocabSize = ids.vocabSize;
    this.eos = ids.eos;
    this.pad = ids.pad;
    this.bos = ids.bos;
  }

  /**
   * Reads DIR/tokenizer.json (required), DIR/tokenizer_config.json (optional) and, when the latter does not
   * name eos, pad or bos, DIR/config.json (optional). No eos in either file is an error naming both.
   */
  static async fromDir(dir: string): Promise<HFTokenizer> {
    const tokFile = join(dir, 'tokenizer.json');
    const cfgFile = join(dir, 'tokenizer_config.json');
    const modelFile = join(dir, 'config.json');

    const tokJson = await readJSONObject(tokFile, true);
    const cfgJson = await readJSONObject(cfgFile, false);
    const tokenizerConfig: JSONObject = { ...cfgJson };
    for (const field of TOKEN_FIELDS) {
      const name = tokenName(tokenizerConfig, field, cfgFile);
      if (name === undefined) delete tokenizerConfig[field];
      else tokenizerConfig[field] = name;
    }

    let tok: LibTokenizer;
    try {
      tok = new Tokenizer(tokJson, tokenizerConfig);
    } catch (e) {
      throw new Error(`${tokFile}: @huggingface/tokenizers cannot load it (${(e as Error).message})`, { cause: e });
    }
    let maxId = -1;
    for (const id of tok.get_vocab(true).values()) if (id > maxId) maxId = id;
    const vocabSize = maxId + 1;
    if (vocabSize === 0) throw new Error(`${tokFile}: the vocabulary is empty`);

    const fromTokenizerConfig = (field: string): Found | undefined => {
      const name = tokenizerConfig[field] as string | undefined;
      if (name === undefined) return undefined;
      const id = tok.token_to_id(name);
      if (id === undefined)
        throw new Error(`${cfgFile}: ${field} ${JSON.stringify(name)} is not a token of ${tokFile}`);
      return { id, from: cfgFile };
    };
    let modelConfig: JSONObject | null | undefined; // undefined: not read yet; null: no config.json
    const fromModelConfig = async (field: string): Promise<Found | undefined> => {
      if (modelConfig === undefined) modelConfig = await readJSONObject(modelFile, false);
      if (modelConfig === null) return undefined;
      const v = modelConfig[field];
      if (v === undefined || v === null) return undefined;
      const id = Array.isArray(v) ? v[0] : v;
      if (!Number.isInteger(id) || (id as number) < 0 || (Array.isArray(v) && v.length === 0))
        throw new Error(`${modelFile}: ${field} must be a token id or a non-empty list of them, got ${str(v)}`);
      if ((id as number) >= vocabSize)
        throw new Error(`${modelFile}: ${field} ${id} is outside ${tokFile}'s ${vocabSize} ids`);
      return { id: id as number, from: modelFile };
    };
    const find = async (token: string, idField: string) =>
      fromTokenizerConfig(token) ?? (await fromModelConfig(idField));

    const eos = await find('eos_token', 'eos_token_id');
    if (eos === undefined) {
      throw new Error(
        `${dir}: no eos token: ${cfgJson === null ? `no ${cfgFile}` : `${cfgFile} has no eos_token`} and ` +
          `${modelConfig === null ? `no ${modelFile}` : `${modelFile} has no eos_token_id`}`,
      );
    }
    const pad = (await find('pad_token', 'pad_token_id')) ?? eos;
    const bos = await find('bos_token', 'bos_token_id');
    return new HFTokenizer(tok, { vocabSize, eos: eos.id, pad: pad.id, bos: bos?.id });
  }

  /** The text's ids, with no special tokens added (BOS and EOS are the caller's). */
  encode(text: string): number[] {
    const { ids, tokens } = this.tok.encode(text, { add_special_tokens: false });
    const i = ids.findIndex((id) => id === undefined);
    if (i >= 0) {
      throw new Error(
        `HFTokenizer.encode: piece ${JSON.stringify(tokens[i])} has no id and the tokenizer has no unk token`,
      );
    }
    return ids;
  }

  /** The ids' text, special tokens as their content unless skipped; spaces are never cleaned up. Bad ids throw. */
  decode(ids: Iterable<number>, opts: HFDecodeOptions = {}): string {
    const list = [...ids];
    for (const id of list) {
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new Error(
          `HFTokenizer: token id ${id} is out of range for vocab size ${this.vocabSize} (expected an integer in ` +
            `0..${this.vocabSize - 1})`,
        );
      }
    }
    if (list.length === 0) return ''; // the library refuses an empty list
    return this.tok.decode(list, {
      skip_special_tokens: opts.skipSpecialTokens ?? false,
      clean_up_tokenization_spaces: false,
    });
  }

  /** The id of one token spelled as the vocabulary spells it ('</s>', '▁Paris', 'ĠParis'), or undefined. */
  tokenId(text: string): number | undefined {
    return this.tok.token_to_id(text);
  }

  /** The vocabulary's spelling of one id, or undefined when the id is out of range or unused. */
  token(id: number): string | undefined {
    return this.tok.id_to_token(id) ?? undefined;
  }
}

const str = (v: unknown) => JSON.stringify(v) ?? String(v);

/** A JSON object from a file; a missing optional file is null, anything else wrong a one-line error. */
async function readJSONObject(file: string, required: true): Promise<JSONObject>;
async function readJSONObject(file: string, required: false): Promise<JSONObject | null>;
async function readJSONObject(file: string, required: boolean): Promise<JSONObject | null> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (!required && code === 'ENOENT') return null;
    throw new Error(`${file}: cannot read (${code ?? String(e)})`, { cause: e });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new Error(`${file}: not JSON (${(e as Error).message})`, { cause: e });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new Error(`${file}: expected a JSON object at the top level`);
  return json as JSONObject;
}

/** A tokenizer_config.json token field: a string, a {content} object, or absent (null and missing alike). */
function tokenName(config: JSONObject, field: string, file: string): string | undefined {
  const v = config[field];
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && !Array.isArray(v) && typeof (v as JSONObject).content === 'string')
    return (v as JSONObject).content as string;
  throw new Error(`${file}: ${field} must be a string or an object with a string "content", got ${str(v)}`);
}

/** The tokenizer's files a model directory may hold, copied beside a saved model so that it loads as one. */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'generation_config.json',
];

/** Copies those of TOKENIZER_FILES that `from` holds into `to` (each atomically: a temporary, then a rename). */
export async function copyTokenizerFiles(from: string, to: string): Promise<void> {
  for (const f of TOKENIZER_FILES) {
    const src = join(from, f);
    if (!existsSync(src)) continue;
    const tmp = join(to, `.${f}.${process.pid}.tmp`);
    await copyFile(src, tmp);
    await rename(tmp, join(to, f));
  }
}
