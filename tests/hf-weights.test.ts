// model/hf/weights.ts: a Llama (grouped-query attention, tied head) and a Qwen2 (q/k/v biases, separate
// head) written as a model directory and read back at float32 and float64; hand-made BF16 and F16 files
// converted exactly; a sharded checkpoint read equal to the single file; and every refusal naming the
// file and the tensor or the index field.

import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hfConfigJson, hfParameterLayout, parseHFConfig, readHFConfig, type HFConfig } from '../model/hf/config.js';
import { HF_INDEX_FILE, HF_WEIGHTS_FILE, readHFWeights, writeHFWeights, type HFTensor } from '../model/hf/weights.js';
import { readSafetensorsHeader, saveSafetensors, type SafeTensor } from '../model/safetensors.js';
import { rng } from './helpers/rng.js';
import { useTempDirs } from './helpers/tempdir.js';

const tempDir = useTempDirs();

const LLAMA: HFConfig = parseHFConfig({
  model_type: 'llama',
  vocab_size: 11,
  hidden_size: 16,
  intermediate_size: 24,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  tie_word_embeddings: true,
});

const QWEN2: HFConfig = parseHFConfig({
  model_type: 'qwen2',
  vocab_size: 13,
  hidden_size: 12,
  intermediate_size: 20,
  num_hidden_layers: 2,
  num_attention_heads: 3,
  num_key_value_heads: 1,
  tie_word_embeddings: false,
});

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Every tensor of the layout, random values in [-1, 1) from a fixed seed, as float32 or float64. */
function randomWeights(cfg: HFConfig, seed: number, dtype: 'float32' | 'float64' = 'float32') {
  const next = rng(seed);
  const out = new Map<string, HFTensor>();
  for (const [name, shape] of hfParameterLayout(cfg)) {
    const data = new (dtype === 'float32' ? Float32Array : Float64Array)(numel(shape));
    for (let i = 0; i < data.length; i++) data[i] = 2 * next() - 1;
    out.set(name, { shape, data });
  }
  return out;
}

/** The map as plain arrays of numbers, for comparisons that ignore the array class. */
const values = (m: Map<string, HFTensor>) =>
  Object.fromEntries([...m].map(([k, t]) => [k, { shape: t.shape, values: [...t.data] }]));

function expectClass(m: Map<string, HFTensor>, cls: typeof Float32Array | typeof Float64Array) {
  for (const [name, t] of m) expect(t.data, name).toBeInstanceOf(cls);
}

/** Writes these tensors as DIR/FILE with the plain safetensors writer (any names and shapes). */
async function saveRaw(dir: string, file: string, tensors: Map<string, HFTensor>) {
  const record: Record<string, SafeTensor> = {};
  for (const [name, t] of tensors) record[name] = { dtype: 'float32', shape: t.shape, data: Float32Array.from(t.data) };
  await saveSafetensors(join(dir, file), record);
}

/**
 * A safetensors file built by hand: the header JSON (unpadded, in the given order) and each tensor's
 * raw little-endian 16-bit patterns (BF16 or F16), as another writer would lay them out.
 */
function raw16(tensors: [name: string, code: 'BF16' | 'F16', shape: number[], bits: number[]][]): Uint8Array {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let at = 0;
  for (const [name, code, shape, bits] of tensors) {
    expect(bits.length).toBe(numel(shape));
    header[name] = { dtype: code, shape, data_offsets: [at, at + 2 * bits.length] };
    at += 2 * bits.length;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + at);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let p = 8 + json.length;
  for (const [, , , bits] of tensors) for (const b of bits) view.setUint16((p += 2) - 2, b, true);
  return out;
}

