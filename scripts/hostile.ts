// The hostile-input campaign: crafted and damaged checkpoints, bad engine calls, and training runs and
// saves killed at random. Every file and call case runs in a worker process under a time and a memory
// limit, and is counted as one of
//   refused    an Error that names the file (or, for an engine call, the op): what should happen;
//   loaded     a file that is valid and should load, or a damaged one that still gives the same model;
//   silent     loaded, or ran, although it should have been refused (or loaded something else);
//   crashed    another kind of exception (TypeError, RangeError, ...), or the worker died;
//   hung       over the time limit;   memory: over the memory limit.
// The kills check after each kill that the run directory holds one run only (every file is the run's that
// run.json names) and that a killed save leaves either the old file or none, never half of one.
//
//   npx tsx scripts/hostile.ts [--quick] [--kills 30] [--save-kills 60] [--time-limit 10] [--memory-limit 1024]
//                              [--json FILE]
// Exits 1 when anything crashed, hung, ran out of memory or was silent, or a directory was left mixed.

import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import writeFileAtomic from 'write-file-atomic';
import * as E from '../engine/index.js';
import { loadCheckpoint, saveCheckpoint } from '../model/checkpoint.js';
import { GPT, type GPTConfig } from '../model/gpt.js';
import {
  CHECKSUM_KEY,
  loadSafetensors,
  saveSafetensors,
  SafetensorsError,
  type SafeTensor,
} from '../model/safetensors.js';
import { defaultTokenizer } from '../model/tokenizer.js';
import { readRunMarker, RUN_FILES, RUN_MARKER } from '../igpo/trainer.js';

const SELF = fileURLToPath(import.meta.url);
const ROOT = join(SELF, '..', '..');

type Outcome = 'refused' | 'loaded' | 'silent' | 'crashed' | 'hung' | 'memory' | 'skipped';
const BAD: readonly Outcome[] = ['silent', 'crashed', 'hung', 'memory'];

/** What the worker is asked to do: load a file (whole, cut at a length, or with one bit flipped), or call. */
type Case =
  | { kind: 'file'; name: string; path: string; expect: 'refuse' | 'load' }
  | { kind: 'cut'; name: string; at: number }
  | { kind: 'flip'; name: string; offset: number; bit: number }
  | { kind: 'engine'; name: string; index: number; device: 'cpu' | 'webgpu' };

interface Result {
  name: string;
  group: string;
  outcome: Outcome;
  detail: string;
  ms: number;
}

// ---------------------------------------------------------------------------------------------------
// The base checkpoint and the crafted ones.

const tok = defaultTokenizer();
const BASE_CFG: GPTConfig = {
  vocabSize: tok.vocabSize,
  blockSize: 512,
  nLayer: 1,
  nHead: 2,
  nEmbd: 16,
  ropeBase: 10000,
  normEps: 1e-5,
  initStd: 0.02,
  prevTokens: 3,
};

const tensorsOf = (model: GPT): Record<string, SafeTensor> =>
  Object.fromEntries(
    [...model.params].map(([n, t]) => [
      n,
      { dtype: t.dtype, shape: [...t.shape], data: Float32Array.from(t.dataSync()) },
    ]),
  );

/** A checkpoint's tensors and metadata as saveCheckpoint writes them, to be damaged one way each. */
interface Parts {
  tensors: Record<string, SafeTensor>;
  metadata: Record<string, string>;
}

/**
 * About 160 files, each wrong in one way (or, for the controls, valid in an unusual way), written with a
 * correct checksum: the loader must see the problem in what the file says, not in damaged bytes.
 */
