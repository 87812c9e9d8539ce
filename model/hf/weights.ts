// A Hugging Face Llama/Qwen2 model directory's weights, offline: model.safetensors, or the shards that
// model.safetensors.index.json lists. Every tensor the config implies (hfParameterLayout) must be there with
// its shape, and nothing else (but a tied model's lm_head.weight and rotary inv_freq caches, which are
// ignored); F16, BF16, F32 and F64 are read, as float32 or float64. Errors name the file and the tensor.
// Not the config (config.ts), not the tokenizer, and not the mapping onto the decoder's parameters.

import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { z } from 'zod';
import { loadSafetensorsEach, readSafetensorsHeader, saveSafetensors, type SafeTensor } from '../safetensors.js';
import { hfConfigJson, hfParameterLayout, type HFConfig } from './config.js';

/** One weight: contiguous, row-major ([out, in] for a linear layer's weight, as torch stores it). */
export interface HFTensor {
  shape: number[];
  data: Float32Array | Float64Array;
}

/** The single-file checkpoint's name. */
export const HF_WEIGHTS_FILE = 'model.safetensors';
/** The sharded checkpoint's index: which shard file holds each tensor. */
export const HF_INDEX_FILE = 'model.safetensors.index.json';

/** The file dtypes a weight may have. */
const FLOAT_CODES = ['F32', 'F16', 'BF16', 'F64'];

/** Rotary caches some older checkpoints saved: recomputed from the config, so ignored. */
const ROTARY_CACHE = /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/;

/** One file to read, and the tensors it must hold (from the index; every tensor for a single file). */
interface Source {
  file: string;
  names: Set<string>;
  /** The index that assigned `names` to this file, and its weight_map, when sharded. */
  index?: { file: string; weightMap: Record<string, string> };
}

/**
 * Reads the weights of the model directory `dir` for `cfg`: DIR/model.safetensors, or, when that is
 * absent, the shards DIR/model.safetensors.index.json names. Every header is checked (names, dtypes,
 * shapes against hfParameterLayout(cfg)) before any data is read; then the files are read one at a time,
 * tensor by tensor, each converted to `opts.dtype` (float32 by default; F64 data is then rounded) as it
 * is read, so memory beyond the result is one tensor's file bytes. Errors name the file and the tensor.
 */
export async function readHFWeights(
  dir: string,
  cfg: HFConfig,
  opts: { dtype?: 'float32' | 'float64' } = {},
): Promise<Map<string, HFTensor>> {
  const out = new Map<string, HFTensor>();
  await eachHFWeight(dir, cfg, (name, t) => void out.set(name, t), opts);
  return out;
}

/**
 * readHFWeights without the result: each tensor goes to `each` as it is read and is not kept here, so a
 * caller that moves it into the engine holds one tensor's host copy at a time. A failure may come after
 * some tensors went to `each` (a file changed while reading, a checksum at its end).
 */
export async function eachHFWeight(
  dir: string,
  cfg: HFConfig,
  each: (name: string, t: HFTensor) => void,
  opts: { dtype?: 'float32' | 'float64' } = {},
): Promise<void> {
  const layout = new Map(hfParameterLayout(cfg));
  const ignored = (name: string) => (cfg.tieWordEmbeddings && name === 'lm_head.weight') || ROTARY_CACHE.test(name);
  const sources = await weightSources(dir, layout, ignored);
  for (const src of sources) await checkHeader(src, layout, ignored);
  const seen = new Set<string>();
  for (const src of sources) {
    await loadSafetensorsEach(
      src.file,
      (name, t) => {
        // The headers were checked; this catches a file that changed since.
        const want = layout.get(name);
        const { shape, data } = t;
        if (!want || !src.names.has(name) || !sameShape(shape, want) || data instanceof Int32Array)
          fail(src.file, `tensor '${name}' is not what the header said (the file changed while reading?)`);
        seen.add(name);
        each(name, { shape, data: data as Float32Array | Float64Array });
      },
      { floatAs: opts.dtype ?? 'float32', skip: ignored },
    );
  }
  for (const name of layout.keys())
    if (!seen.has(name)) throw new Error(`${dir}: missing tensor '${name}' (a file changed while reading?)`);
}

/** The files to read: model.safetensors when present, else the shards of the index. */
async function weightSources(
  dir: string,
  layout: Map<string, number[]>,
  ignored: (name: string) => boolean,
): Promise<Source[]> {
  const single = join(dir, HF_WEIGHTS_FILE);
  if (await isFile(single)) return [{ file: single, names: new Set(layout.keys()) }];
  const index = join(dir, HF_INDEX_FILE);
  if (!(await isFile(index))) throw new Error(`${dir}: neither ${HF_WEIGHTS_FILE} nor ${HF_INDEX_FILE} is there`);
  const weightMap = await readIndex(index);
  for (const name of layout.keys()) if (!Object.hasOwn(weightMap, name)) fail(index, `missing tensor '${name}'`);
  const byShard = new Map<string, Source>();
  for (const [name, shard] of Object.entries(weightMap)) {
    if (ignored(name)) continue;
    if (!layout.has(name)) fail(index, `weight_map: unknown tensor '${name}' (not in config.json's layout)`);
    let src = byShard.get(shard);
    if (!src) {
      src = { file: join(dir, shard), names: new Set(), index: { file: index, weightMap } };
      if (!(await isFile(src.file)))
        fail(index, `weight_map['${name}']: shard '${shard}' does not exist in ${dir} (or is not a file)`);
      byShard.set(shard, src);
    }
    src.names.add(name);
  }
  return [...byShard.values()].sort((a, b) => (a.file < b.file ? -1 : a.file > b.file ? 1 : 0)); // shard order
}