/** A checkpoint dir written by writeHFWeights from random weights. */
async function written(cfg: HFConfig, seed: number) {
  const dir = tempDir('hf-weights-');
  const weights = randomWeights(cfg, seed);
  await writeHFWeights(dir, cfg, weights);
  return { dir, weights, file: join(dir, HF_WEIGHTS_FILE) };
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ---------------------------------------------------------------------------------------------

describe('writeHFWeights / readHFWeights', () => {
  for (const [label, cfg] of [
    ['Llama, grouped-query attention, tied head', LLAMA],
    ['Qwen2, q/k/v biases, separate head', QWEN2],
  ] as const) {
    it(`${label}: float32 round trip, read at float32 and at float64, config.json beside`, async () => {
      const { dir, weights, file } = await written(cfg, 1);
      expect((await readdir(dir)).sort()).toEqual(['config.json', HF_WEIGHTS_FILE]);
      const back = await readHFWeights(dir, cfg);
      expectClass(back, Float32Array);
      expect(back).toEqual(weights); // same names, shapes and bytes
      const wide = await readHFWeights(dir, cfg, { dtype: 'float64' });
      expectClass(wide, Float64Array);
      expect(values(wide)).toEqual(values(weights));
      expect(JSON.parse(await readFile(join(dir, 'config.json'), 'utf8'))).toEqual(hfConfigJson(cfg));
      expect(await readHFConfig(dir)).toEqual(cfg);
      // a standard file: every tensor F32, the customary format metadata
      const header = await readSafetensorsHeader(file);
      expect(header.metadata).toEqual({ format: 'pt' });
      expect(new Set(header.tensors.map((t) => t.code))).toEqual(new Set(['F32']));
      expect(header.tensors.map((t) => t.name).sort()).toEqual(
        hfParameterLayout(cfg)
          .map(([n]) => n)
          .sort(),
      );
    });
  }

  it('float64 weights are written rounded to float32 (HF checkpoints hold no F64)', async () => {
    const dir = tempDir('hf-weights-f64-');
    const weights = randomWeights(QWEN2, 2, 'float64');
    await writeHFWeights(dir, QWEN2, weights);
    const rounded = new Map([...weights].map(([k, t]) => [k, { shape: t.shape, data: new Float32Array(t.data) }]));
    expect(await readHFWeights(dir, QWEN2)).toEqual(rounded);
    expect(values(await readHFWeights(dir, QWEN2, { dtype: 'float64' }))).toEqual(values(rounded));
  });

  it('a tied model may carry lm_head.weight, and any model rotary inv_freq caches: both ignored', async () => {
    const dir = tempDir('hf-weights-ignored-');
    const weights = randomWeights(LLAMA, 3);
    const extra = new Map(weights);
    extra.set('lm_head.weight', weights.get('model.embed_tokens.weight')!);
    extra.set('model.layers.1.self_attn.rotary_emb.inv_freq', { shape: [2], data: Float32Array.from([1, 0.01]) });
    await saveRaw(dir, HF_WEIGHTS_FILE, extra);
    expect(await readHFWeights(dir, LLAMA)).toEqual(weights);
    // untied, lm_head.weight is a weight like the others: without it the checkpoint is incomplete
    const q = tempDir('hf-weights-untied-');
    const qw = randomWeights(QWEN2, 3);
    qw.delete('lm_head.weight');
    qw.set('model.layers.0.self_attn.rotary_emb.inv_freq', { shape: [2], data: Float32Array.from([1, 0.01]) });
    await saveRaw(q, HF_WEIGHTS_FILE, qw);
    await expect(readHFWeights(q, QWEN2)).rejects.toThrow(
      `${join(q, HF_WEIGHTS_FILE)}: missing tensor 'lm_head.weight'`,
    );
  });
});

describe('BF16 and F16 checkpoints are converted exactly', () => {
  // bit pattern -> value, each known exactly
  const BF16: [number, number][] = [
    [0x3fc0, 1.5],
    [0xc000, -2],
    [0x3eab, 0.333984375],
    [0x8000, -0],
    [0x7f80, Infinity],
    [0x0001, 2 ** -133], // a subnormal
  ];
  const F16: [number, number][] = [
    [0x0001, 2 ** -24], // the smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // the largest subnormal
    [0x7bff, 65504], // the largest finite
    [0x8000, -0],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
    [0x3555, 0.333251953125],
    [0xc000, -2],
  ];

  for (const [code, table] of [
    ['BF16', BF16],
    ['F16', F16],
  ] as const) {
    it(`${code}: every weight of a Qwen2 checkpoint, read at float32 and float64`, async () => {
      const dir = tempDir(`hf-weights-${code}-`);
      let k = 0;
      const expected = new Map<string, number[]>();
      const tensors = hfParameterLayout(QWEN2).map(([name, shape]): [string, typeof code, number[], number[]] => {
        const picks = Array.from({ length: numel(shape) }, () => table[k++ % table.length]);
        expected.set(
          name,
          picks.map(([, v]) => v),
        );
        return [name, code, shape, picks.map(([b]) => b)];
      });
      await writeFile(join(dir, HF_WEIGHTS_FILE), raw16(tensors.reverse()));
      for (const dtype of ['float32', 'float64'] as const) {
        const back = await readHFWeights(dir, QWEN2, { dtype });
        expectClass(back, dtype === 'float32' ? Float32Array : Float64Array);
        expect([...back.keys()].sort()).toEqual([...expected.keys()].sort());
        for (const [name, want] of expected) {
          const got = back.get(name)!;
          expect(got.shape).toEqual(hfParameterLayout(QWEN2).find(([n]) => n === name)![1]);
          want.forEach((w, i) => {
            if (!Object.is(got.data[i], w)) expect(got.data[i], `${name}[${i}]`).toBe(w); // -0 vs 0 counts
          });
        }
      }
    });
  }
});

describe('sharded checkpoints (model.safetensors.index.json)', () => {
  /** The weights split over two shard files (their names in the map), and the index; no model.safetensors. */
  async function sharded(cfg: HFConfig, weights: Map<string, HFTensor>, mapOverride: Record<string, string> = {}) {
    const dir = tempDir('hf-weights-sharded-');
    const names = [...weights.keys()];
    const half = Math.ceil(names.length / 2);
    const shards = ['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'];
    const weightMap: Record<string, string> = {};
    for (const [i, part] of [names.slice(0, half), names.slice(half)].entries()) {
      await saveRaw(dir, shards[i], new Map(part.map((n) => [n, weights.get(n)!])));
      for (const n of part) weightMap[n] = shards[i];
    }
    const index = join(dir, HF_INDEX_FILE);
    const write = (m: unknown) => writeFile(index, JSON.stringify(m));
    await write({ metadata: { total_size: 1234 }, weight_map: { ...weightMap, ...mapOverride } });
    return { dir, index, shards, weightMap, write };
  }

  it('two shards read equal to the single file, at float32 and float64', async () => {
    const single = await written(LLAMA, 5);
    const { dir } = await sharded(LLAMA, single.weights);
    expect(await readdir(dir)).not.toContain(HF_WEIGHTS_FILE);
    expect(await readHFWeights(dir, LLAMA)).toEqual(await readHFWeights(single.dir, LLAMA));
    expect(await readHFWeights(dir, LLAMA, { dtype: 'float64' })).toEqual(
      await readHFWeights(single.dir, LLAMA, { dtype: 'float64' }),
    );
  });

  it('model.safetensors is preferred when both are there', async () => {
    const { dir, weights } = await written(QWEN2, 6);
    const other = randomWeights(QWEN2, 7);
    const s = await sharded(QWEN2, other);
    for (const f of await readdir(s.dir)) await writeFile(join(dir, f), await readFile(join(s.dir, f)));
    expect(await readHFWeights(dir, QWEN2)).toEqual(weights);
    expect(await readHFWeights(s.dir, QWEN2)).toEqual(other);
  });

  it('a shard name with a path is refused, naming the index and the field', async () => {
    const weights = randomWeights(LLAMA, 8);
    for (const bad of ['../model-00001-of-00002.safetensors', 'sub/x.safetensors', '..', '', 'a\\b']) {
      const { dir, index } = await sharded(LLAMA, weights, { 'model.norm.weight': bad });
      await expect(readHFWeights(dir, LLAMA), bad).rejects.toThrow(
        `${index}: weight_map['model.norm.weight']: shard ${JSON.stringify(bad)} must be a plain file name`,
      );
    }
  });

  it('an index naming a shard that does not exist is refused, naming the index and the field', async () => {
    const { dir, index } = await sharded(LLAMA, randomWeights(LLAMA, 9), {
      'model.norm.weight': 'model-00003-of-00002.safetensors',
    });
    await expect(readHFWeights(dir, LLAMA)).rejects.toThrow(
      `${index}: weight_map['model.norm.weight']: shard 'model-00003-of-00002.safetensors' does not exist in ${dir}`,
    );
  });

  it('a truncated shard is refused, naming the shard and the tensor', async () => {
    const { dir, shards } = await sharded(QWEN2, randomWeights(QWEN2, 10));
    const path = join(dir, shards[1]);
    const bytes = await readFile(path);
    await writeFile(path, bytes.subarray(0, bytes.length - 5));
    await expect(readHFWeights(dir, QWEN2)).rejects.toThrow(
      new RegExp(`^${escape(path)}: tensor '[^']+': data_offsets \\[\\d+, \\d+\\] run past the \\d+-byte data buffer`),
    );
  });

  it('malformed index files are refused, naming the field', async () => {
    const { dir, index, weightMap, write, shards } = await sharded(LLAMA, randomWeights(LLAMA, 11));
    const refuse = async (m: unknown, message: string | RegExp) => {
      await write(m);
      await expect(readHFWeights(dir, LLAMA)).rejects.toThrow(message);
    };
    await refuse({ metadata: {} }, `${index}: weight_map: must be an object of tensor name -> shard file name`);
    await refuse({ weight_map: [] }, `${index}: weight_map: must be an object`);
    await refuse(
      { weight_map: { ...weightMap, 'model.norm.weight': 3 } },
      `${index}: weight_map['model.norm.weight']: must be a shard file name (a string)`,
    );
    await refuse({ metadata: 'x', weight_map: weightMap }, `${index}: metadata: must be an object`);
    await refuse([], `${index}: (top level): `);
    await writeFile(index, '{"weight_map": ');
    await expect(readHFWeights(dir, LLAMA)).rejects.toThrow(`${index}: cannot read as JSON`);
    // the index and the shards must agree on where each tensor is
    const { 'model.norm.weight': _, ...without } = weightMap;
    await refuse({ weight_map: without }, `${index}: missing tensor 'model.norm.weight'`);
    await refuse(
      { weight_map: { ...weightMap, 'model.layers.0.mlp.extra.weight': shards[0] } },
      `${index}: weight_map: unknown tensor 'model.layers.0.mlp.extra.weight'`,
    );
    const first = Object.keys(weightMap).find((n) => weightMap[n] === shards[0])!;
    await refuse(
      { weight_map: { ...weightMap, [first]: shards[1] } },
      `${join(dir, shards[0])}: tensor '${first}' is here, but ${index} puts it in '${shards[1]}'`,
    );
  });
});

describe('refusals name the file and the tensor', () => {
  it('a missing tensor, a wrong shape, an unknown tensor, an integer tensor', async () => {
    const dir = tempDir('hf-weights-bad-');
    const file = join(dir, HF_WEIGHTS_FILE);
    const base = randomWeights(LLAMA, 12);
    const refuse = async (tensors: Map<string, HFTensor>, message: string) => {
      await saveRaw(dir, HF_WEIGHTS_FILE, tensors);
      await expect(readHFWeights(dir, LLAMA)).rejects.toThrow(message);
    };
    const without = new Map(base);
    without.delete('model.norm.weight');
    await refuse(without, `${file}: missing tensor 'model.norm.weight'`);
    const q = 'model.layers.0.self_attn.q_proj.weight';
    await refuse(
      new Map(base).set(q, { shape: [16, 8], data: new Float32Array(128) }),
      `${file}: tensor '${q}': shape [16,8], expected [16,16] (from config.json)`,
    );
    await refuse(
      new Map(base).set('model.layers.0.mlp.extra.weight', { shape: [1], data: new Float32Array(1) }),
      `${file}: unknown tensor 'model.layers.0.mlp.extra.weight' (not in config.json's layout)`,
    );
    await refuse(
      new Map(base).set('model.layers.9.input_layernorm.weight', { shape: [16], data: new Float32Array(16) }),
      `${file}: unknown tensor 'model.layers.9.input_layernorm.weight'`,
    );
    const ids: Record<string, SafeTensor> = {};
    for (const [name, t] of base) ids[name] = { dtype: 'float32', shape: t.shape, data: Float32Array.from(t.data) };
    ids['model.norm.weight'] = { dtype: 'int32', shape: [16], data: new Int32Array(16) };
    await saveSafetensors(file, ids);
    await expect(readHFWeights(dir, LLAMA)).rejects.toThrow(
      `${file}: tensor 'model.norm.weight': dtype I32, expected a float dtype (F32, F16, BF16, F64)`,
    );
  });

  it('a truncated or corrupted single file, and a directory with no weights', async () => {
    const { dir, file } = await written(LLAMA, 13);
    const bytes = await readFile(file);
    await writeFile(file, bytes.subarray(0, bytes.length - 1));
    await expect(readHFWeights(dir, LLAMA)).rejects.toThrow(
      new RegExp(`^${escape(file)}: tensor '[^']+': data_offsets .* run past the`),
    );
    const flipped = Uint8Array.from(bytes);
    flipped[flipped.length - 1] ^= 1;
    await writeFile(file, flipped);
    await expect(readHFWeights(dir, LLAMA)).rejects.toThrow(`${file}: checksum mismatch`);
    const empty = tempDir('hf-weights-empty-');
    await expect(readHFWeights(empty, LLAMA)).rejects.toThrow(
      `${empty}: neither ${HF_WEIGHTS_FILE} nor ${HF_INDEX_FILE} is there`,
    );
  });

  it('writeHFWeights checks the tensors first and writes nothing when they do not match', async () => {
    const dir = join(tempDir('hf-weights-write-'), 'model');
    const file = join(dir, HF_WEIGHTS_FILE);
    const base = randomWeights(QWEN2, 14);
    const refuse = async (tensors: Map<string, HFTensor>, message: string) => {
      await expect(writeHFWeights(dir, QWEN2, tensors)).rejects.toThrow(message);
    };
    const without = new Map(base);
    without.delete('model.layers.1.self_attn.v_proj.bias');
    await refuse(without, `${file}: missing tensor 'model.layers.1.self_attn.v_proj.bias'`);
    await refuse(
      new Map(base).set('model.norm.weight', { shape: [12, 1], data: new Float32Array(12) }),
      `${file}: tensor 'model.norm.weight': shape [12,1], expected [12]`,
    );
    await refuse(
      new Map(base).set('model.norm.weight', { shape: [12], data: new Float32Array(11) }),
      `${file}: tensor 'model.norm.weight': 11 values do not fill shape [12]`,
    );
    await refuse(
      new Map(base).set('model.norm.weight', { shape: [12], data: new Int32Array(12) as unknown as Float32Array }),
      `${file}: tensor 'model.norm.weight': data is Int32Array, expected a Float32Array or Float64Array`,
    );
    await refuse(
      new Map(base).set('model.layers.0.self_attn.rotary_emb.inv_freq', { shape: [2], data: new Float32Array(2) }),
      `${file}: unknown tensor 'model.layers.0.self_attn.rotary_emb.inv_freq'`,
    );
    await expect(readdir(dir)).rejects.toThrow(/ENOENT/); // not even the directory
  });
});