async function craft(dir: string, base: Parts): Promise<Case[]> {
  const cases: Case[] = [];
  const put = async (name: string, expect: 'refuse' | 'load', p: Parts) => {
    const path = join(dir, `${name.replace(/[^\w.=-]+/g, '_')}.safetensors`);
    await saveSafetensors(path, p.tensors, p.metadata);
    cases.push({ kind: 'file', name, path, expect });
  };
  const cfg = JSON.parse(base.metadata.config) as Record<string, unknown>;
  const withConfig = (c: unknown): Parts => ({
    tensors: base.tensors,
    metadata: { ...base.metadata, config: typeof c === 'string' ? c : JSON.stringify(c) },
  });
  const hostile: unknown[] = [0, -1, 0.5, 3.5, 1e9, 1e308, -1e308, 'abc', '3', null, true, [], {}, [16]];
  for (const field of Object.keys(BASE_CFG)) {
    for (const v of hostile) {
      // A scale may be any positive finite number (normEps below 1): those are valid, if odd, and load.
      const scale = ['ropeBase', 'normEps', 'initStd'].includes(field);
      const valid = scale && typeof v === 'number' && v > 0 && Number.isFinite(v) && (field !== 'normEps' || v < 1);
      await put(`config.${field}=${JSON.stringify(v)}`, valid ? 'load' : 'refuse', withConfig({ ...cfg, [field]: v }));
    }
    const { [field]: _, ...rest } = cfg;
    await put(`config.${field} missing`, field === 'initStd' ? 'load' : 'refuse', withConfig(rest));
  }
  // The values the first campaign found hanging or allocating gigabytes.
  for (const [field, v] of [
    ['nEmbd', 2e4],
    ['nEmbd', 16_384],
    ['blockSize', 2e7],
    ['nLayer', 1e9],
    ['nLayer', 256],
    ['vocabSize', 1e8],
    ['vocabSize', 1_000_000],
    ['prevTokens', 1e6],
    ['prevTokens', 16],
    ['nHead', 16],
    ['nHead', 3],
  ] as const)
    await put(`config.${field}=${v}`, 'refuse', withConfig({ ...cfg, [field]: v }));
  await put('config extra key', 'refuse', withConfig({ ...cfg, nKVHead: 1 }));
  await put('config not JSON', 'refuse', withConfig('{"vocabSize": 107,'));
  await put('config an array', 'refuse', withConfig('[1, 2]'));
  await put('config a string', 'refuse', withConfig('"x"'));
  await put('format missing', 'refuse', { tensors: base.tensors, metadata: { config: base.metadata.config } });
  await put('format other', 'refuse', { tensors: base.tensors, metadata: { ...base.metadata, format: 'pt' } });
  // Valid, if unusual: these must load.
  await put('control: base', 'load', base);
  await put('control: ropeBase 5e5', 'load', withConfig({ ...cfg, ropeBase: 5e5 }));
  await put('control: normEps 1e-6', 'load', withConfig({ ...cfg, normEps: 1e-6 }));
  await put('control: blockSize 64', 'load', withConfig({ ...cfg, blockSize: 64 }));
  await put('control: blockSize 65536 (the largest)', 'load', withConfig({ ...cfg, blockSize: 65_536 }));
  const { tokenizer: _t, ...noTokenizer } = base.metadata;
  await put('control: no tokenizer', 'load', { tensors: base.tensors, metadata: noTokenizer });
  const f64 = Object.fromEntries(
    Object.entries(base.tensors).map(([n, t]) => [
      n,
      { ...t, dtype: 'float64' as const, data: Float64Array.from(t.data) },
    ]),
  );
  await put('control: every tensor float64', 'load', { tensors: f64, metadata: base.metadata });

  // The tokenizer.
  const tj = JSON.parse(base.metadata.tokenizer) as { chars: string[]; specials: string[] } & Record<string, unknown>;
  const withTok = (t: unknown): Parts => ({
    tensors: base.tensors,
    metadata: { ...base.metadata, tokenizer: typeof t === 'string' ? t : JSON.stringify(t) },
  });
  await put('tokenizer not JSON', 'refuse', withTok('{"type": "char"'));
  await put('tokenizer a number', 'refuse', withTok('7'));
  await put('tokenizer type other', 'refuse', withTok({ ...tj, type: 'bpe' }));
  await put('tokenizer version 2', 'refuse', withTok({ ...tj, version: 2 }));
  await put('tokenizer chars not strings', 'refuse', withTok({ ...tj, chars: [1, 2, 3] }));
  await put('tokenizer one char fewer', 'refuse', withTok({ ...tj, chars: tj.chars.slice(1) }));
  await put('tokenizer one char more', 'refuse', withTok({ ...tj, chars: [...tj.chars, '\u00e9'] }));
  await put('tokenizer a char twice', 'refuse', withTok({ ...tj, chars: [...tj.chars.slice(1), tj.chars[2]] }));
  await put('tokenizer a multi-character char', 'refuse', withTok({ ...tj, chars: ['ab', ...tj.chars.slice(1)] }));

  // The tensors.
  const names = Object.keys(base.tensors);
  const edit = (name: string, t: SafeTensor | undefined): Parts => {
    const tensors = { ...base.tensors };
    if (t) tensors[name] = t;
    else delete tensors[name];
    return { tensors, metadata: base.metadata };
  };
  for (const name of names) {
    const t = base.tensors[name];
    await put(`tensor ${name} missing`, 'refuse', edit(name, undefined));
    for (const [label, v] of [
      ['NaN', NaN],
      ['+Inf', Infinity],
      ['-Inf', -Infinity],
    ] as const) {
      const data = Float32Array.from(t.data);
      data[data.length >> 1] = v;
      await put(`tensor ${name} holds ${label}`, 'refuse', edit(name, { ...t, data }));
    }
    const n = t.data.length;
    const reshaped = t.shape.length === 1 ? [1, n] : [n];
    await put(`tensor ${name} reshaped to [${reshaped}]`, 'refuse', edit(name, { ...t, shape: reshaped }));
    await put(
      `tensor ${name} one element short`,
      'refuse',
      edit(name, { ...t, shape: [n - 1], data: t.data.slice(1) }),
    );
    await put(
      `tensor ${name} float64`,
      'refuse',
      edit(name, { ...t, dtype: 'float64', data: Float64Array.from(t.data) }),
    );
    await put(`tensor ${name} int32`, 'refuse', edit(name, { ...t, dtype: 'int32', data: new Int32Array(n) }));
  }
  await put('tensor transposed', 'refuse', edit('h.0.fc', { ...base.tensors['h.0.fc'], shape: [64, 16] }));
  await put('tensor extra', 'refuse', edit('h.1.wq', base.tensors['h.0.wq']));
  await put('tensor extra wtePrev.4', 'refuse', edit('wtePrev.4', base.tensors['wtePrev.1']));
  return cases;
}

