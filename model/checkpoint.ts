// Model checkpoints: every GPT parameter in one safetensors file, the config (and optionally the
// tokenizer and run details) in its __metadata__. Loading checks names, shapes and dtypes against the config.

import * as E from '../engine/index.js';
import { GPT, checkConfig, parameterLayout, type GPTConfig } from './gpt.js';
import { loadSafetensors, saveSafetensors, type SafeTensor } from './safetensors.js';
import { Tokenizer } from './tokenizer.js';

/**
 * Writes the model atomically (temporary file, fsync, rename). `extra` tensors ride along under names of
 * their own (a training run's optimizer state, say); loadCheckpoint returns them when asked by prefix.
 */
export async function saveCheckpoint(
  path: string,
  model: GPT,
  opts: { tokenizer?: Tokenizer; metadata?: Record<string, string>; extra?: Record<string, SafeTensor> } = {},
): Promise<void> {
  if (opts.tokenizer && opts.tokenizer.vocabSize !== model.cfg.vocabSize)
    throw new Error(
      `saveCheckpoint ${path}: the tokenizer has ${opts.tokenizer.vocabSize} tokens, the model's vocabSize is ` +
        `${model.cfg.vocabSize}`,
    );
  const tensors: Record<string, SafeTensor> = {};
  for (const [name, t] of model.params) tensors[name] = { dtype: t.dtype, shape: [...t.shape], data: await t.data() };
  for (const [name, t] of Object.entries(opts.extra ?? {})) {
    if (name in tensors) throw new Error(`saveCheckpoint: extra tensor '${name}' has a parameter's name`);
    tensors[name] = t;
  }
  const metadata: Record<string, string> = {
    ...opts.metadata,
    format: 'igpo-ts/gpt',
    config: JSON.stringify(checkConfig(model.cfg)), // the schema's key order, whoever built the config
  };
  if (opts.tokenizer) metadata.tokenizer = JSON.stringify(opts.tokenizer.toJSON());
  await saveSafetensors(path, tensors, metadata);
}

export interface LoadedCheckpoint {
  model: GPT;
  tokenizer?: Tokenizer;
  metadata: Record<string, string>;
  /** The tensors whose names start with opts.extra, when asked for. */
  extra: Record<string, SafeTensor>;
}

/**
 * Reads a checkpoint and rebuilds the model on `device`. Everything is checked before anything is built:
 * the config (every field bounded, gptConfigSchema), every parameter the config implies (present, its
 * shape, one float dtype) against the file's tensors, nothing unknown beside them (tensors whose names
 * start with `opts.extra` are returned as they are), every value finite (unless `allowNonFinite`), and
 * the tokenizer (its vocabulary the model's). Errors name the file and the field; a load that fails
 * leaves nothing allocated. The file's own checksum, when it has one, was verified by its parse.
 */
export async function loadCheckpoint(
  path: string,
  opts: { device?: E.Device; extra?: string; allowNonFinite?: boolean } = {},
): Promise<LoadedCheckpoint> {
  const all = await loadSafetensors(path);
  const { metadata } = all;
  const extra: Record<string, SafeTensor> = {};
  const tensors: Record<string, SafeTensor> = {};
  for (const [name, t] of Object.entries(all.tensors))
    (opts.extra !== undefined && name.startsWith(opts.extra) ? extra : tensors)[name] = t;
  const fail = (msg: string): never => {
    throw new Error(`checkpoint ${path}: ${msg}`);
  };
  if (metadata.format !== 'igpo-ts/gpt' || !metadata.config)
    fail(`__metadata__ has no igpo-ts/gpt config (format: ${metadata.format ?? 'none'})`);
  let raw: unknown;
  try {
    raw = JSON.parse(metadata.config);
  } catch (e) {
    return fail(`__metadata__.config is not JSON: ${(e as Error).message}`);
  }
  let cfg: GPTConfig;
  try {
    cfg = checkConfig(raw);
  } catch (e) {
    return fail(`__metadata__.config: ${(e as Error).message.replace(/^GPTConfig: /, '')}`);
  }
  const layout = parameterLayout(cfg);
  const dtypes = new Set(layout.map(([name]) => tensors[name]?.dtype).filter(Boolean));
  if (dtypes.size > 1 || !(dtypes.has('float32') || dtypes.has('float64')))
    fail(`parameters must all be float32 or all float64, found ${[...dtypes].join(', ') || 'none'}`);
  const dtype = [...dtypes][0] as 'float32' | 'float64';
  const names = new Set(Object.keys(tensors));
  for (const [name, shape] of layout) {
    const t = tensors[name];
    if (!t) fail(`parameter '${name}' is missing`);
    if (!E.sameShape(t.shape, shape))
      fail(`parameter '${name}' has shape ${E.fmt(t.shape)}, the config implies ${E.fmt(shape)}`);
    if (!opts.allowNonFinite) {
      const bad = t.data.findIndex((x) => !Number.isFinite(x));
      if (bad >= 0) fail(`parameter '${name}' holds a non-finite value (${t.data[bad]} at element ${bad})`);
    }
    names.delete(name);
  }
  if (names.size > 0) fail(`unexpected tensors: ${[...names].join(', ')}`);
  let tokenizer: Tokenizer | undefined;
  if (metadata.tokenizer !== undefined) {
    try {
      tokenizer = Tokenizer.fromJSON(metadata.tokenizer);
    } catch (e) {
      return fail(`__metadata__.tokenizer: ${(e as Error).message.replace(/^Tokenizer(\.fromJSON)?: /, '')}`);
    }
    if (tokenizer.vocabSize !== cfg.vocabSize)
      fail(`__metadata__.tokenizer has ${tokenizer.vocabSize} tokens, the config's vocabSize is ${cfg.vocabSize}`);
  }
  const model = new GPT(cfg, { device: opts.device, dtype });
  try {
    for (const [name, p] of model.params) {
      const src = E.tensor(tensors[name].data, tensors[name].shape, { device: opts.device, dtype });
      p.assign(src);
      src.dispose();
    }
  } catch (e) {
    model.dispose();
    throw e;
  }
  return { model, tokenizer, metadata, extra };
}
