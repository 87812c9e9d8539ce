// Model checkpoints: every GPT parameter in one safetensors file, the config (and optionally the
// tokenizer and run details) in its __metadata__. Loading checks names, shapes and dtypes against the config.

import * as E from '../engine/index.js';
import { GPT, checkConfig, type GPTConfig } from './gpt.js';
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
  const tensors: Record<string, SafeTensor> = {};
  for (const [name, t] of model.params) tensors[name] = { dtype: t.dtype, shape: [...t.shape], data: await t.data() };
  for (const [name, t] of Object.entries(opts.extra ?? {})) {
    if (name in tensors) throw new Error(`saveCheckpoint: extra tensor '${name}' has a parameter's name`);
    tensors[name] = t;
  }
  const metadata: Record<string, string> = {
    ...opts.metadata,
    format: 'igpo-ts/gpt',
    config: JSON.stringify(model.cfg),
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
 * Reads a checkpoint and rebuilds the model on `device`, rejecting a file that does not match its config.
 * Tensors whose names start with `opts.extra` are returned as they are; any other unknown tensor is refused.
 */
export async function loadCheckpoint(
  path: string,
  opts: { device?: E.Device; extra?: string } = {},
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
  let cfg: GPTConfig;
  try {
    cfg = JSON.parse(metadata.config) as GPTConfig;
    checkConfig(cfg);
  } catch (e) {
    return fail(`__metadata__.config is invalid: ${(e as Error).message}`);
  }
  const dtypes = new Set(Object.values(tensors).map((t) => t.dtype));
  if (dtypes.size !== 1 || !(dtypes.has('float32') || dtypes.has('float64')))
    fail(`parameters must all be float32 or all float64, found ${[...dtypes].join(', ')}`);
  const dtype = [...dtypes][0] as 'float32' | 'float64';
  const model = new GPT(cfg, { device: opts.device, dtype });
  const names = new Set(Object.keys(tensors));
  for (const [name, p] of model.params) {
    const t = tensors[name];
    if (!t) fail(`parameter '${name}' is missing`);
    if (!E.sameShape(t.shape, p.shape))
      fail(`parameter '${name}' has shape ${E.fmt(t.shape)}, the config implies ${E.fmt(p.shape)}`);
    const src = E.tensor(t.data, t.shape, { device: opts.device, dtype });
    p.assign(src);
    src.dispose();
    names.delete(name);
  }
  if (names.size > 0) fail(`unexpected tensors: ${[...names].join(', ')}`);
  const tokenizer = metadata.tokenizer ? Tokenizer.fromJSON(metadata.tokenizer) : undefined;
  return { model, tokenizer, metadata, extra };
}