/** Raw files the writer would never make: deep nesting, absurd lengths, overlapping or missing data. */
async function rawFiles(dir: string, base: Uint8Array): Promise<Case[]> {
  const cases: Case[] = [];
  const headerLen = Number(new DataView(base.buffer, base.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(base.subarray(8, 8 + headerLen))) as Record<string, unknown>;
  const make = (json: string, data: Uint8Array = new Uint8Array(0), len?: bigint) => {
    const h = new TextEncoder().encode(json);
    const out = new Uint8Array(8 + h.length + data.length);
    new DataView(out.buffer).setBigUint64(0, len ?? BigInt(h.length), true);
    out.set(h, 8);
    out.set(data, 8 + h.length);
    return out;
  };
  const put = async (name: string, bytes: Uint8Array) => {
    const path = join(dir, `raw-${cases.length}.safetensors`);
    await writeFile(path, bytes);
    cases.push({ kind: 'file', name, path, expect: 'refuse' });
  };
  const data = base.subarray(8 + headerLen);
  for (const depth of [65, 5000, 100_000])
    await put(`header nested ${depth} deep`, make(`{"x":${'['.repeat(depth)}${']'.repeat(depth)}}`));
  for (const len of [0n, 1n, 7n, BigInt(base.length), 2n ** 40n, 2n ** 63n, 2n ** 64n - 1n])
    await put(`header length ${len}`, make(JSON.stringify(header), data, len));
  const entry = (k: string) => header[k] as { dtype: string; shape: number[]; data_offsets: [number, number] };
  const names = Object.keys(header).filter((k) => k !== '__metadata__');
  const variants: [string, (h: Record<string, unknown>) => void][] = [
    ['overlapping data', (h) => (h[names[1]] = { ...entry(names[1]), data_offsets: entry(names[0]).data_offsets })],
    ['offsets past the end', (h) => (h[names[0]] = { ...entry(names[0]), data_offsets: [0, 2 ** 40] })],
    ['offsets reversed', (h) => (h[names[0]] = { ...entry(names[0]), data_offsets: [8, 0] })],
    ['negative shape', (h) => (h[names[0]] = { ...entry(names[0]), shape: [-107, -16] })],
    ['huge shape', (h) => (h[names[0]] = { ...entry(names[0]), shape: [2 ** 31, 2 ** 31] })],
    ['dtype unknown', (h) => (h[names[0]] = { ...entry(names[0]), dtype: 'F33' })],
    ['dtype F16', (h) => (h[names[0]] = { ...entry(names[0]), dtype: 'F16' })],
    ['metadata value a number', (h) => ((h.__metadata__ as Record<string, unknown>).step = 7)],
    ['metadata an array', (h) => (h.__metadata__ = ['x'])],
    ['entry a string', (h) => (h[names[0]] = 'x')],
    ['entry extra key', (h) => (h[names[0]] = { ...entry(names[0]), extra: 1 })],
    ['header an array', (h) => Object.keys(h).forEach((k) => delete h[k])],
  ];
  for (const [name, change] of variants) {
    const h = structuredClone(header);
    change(h);
    await put(name, make(name === 'header an array' ? '[]' : JSON.stringify(h), data));
  }
  await put('data one byte short', base.subarray(0, base.length - 1));
  await put('data one byte long', Uint8Array.from([...base, 0]));
  await put('empty file', new Uint8Array(0));
  await put('not a safetensors file', new TextEncoder().encode('{"config": {"vocabSize": 107}}'));
  return cases;
}

// ---------------------------------------------------------------------------------------------------
// Bad engine calls: each must throw an Error whose message names the op (or, for an op built on another,
// 'a|b': the primitive that found the problem). A WebGPU result is read, so that what its kernel flagged
// is reported (kernels/status.ts).

type Call = [op: string, run: (d: E.Device) => unknown];
const read = (t: E.Tensor) => t.data();

function engineCalls(): Call[] {
  const z = (shape: number[], d: E.Device, dtype: E.DType = 'float32') => E.zeros(shape, { device: d, dtype });
  /** A second dtype the backend has (WGSL has no float64). */
  const other = (d: E.Device): E.DType => (d === 'webgpu' ? 'int32' : 'float64');
  const ids = (v: number[], d: E.Device) => E.tensor(Int32Array.from(v), [v.length], { device: d });
  const calls: Call[] = [];
  const binary: [string, (a: E.Tensor, b: E.Tensor) => E.Tensor][] = [
    ['add', E.add],
    ['sub', E.sub],
    ['mul', E.mul],
    ['div', E.div],
    ['pow', E.pow],
    ['maximum', E.maximum],
    ['minimum', E.minimum],
    ['eq', E.eq],
    ['lt', E.lt],
    ['ge', E.ge],
  ];
  for (const [op, f] of binary) {
    calls.push([op, (d) => f(z([2, 3], d), z([4], d))]);
    calls.push([op, (d) => f(z([2, 3], d), z([2, 3], d, other(d)))]);
  }
  calls.push(
    ['matmul', (d) => E.matmul(z([2, 3], d), z([4, 5], d))],
    ['matmul', (d) => E.matmul(z([2, 3], d), z([3, 5], d, other(d)))],
    ['matmul', (d) => E.matmul(z([2, 3, 4], d), z([5, 4, 3], d))],
    ['reshape', (d) => E.reshape(z([2, 3], d), [4])],
    ['reshape', (d) => E.reshape(z([2, 3], d), [-1, -1])],
    ['reshape', (d) => E.reshape(z([2, 3], d), [-2, -3])],
    ['permute', (d) => E.permute(z([2, 3], d), [0, 0])],
    ['permute', (d) => E.permute(z([2, 3], d), [1])],
    ['transpose', (d) => E.transpose(z([2, 3], d), 0, 2)],
    ['narrow', (d) => E.narrow(z([2, 5], d), 1, 0, -1)],
    ['narrow', (d) => E.narrow(z([2, 5], d), 1, 3, 3)],
    ['narrow', (d) => E.narrow(z([2, 5], d), 2, 0, 1)],
    ['sum', (d) => E.sum(z([2, 3], d), 5)],
    ['mean', (d) => E.mean(z([2, 3], d), -3)],
    ['max', (d) => E.max(z([2, 3], d), 2)],
    ['logsumexp', (d) => E.logsumexp(z([2, 3], d), 4)],
    ['cat', (d) => E.cat([z([2, 3], d), z([2, 4], d)], 0)],
    ['cat', (d) => E.cat([z([2, 3], d), z([2, 3], d, other(d))], 0)],
    ['stack', (d) => E.stack([z([2, 3], d), z([3, 2], d)], 0)],
    ['indexSelect|gather', (d) => read(E.indexSelect(z([4, 3], d), 0, ids([0, 4], d)))],
    ['indexSelect|gather', (d) => read(E.indexSelect(z([4, 3], d), 0, ids([-1], d)))],
    ['gather', (d) => read(E.gather(z([4, 3], d), 1, E.tensor(Int32Array.from([0, 3]), [1, 2], { device: d })))],
    ['embedding|gather', (d) => read(E.embedding(ids([0, 9], d), z([4, 3], d)))],
    ['embedding', (d) => E.embedding(z([2], d), z([4, 3], d))],
    ['expand', (d) => E.expand(z([2, 3], d), [4, 3])],
    ['unsqueeze', (d) => E.unsqueeze(z([2, 3], d), 4)],
    ['softmax', (d) => E.softmax(z([2, 3], d), 2)],
    ['logSoftmax', (d) => E.logSoftmax(z([2, 3], d), -3)],
    ['crossEntropy|targetLogProb', (d) => read(E.crossEntropy(z([2, 5], d), ids([0, 5], d)))],
    ['crossEntropy', (d) => E.crossEntropy(z([2, 5], d), z([2], d))],
    ['crossEntropy', (d) => E.crossEntropy(z([2, 5], d), ids([0, 1, 2], d))],
    ['targetLogProb', (d) => E.targetLogProb(z([2, 5], d), z([2], d))],
    ['targetLogProb', (d) => read(E.targetLogProb(z([2, 5], d), ids([0, 7], d)))],
    ['attention', (d) => E.scaledDotProductAttention(z([1, 2, 3, 4], d), z([1, 2, 3, 6], d), z([1, 2, 3, 4], d))],
    ['attention', (d) => E.scaledDotProductAttention(z([1, 2, 3, 4], d), z([1, 2, 5, 4], d), z([1, 2, 3, 4], d))],
    [
      'attention',
      (d) => E.scaledDotProductAttention(z([1, 2, 3, 4], d), z([1, 2, 3, 4], d), z([1, 2, 3, 4], d, other(d))),
    ],
    [
      'attention',
      (d) =>
        E.scaledDotProductAttention(z([1, 2, 3, 4], d), z([1, 2, 3, 4], d), z([1, 2, 3, 4], d), { keyBias: z([2], d) }),
    ],
    ['rmsNorm', (d) => E.rmsNorm(z([2, 4], d), z([3], d))],
    ['rmsNorm', (d) => E.rmsNorm(z([2, 4], d), z([4], d, other(d)))],
    ['layerNorm', (d) => E.layerNorm(z([2, 4], d), z([4], d), z([5], d))],
    ['tensor', (d) => E.tensor([1, 2, 3], [2, 2], { device: d })],
    ['tensor', (d) => E.tensor([1, 2], [-2], { device: d })],
    ['tensor', (d) => E.tensor([1, 2], [2.5], { device: d })],
    ['where', (d) => E.where(E.gt(z([2, 3], d), 0), z([2, 3], d), z([4], d))],
    [
      'backward',
      (d) => {
        const w = E.ones([3], { device: d, requiresGrad: true });
        const loss = w.mul(w).sum();
        loss.backward();
        loss.backward();
      },
    ],
    [
      'allocate|fill',
      async (d) => {
        let refused: unknown;
        try {
          E.zeros([1e12], { device: d });
        } catch (e) {
          refused = e;
        }
        // The next op must still run.
        const y = await read(E.add(E.ones([2], { device: d }), E.ones([2], { device: d })));
        if (y[0] !== 2 || y[1] !== 2) throw new TypeError(`the backend broke after a failed allocation: ${y}`);
        if (refused) throw refused;
      },
    ],
  );
  const nan: [string, (d: E.Device) => E.Tensor][] = [
    ['log', (d) => E.tensor([1, -1], [2], { device: d }).log()],
    ['div', (d) => E.div(E.tensor([1, 0], [2], { device: d }), E.tensor([1, 0], [2], { device: d }))],
    ['sqrt', (d) => E.tensor([4, -4], [2], { device: d }).sqrt()],
    ['exp', (d) => E.tensor([1, 100], [2], { device: d }).exp()],
    ['mul', (d) => E.mul(E.tensor([1, 1e30], [2], { device: d }), E.tensor([1, 1e30], [2], { device: d }))],
    ['rsqrt', (d) => E.tensor([1, 0], [2], { device: d }).rsqrt()],
  ];
  for (const [op, f] of nan)
    calls.push([
      op,
      async (d) => {
        E.setDebug({ checkNumerics: true });
        try {
          await f(d).add(1).data();
        } finally {
          E.setDebug({ checkNumerics: false });
        }
      },
    ]);
  return calls;
}

/** Calls with tensors on two devices (WebGPU only). */
function mixedDeviceCalls(): Call[] {
  const g = (shape: number[]) => E.zeros(shape, { device: 'webgpu' });
  const c = (shape: number[]) => E.zeros(shape);
  const t = E.tensor(Int32Array.from([0, 1]), [2]);
  return [
    ['add', () => E.add(g([2, 4]), c([2, 4]))],
    ['matmul', () => E.matmul(g([2, 4]), c([4, 2]))],
    ['crossEntropy', () => E.crossEntropy(g([2, 4]), t)],
    ['targetLogProb', () => E.targetLogProb(g([2, 4]), t)],
    ['rmsNorm', () => E.rmsNorm(g([2, 4]), c([4]))],
    ['layerNorm', () => E.layerNorm(g([2, 4]), g([4]), c([4]))],
    ['attention', () => E.scaledDotProductAttention(g([2, 1, 3, 4]), g([2, 1, 3, 4]), c([2, 1, 3, 4]))],
    [
      'attention',
      () => E.scaledDotProductAttention(g([2, 1, 3, 4]), g([2, 1, 3, 4]), g([2, 1, 3, 4]), { keyBias: c([2, 3]) }),
    ],
    ['cat', () => E.cat([g([2, 4]), c([2, 4])], 0)],
    ['indexSelect', () => E.indexSelect(g([4, 3]), 0, t)],
    ['embedding', () => E.embedding(t, g([4, 3]))],
    ['where', () => E.where(E.gt(g([2]), 0), g([2]), c([2]))],
  ];
}

// ---------------------------------------------------------------------------------------------------
// The worker: one case at a time, its outcome back to the parent.

/** A fingerprint of what a load gave: config, tokenizer, every tensor's name, dtype and bytes. */
async function fingerprint(l: Awaited<ReturnType<typeof loadCheckpoint>>): Promise<string> {
  const h = createHash('sha256')
    .update(JSON.stringify(l.model.cfg))
    .update(JSON.stringify(l.tokenizer?.toJSON() ?? null));
  for (const [name, p] of l.model.params) {
    const data = await p.data();
    h.update(`${name} ${p.dtype} ${p.shape.join(',')}`).update(
      new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    );
  }
  return h.digest('hex');
}

/** A thrown value is a refusal when it is an Error of the project's kind (not a TypeError, say) naming `what`. */
function judge(e: unknown, what: string): { outcome: Outcome; detail: string } {
  const msg = e instanceof Error ? e.message.split('\n')[0] : String(e);
  const kind = e instanceof Error ? e.constructor.name : typeof e;
  const controlled = e instanceof Error && (e.constructor === Error || e instanceof SafetensorsError);
  if (controlled && what.split('|').some((w) => msg.includes(w))) return { outcome: 'refused', detail: msg };
  return { outcome: 'crashed', detail: `${kind}: ${msg}${controlled ? ` (does not name ${what})` : ''}` };
}

async function worker(basePath: string): Promise<void> {
  const base = new Uint8Array(readFileSync(basePath));
  const baseLoad = await loadCheckpoint(basePath);
  const baseSum = await fingerprint(baseLoad);
  baseLoad.model.dispose();
  const scratchDir = await mkdtemp(join(tmpdir(), 'hostile-w-'));
  const scratch = join(scratchDir, 'case.safetensors');
  const calls = engineCalls();
  let gpuReady: Promise<boolean> | undefined;
  const load = async (path: string, expect: 'refuse' | 'load') => {
    try {
      const l = await loadCheckpoint(path);
      const same = (await fingerprint(l)) === baseSum;
      l.model.dispose();
      if (expect === 'load') return { outcome: 'loaded' as const, detail: same ? 'the base model' : 'loaded' };
      return same
        ? { outcome: 'loaded' as const, detail: 'loaded, the same model as the base' }
        : { outcome: 'silent' as const, detail: 'loaded a model other than the one written' };
    } catch (e) {
      const r = judge(e, basename(path));
      if (expect === 'load') return { outcome: 'silent' as const, detail: `a valid file was refused: ${r.detail}` };
      return r;
    }
  };
  process.on('message', async (m: { id: number; c: Case }) => {
    const { c } = m;
    let r: { outcome: Outcome; detail: string };
    if (c.kind === 'file') r = await load(c.path, c.expect);
    else if (c.kind === 'cut') {
      await writeFile(scratch, base.subarray(0, c.at));
      r = await load(scratch, 'refuse');
    } else if (c.kind === 'flip') {
      const bytes = Uint8Array.from(base);
      bytes[c.offset] ^= 1 << c.bit;
      await writeFile(scratch, bytes);
      r = await load(scratch, 'refuse');
    } else {
      if (c.device === 'webgpu') {
        gpuReady ??= import('../kernels/index.js').then(
          (k) =>
            k.initWebGPU().then(
              () => true,
              () => false,
            ),
          () => false,
        );
        if (!(await gpuReady)) {
          process.send!({ id: m.id, outcome: 'skipped', detail: 'no WebGPU adapter' });
          return;
        }
      }
      const [op, run] = c.index < calls.length ? calls[c.index] : mixedDeviceCalls()[c.index - calls.length];
      try {
        await run(c.device);
        r = { outcome: 'silent', detail: 'no error' };
      } catch (e) {
        r = judge(e, op);
      }
    }
    process.send!({ id: m.id, ...r });
  });
  process.send!({ ready: true });
}

// ---------------------------------------------------------------------------------------------------
// The parent: workers under limits.

interface Limits {
  timeMs: number;
  memoryMB: number;
}

/** Resident memory of a process in MB, from /proc (0 where it cannot be read). */
function rssMB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** One worker process at a time, replaced when a case kills it, hangs it or makes it too big. */
class Runner {
  private proc?: ChildProcess;
  private ready?: Promise<void>;
  private stderr = '';
  private next = 0;

  constructor(
    private readonly basePath: string,
    private readonly limits: Limits,
  ) {}

  private start(): Promise<void> {
    this.stderr = '';
    const p = fork(SELF, ['--worker', this.basePath], {
      execArgv: [...process.execArgv, `--max-old-space-size=${this.limits.memoryMB}`],
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    p.stderr!.on('data', (b: Buffer) => (this.stderr = (this.stderr + b.toString()).slice(-2000)));
    this.proc = p;
    return new Promise((resolve, reject) => {
      p.once('message', () => resolve());
      p.once('exit', (code, sig) => reject(new Error(`worker failed to start (${sig ?? code}): ${this.stderr}`)));
    });
  }

  async run(c: Case): Promise<{ outcome: Outcome; detail: string; ms: number }> {
    this.ready ??= this.start();
    await this.ready;
    const p = this.proc!;
    const id = this.next++;
    const t0 = performance.now();
    const r = await new Promise<{ outcome: Outcome; detail: string }>((resolve) => {
      let done = false;
      const finish = (x: { outcome: Outcome; detail: string }, kill: boolean) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearInterval(poll);
        p.off('message', onMessage);
        p.off('exit', onExit);
        if (kill) {
          p.kill('SIGKILL');
          this.ready = undefined;
        }
        resolve(x);
      };
      const onMessage = (m: { id: number; outcome: Outcome; detail: string }) => {
        if (m.id === id) finish(m, false);
      };
      const onExit = (code: number | null, sig: string | null) => {
        this.ready = undefined;
        const oom = /heap out of memory|Allocation failed/.test(this.stderr);
        finish(
          {
            outcome: oom ? 'memory' : 'crashed',
            detail: `worker died (${sig ?? `code ${code}`}): ${this.stderr.trim().split('\n').slice(-1)[0] ?? ''}`,
          },
          false,
        );
      };
      const timer = setTimeout(
        () => finish({ outcome: 'hung', detail: `over ${this.limits.timeMs / 1000} s` }, true),
        this.limits.timeMs,
      );
      const poll = setInterval(() => {
        const mb = rssMB(p.pid!);
        if (mb > this.limits.memoryMB) finish({ outcome: 'memory', detail: `${mb.toFixed(0)} MB resident` }, true);
      }, 25);
      p.on('message', onMessage);
      p.on('exit', onExit);
      p.send({ id, c });
    });
    return { ...r, ms: performance.now() - t0 };
  }

  stop(): void {
    this.proc?.kill('SIGKILL');
  }
}

/** Runs the cases on `parallel` workers; prints a dot every 1000. */
async function runCases(
  group: string,
  cases: Case[],
  basePath: string,
  limits: Limits,
  parallel: number,
): Promise<Result[]> {
  const out: Result[] = new Array(cases.length);
  let at = 0;
  const runners = Array.from({ length: parallel }, () => new Runner(basePath, limits));
  await Promise.all(
    runners.map(async (r) => {
      while (at < cases.length) {
        const i = at++;
        const x = await r.run(cases[i]);
        out[i] = { name: cases[i].name, group, ...x };
        if (i % 1000 === 999) process.stderr.write('.');
      }
      r.stop();
    }),
  );
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Kills: training runs and saves.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Temporary files of the project's atomic writes: .NAME.PID.HEX.tmp (safetensors) and NAME.NUMBER. */
const isTemp = (f: string) => /^\..+\.\d+\.[0-9a-f]{12}\.tmp$/.test(f) || /^.+\.\d+$/.test(f);

/** What is wrong with a run directory: files of another run beside run.json's, or a file that does not load. */
async function mixedProblems(dir: string): Promise<{ problems: string[]; temps: number }> {
  const files = existsSync(dir) ? await readdir(dir) : [];
  const temps = files.filter(isTemp).length;
  const present = RUN_FILES.filter((f) => files.includes(f));
  if (present.length === 0) return { problems: [], temps };
  if (!present.includes(RUN_MARKER)) return { problems: [`${present.join(', ')} without ${RUN_MARKER}`], temps };
  const problems: string[] = [];
  const marker = await readRunMarker(dir);
  const markerTime = (await stat(join(dir, RUN_MARKER))).mtimeMs;
  for (const f of present) {
    const path = join(dir, f);
    if ((await stat(path)).mtimeMs < markerTime) problems.push(`${f} is older than ${RUN_MARKER}`);
    try {
      if (f.endsWith('.safetensors')) {
        const { metadata } = await loadSafetensors(path);
        if (metadata.run !== marker.id) problems.push(`${f} is run ${metadata.run}'s, not ${marker.id}'s`);
      } else if (f === 'config.json') {
        const seed = (JSON.parse(await readFile(path, 'utf8')) as { seed: number }).seed;
        if (seed !== marker.seed) problems.push(`config.json has seed ${seed}, run.json ${marker.seed}`);
      } else if (f === 'metrics.jsonl') {
        for (const line of (await readFile(path, 'utf8')).split('\n').filter(Boolean)) {
          const seed = (JSON.parse(line) as { seed?: number }).seed;
          if (seed !== undefined && seed !== marker.seed) problems.push(`metrics.jsonl has a line of seed ${seed}`);
        }
      }
    } catch (e) {
      problems.push(`${f}: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  return { problems: [...new Set(problems)], temps };
}

interface KillRecord {
  i: number;
  mode: string;
  signal: string;
  afterMs: number;
  exit: string;
  problems: string[];
  temps: number;
}

async function killRuns(
  root: string,
  n: number,
  random: () => number,
): Promise<{ records: KillRecord[]; final: KillRecord }> {
  const dir = join(root, 'run');
  const records: KillRecord[] = [];
  const igpo = join(ROOT, 'bin', 'igpo.mjs');
  const once = async (i: number, mode: string, killAfter: number | null, signal: NodeJS.Signals) => {
    // A resumed run takes its settings from its own config.json: no --preset.
    const args = ['train', '--checkpoint-every', '1'];
    if (mode === 'resume') args.push('--resume', dir);
    else
      args.push('--preset', 'smoke', '--out', dir, '--seed', String(i), ...(mode === 'fresh' ? ['--overwrite'] : []));
    const p = spawn(process.execPath, [igpo, ...args], { stdio: ['ignore', 'ignore', 'pipe'], cwd: ROOT });
    let err = '';
    p.stderr.on('data', (b: Buffer) => (err = (err + b.toString()).slice(-500)));
    const exited = new Promise<string>((r) =>
      p.on('exit', (code, sig) => r(sig ? `killed by ${sig}` : `exit ${code}`)),
    );
    const t0 = performance.now();
    let exit = await (killAfter === null ? exited : Promise.race([exited, sleep(killAfter).then(() => '')]));
    if (!exit) {
      p.kill(signal);
      exit = await exited;
    }
    const { problems, temps } = await mixedProblems(dir);
    if (mode === 'plain' && !/holds a run/.test(err) && existsSync(join(dir, RUN_MARKER)))
      problems.push(`a run without --overwrite or --resume was not refused (${exit}): ${err.trim()}`);
    if (mode !== 'plain' && /^exit [1-9]/.test(exit)) problems.push(`the ${mode} run failed (${exit}): ${err.trim()}`);
    return { i, mode, signal, afterMs: Math.round(performance.now() - t0), exit, problems, temps };
  };
  // Until n runs were killed: a run may finish before its kill, and a plain one (no --overwrite, no
  // --resume) is refused at once and not killed; those are checked the same way but not counted.
  // How long a whole run takes here, measured first (not counted): the kills land within it, so that they
  // fall in start-up, warm-up, steps and saves on a fast machine as on a slow one. (A fixed window of 3.5 s
  // let most runs finish first once a warm machine ran them in about 2 s.)
  const whole = (await once(0, 'fresh', null, 'SIGKILL')).afterMs;
  let killed = 0;
  for (let i = 0; killed < n && i < 4 * n; i++) {
    const has = existsSync(join(dir, 'checkpoint.safetensors'));
    const u = random();
    const mode = !has || u < 0.4 ? 'fresh' : u < 0.9 ? 'resume' : 'plain';
    const signal: NodeJS.Signals = random() < 0.5 ? 'SIGKILL' : 'SIGINT';
    // A resumed run skips the warm-up: about 0.7 of a whole one.
    const window = (mode === 'fresh' ? 0.9 : 0.65) * whole;
    const r = await once(i, mode, mode === 'plain' ? null : 200 + random() * window, signal);
    records.push(r);
    if (/^killed/.test(r.exit)) killed++;
    process.stderr.write(
      `run ${i + 1} (${killed}/${n} killed): ${mode}, ${signal} after ${r.afterMs} ms, ${r.exit}` +
        `${r.problems.length ? `: MIXED ${r.problems.join('; ')}` : ''}\n`,
    );
  }
  const final = await once(records.length, 'fresh', null, 'SIGKILL');
  if (final.temps > 0) final.problems.push(`${final.temps} temporary files left after a whole run`);
  return { records, final };
}

/** A worker that saves a 12 MB model over and over into dir, until killed. */
async function saveLoop(dir: string, times: number): Promise<void> {
  const model = new GPT(
    { ...BASE_CFG, nEmbd: 288, nLayer: 3, prevTokens: 0, blockSize: 64 },
    { generator: new E.Generator(5) },
  );
  for (let i = 0; i < times; i++)
    await saveCheckpoint(join(dir, 'model.safetensors'), model, { metadata: { i: String(i) } });
}

async function killSaves(root: string, n: number, random: () => number) {
  const dir = join(root, 'saves');
  await mkdir(dir, { recursive: true });
  const start = (times: number) =>
    fork(SELF, ['--save-loop', dir, String(times)], { execArgv: process.execArgv, stdio: 'ignore' });
  let torn = 0;
  let maxTemps = 0;
  const problems: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = start(1e9);
    const exited = new Promise((r) => p.on('exit', r));
    await sleep(1500 + random() * 3000); // start-up, then somewhere in a save
    p.kill('SIGKILL');
    await exited;
    const path = join(dir, 'model.safetensors');
    if (existsSync(path))
      try {
        (await loadCheckpoint(path)).model.dispose();
      } catch (e) {
        torn++;
        problems.push(`kill ${i + 1}: ${(e as Error).message.split('\n')[0]}`);
      }
    maxTemps = Math.max(maxTemps, (await readdir(dir)).filter(isTemp).length);
  }
  const p = start(1);
  await new Promise((r) => p.on('exit', r));
  const tempsAfter = (await readdir(dir)).filter(isTemp).length;
  if (tempsAfter > 0) problems.push(`${tempsAfter} temporary files left after the next whole save`);
  return { kills: n, torn, maxTempsBetween: maxTemps, tempsAfter, problems };
}

// ---------------------------------------------------------------------------------------------------

async function main(o: {
  quick?: boolean;
  kills: number;
  saveKills: number;
  timeLimit: number;
  memoryLimit: number;
  json?: string;
}): Promise<number> {
  const root = await mkdtemp(join(tmpdir(), 'hostile-'));
  const limits = { timeMs: o.timeLimit * 1000, memoryMB: o.memoryLimit };
  // The campaign's own choices (which bytes, when to kill), seeded.
  const gen = new E.Generator(18);
  const random = () => gen.random();
  const model = new GPT(BASE_CFG, { generator: new E.Generator(18) });
  const basePath = join(root, 'base.safetensors');
  await saveCheckpoint(basePath, model, { tokenizer: tok, metadata: { step: '0' } });
  const base = new Uint8Array(readFileSync(basePath));
  const headerEnd = 8 + Number(new DataView(base.buffer, base.byteOffset).getBigUint64(0, true));
  const parts: Parts = { tensors: tensorsOf(model), metadata: (await loadSafetensors(basePath)).metadata };
  delete parts.metadata[CHECKSUM_KEY];
  await mkdir(join(root, 'crafted'));
  const crafted = [...(await craft(join(root, 'crafted'), parts)), ...(await rawFiles(join(root, 'crafted'), base))];
  const step = o.quick ? 97 : 1;
  const cuts: Case[] = [];
  for (let at = 0; at < base.length; at += step) cuts.push({ kind: 'cut', name: `cut at ${at}`, at });
  const headerFlips: Case[] = [];
  for (let offset = 0; offset < headerEnd; offset += o.quick ? 13 : 1)
    for (let bit = 0; bit < 8; bit += o.quick ? 8 : 1)
      headerFlips.push({ kind: 'flip', name: `header byte ${offset} bit ${bit}`, offset, bit });
  const dataFlips: Case[] = Array.from({ length: o.quick ? 300 : 10_000 }, () => {
    const offset = headerEnd + Math.floor(random() * (base.length - headerEnd));
    const bit = Math.floor(random() * 8);
    return { kind: 'flip', name: `data byte ${offset} bit ${bit}`, offset, bit };
  });
  const nCalls = engineCalls().length;
  const calls = (device: 'cpu' | 'webgpu', n: number): Case[] =>
    Array.from({ length: n }, (_, index) => ({ kind: 'engine', name: `${device} call ${index}`, index, device }));
  console.error(
    `hostile: base checkpoint ${base.length} bytes (header ${headerEnd}); ${crafted.length} crafted files, ` +
      `${cuts.length} truncations, ${headerFlips.length} header and ${dataFlips.length} data bit flips, ` +
      `${nCalls} engine calls per backend; limits ${o.timeLimit} s and ${o.memoryLimit} MB per case`,
  );
  const results: Result[] = [];
  const groups: [string, Case[], number][] = [
    ['crafted files', crafted, 1],
    ['truncations', cuts, 2],
    ['header bit flips', headerFlips, 2],
    ['data bit flips', dataFlips, 2],
    ['engine calls (cpu)', calls('cpu', nCalls), 1],
    ['engine calls (webgpu)', calls('webgpu', nCalls + mixedDeviceCalls().length), 1],
  ];
  for (const [group, cases, parallel] of groups) {
    const t0 = performance.now();
    const r = await runCases(group, cases, basePath, limits, parallel);
    results.push(...r);
    console.error(`\n${group}: ${cases.length} cases in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  }
  const kills = o.kills > 0 ? await killRuns(root, o.kills, random) : undefined;
  const saves = o.saveKills > 0 ? await killSaves(root, o.saveKills, random) : undefined;

  // The tally.
  const outcomes: Outcome[] = ['refused', 'loaded', 'silent', 'crashed', 'hung', 'memory', 'skipped'];
  console.log(`| group | cases | ${outcomes.join(' | ')} | slowest ms |`);
  console.log(`|---|---:|${outcomes.map(() => '---:').join('|')}|---:|`);
  for (const [group] of groups) {
    const g = results.filter((r) => r.group === group);
    const n = (x: Outcome) => g.filter((r) => r.outcome === x).length;
    const slowest = Math.max(0, ...g.filter((r) => r.outcome !== 'hung').map((r) => r.ms));
    console.log(`| ${group} | ${g.length} | ${outcomes.map(n).join(' | ')} | ${slowest.toFixed(0)} |`);
  }
  const bad = results.filter((r) => BAD.includes(r.outcome));
  for (const r of bad.slice(0, 40)) console.log(`- ${r.outcome}: ${r.group}: ${r.name}: ${r.detail}`);
  if (bad.length > 40) console.log(`- ... and ${bad.length - 40} more`);
  let mixed = 0;
  if (kills) {
    const all = [...kills.records, kills.final];
    mixed = all.filter((r) => r.problems.length > 0).length;
    const byExit = (re: RegExp) => kills.records.filter((r) => re.test(r.exit)).length;
    const plain = kills.records.filter((r) => r.mode === 'plain');
    const refused = plain.filter((r) => r.exit === 'exit 1').length;
    console.log(
      `\ntraining runs: ${kills.records.length}, of them killed ${byExit(/^killed/)} ` +
        `(${byExit(/SIGKILL/)} by SIGKILL, ${byExit(/SIGINT/)} by SIGINT), ${byExit(/^exit 0/)} finished first, ` +
        `${plain.length} without --overwrite or --resume (refused: ${refused}); ` +
        `mixed directories: ${mixed}; temporary files after the final whole run: ${kills.final.temps}`,
    );
    for (const r of all.filter((r) => r.problems.length > 0)) console.log(`- kill ${r.i}: ${r.problems.join('; ')}`);
  }
  if (saves)
    console.log(
      `killed saves: ${saves.kills}; torn files: ${saves.torn}; most temporary files between saves: ` +
        `${saves.maxTempsBetween}; after the next whole save: ${saves.tempsAfter}` +
        (saves.problems.length ? `\n- ${saves.problems.join('\n- ')}` : ''),
    );
  if (o.json)
    await writeFileAtomic(
      o.json,
      JSON.stringify({ limits, results: results.filter((r) => r.outcome !== 'refused'), kills, saves }, null, 1) + '\n',
    );
  await rm(root, { recursive: true, force: true });
  const failed = bad.length > 0 || mixed > 0 || (saves?.problems.length ?? 0) > 0;
  return failed ? 1 : 0;
}

if (process.argv[2] === '--worker') await worker(process.argv[3]);
else if (process.argv[2] === '--save-loop') await saveLoop(process.argv[3], Number(process.argv[4]));
else {
  const num = (name: string) => (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n) || n < 0) throw new Error(`${name} must be a non-negative number, got '${v}'`);
    return n;
  };
  const program = new Command()
    .name('hostile')
    .description('crafted and damaged checkpoints, bad engine calls, killed runs and saves; counts what happened')
    .option('--quick', 'a sample of the truncations and flips (CI-sized)')
    .option('--kills <n>', 'training runs to kill at random', num('--kills'), 30)
    .option('--save-kills <n>', 'saves killed at random', num('--save-kills'), 60)
    .option('--time-limit <s>', 'seconds per case before it counts as hung', num('--time-limit'), 10)
    .option('--memory-limit <mb>', 'resident MB per case before it counts as over memory', num('--memory-limit'), 1024)
    .option('--json <file>', 'write every case that was not refused, and the kills, as JSON')
    .action(async (o) => {
      process.exitCode = await main(o);
    });
  await program.parseAsync();
}