/** A shard's name must stay inside the model directory: a plain file name. */
function isPlainFileName(s: string): boolean {
  return s.length > 0 && s !== '.' && s !== '..' && !/[/\\\0]/.test(s);
}

const indexSchema = z.looseObject({
  metadata: z.record(z.string(), z.unknown(), { error: 'must be an object' }).optional(),
  weight_map: z.record(
    z.string(),
    z.string({ error: 'must be a shard file name (a string)' }).refine(isPlainFileName, {
      error: (iss) =>
        `shard ${JSON.stringify(iss.input)} must be a plain file name in the model directory ` +
        `(no path separator, not '.' or '..')`,
    }),
    { error: 'must be an object of tensor name -> shard file name' },
  ),
});

/** Reads and checks the index; returns its weight_map. */
async function readIndex(file: string): Promise<Record<string, string>> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    fail(file, `cannot read as JSON (${(e as Error).message})`);
  }
  const r = indexSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    fail(file, `${fieldPath(issue.path) || '(top level)'}: ${issue.message}`);
  }
  return r.data.weight_map;
}

/** weight_map['model.norm.weight'] rather than weight_map.model.norm.weight (names have dots). */
function fieldPath(path: readonly PropertyKey[]): string {
  return path.map((p, i) => (i === 0 ? String(p) : `['${String(p)}']`)).join('');
}

/** One file's header against the layout and what the index says the file holds. */
async function checkHeader(src: Source, layout: Map<string, number[]>, ignored: (name: string) => boolean) {
  const header = await readSafetensorsHeader(src.file);
  const seen = new Set<string>();
  for (const t of header.tensors) {
    if (ignored(t.name)) continue;
    if (!layout.has(t.name)) fail(src.file, `unknown tensor '${t.name}' (not in config.json's layout)`);
    if (!src.names.has(t.name))
      fail(src.file, `tensor '${t.name}' is here, but ${src.index!.file} puts it in '${src.index!.weightMap[t.name]}'`);
    checkTensor(src.file, t.name, t.shape, layout.get(t.name)!, t.code);
    seen.add(t.name);
  }
  for (const name of src.names)
    if (!seen.has(name))
      fail(src.file, `missing tensor '${name}'${src.index ? ` (${src.index.file} puts it here)` : ''}`);
}

function checkTensor(file: string, name: string, shape: readonly number[], want: readonly number[], code: string) {
  if (!FLOAT_CODES.includes(code))
    fail(file, `tensor '${name}': dtype ${code}, expected a float dtype (${FLOAT_CODES.join(', ')})`);
  if (!sameShape(shape, want))
    fail(file, `tensor '${name}': shape ${JSON.stringify(shape)}, expected ${JSON.stringify(want)} (from config.json)`);
}

/**
 * Writes `tensors` as the model directory `dir` (made when missing): DIR/model.safetensors (F32, float64
 * data rounded to float32, as HF checkpoints hold no F64; `{"format": "pt"}` metadata) and DIR/config.json
 * (hfConfigJson(cfg)), each atomically, the weights first. The tensors must match hfParameterLayout(cfg)
 * exactly; nothing is written otherwise. Float64 data are rounded one tensor at a time as they are
 * written (no float32 copy of the whole model). An index or shards already in `dir` are left as they are
 * (readers take model.safetensors first).
 */
export async function writeHFWeights(dir: string, cfg: HFConfig, tensors: Map<string, HFTensor>): Promise<void> {
  const file = join(dir, HF_WEIGHTS_FILE);
  const layout = hfParameterLayout(cfg);
  const known = new Set(layout.map(([name]) => name));
  for (const name of tensors.keys())
    if (!known.has(name)) fail(file, `unknown tensor '${name}' (not in the layout of this config)`);
  const record: Record<string, SafeTensor> = {};
  for (const [name, want] of layout) {
    const t = tensors.get(name);
    if (!t) return fail(file, `missing tensor '${name}'`);
    if (!sameShape(t.shape, want))
      fail(
        file,
        `tensor '${name}': shape ${JSON.stringify(t.shape)}, expected ${JSON.stringify(want)} (from the config)`,
      );
    if (!(t.data instanceof Float32Array || t.data instanceof Float64Array))
      fail(file, `tensor '${name}': data is ${describeData(t.data)}, expected a Float32Array or Float64Array`);
    if (t.data.length !== numel(want))
      fail(file, `tensor '${name}': ${t.data.length} values do not fill shape ${JSON.stringify(want)}`);
    record[name] = asFloat32(t.data, [...want]);
  }
  await mkdir(dir, { recursive: true });
  await saveSafetensors(file, record, { format: 'pt' });
  await writeFileAtomic(join(dir, 'config.json'), JSON.stringify(hfConfigJson(cfg), null, 2) + '\n');
}

/** A float32 tensor; float64 data are rounded when the writer asks for them (it may ask more than once). */
function asFloat32(data: Float32Array | Float64Array, shape: number[]): SafeTensor {
  if (data instanceof Float32Array) return { dtype: 'float32', shape, data };
  return {
    dtype: 'float32',
    shape,
    get data() {
      return new Float32Array(data);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Helpers

function fail(file: string, why: string): never {
  throw new Error(`${file}: ${why}`);
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw new Error(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`, { cause: e });
  }
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return Array.isArray(a) && a.length === b.length && a.every((d, i) => d === b[i]);
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function describeData(d: unknown): string {
  return (d as object | undefined)?.constructor?.name ?? typeof d;
}
