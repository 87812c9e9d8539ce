// The Hugging Face decoder (model/hf/decoder.ts) on the two small models of tests/helpers/hf-models.ts (a
// Llama with grouped-query attention and a tied head, a Qwen2 with q/k/v biases and a separate head):
// float64 logits against PyTorch's (tests/golden/hf-pytorch.json, from scripts/hf_decoder.py), float32
// against float64, WebGPU against the CPU, KV-cache decoding against the full forward, a saved directory
// loading back, gradients reaching every parameter, and `igpo logprobs`.

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as E from '../engine/index.js';
import { HFDecoder } from '../model/hf/decoder.js';
import { disposeCache } from '../model/kvcache.js';
import { sequenceLogProbs } from '../model/lm.js';
import { GOLDEN_IDS, TINY_MODELS, tinyModel, writeModelDir } from './helpers/hf-models.js';
import { useTempDirs } from './helpers/tempdir.js';
import { describeWebGPU } from './helpers/webgpu.js';

const golden = JSON.parse(readFileSync(new URL('./golden/hf-pytorch.json', import.meta.url), 'utf8')) as Record<
  string,
  { ids: number[]; logits: number[][] }
>;
const tempDir = useTempDirs();

/** Logits (T, V) of ids under the model, as plain numbers. */
async function logitsOf(m: HFDecoder, ids: readonly number[]): Promise<number[][]> {
  const t = E.tidy(() =>
    E.noGrad(() => m.forward(E.tensor(Int32Array.from(ids), [1, ids.length], { device: m.device })).logits),
  );
  const flat = Array.from(await t.data());
  t.dispose();
  return ids.map((_, i) => flat.slice(i * m.vocabSize, (i + 1) * m.vocabSize));
}

/** max |a - b| / max(1, max |b|) over two tables of rows. */
function relErr(a: number[][], b: number[][]): number {
  let diff = 0;
  let scale = 1;
  a.forEach((row, i) =>
    row.forEach((x, j) => {
      diff = Math.max(diff, Math.abs(x - b[i][j]));
      scale = Math.max(scale, Math.abs(b[i][j]));
    }),
  );
  return diff / scale;
}

/** What a model's case tests, for its describe block's name. */
const traits = (c: (typeof TINY_MODELS)[keyof typeof TINY_MODELS]) =>
  `${c.numHeads} heads, ${c.numKVHeads} key/value heads, ${c.tieWordEmbeddings ? 'tied' : 'separate'} head` +
  (c.qkvBias ? ', q/k/v biases' : '');

for (const [name, cfg] of Object.entries(TINY_MODELS)) {
  describe(`${name} (${traits(cfg)})`, () => {
    it('float64 logits match PyTorch to 1e-12', async () => {
      const m = tinyModel(cfg, { dtype: 'float64' });
      expect(golden[name].ids).toEqual(GOLDEN_IDS);
      expect(relErr(await logitsOf(m, GOLDEN_IDS), golden[name].logits)).toBeLessThan(1e-12);
      m.dispose();
    });

    it('float32 logits match float64 to 1e-5', async () => {
      const m32 = tinyModel(cfg, { dtype: 'float32' });
      const m64 = tinyModel(cfg, { dtype: 'float64' });
      expect(relErr(await logitsOf(m32, GOLDEN_IDS), await logitsOf(m64, GOLDEN_IDS))).toBeLessThan(1e-5);
      E.dispose([m32, m64].flatMap((m) => m.parameters()));
    });

    it('a KV-cache decode (prefill, then one token at a time) gives the full forward\u2019s logits', async () => {
      const m = tinyModel(cfg, { dtype: 'float64' });
      const full = await logitsOf(m, GOLDEN_IDS);
      const prefill = 5;
      const rows: number[][] = [];
      {
        // Each forward under noGrad (it covers a synchronous call; the awaits come between them).
        const first = E.noGrad(() =>
          m.forward(E.tensor(Int32Array.from(GOLDEN_IDS.slice(0, prefill)), [1, prefill]), { returnCache: true }),
        );
        const flat = Array.from(await first.logits.data());
        for (let i = 0; i < prefill; i++) rows.push(flat.slice(i * m.vocabSize, (i + 1) * m.vocabSize));
        first.logits.dispose();
        const cache = first.cache!;
        for (let i = prefill; i < GOLDEN_IDS.length; i++) {
          const step = E.noGrad(() => m.forward(E.tensor(Int32Array.from([GOLDEN_IDS[i]]), [1, 1]), { cache }));
          rows.push(Array.from(await step.logits.data()));
          step.logits.dispose();
        }
        expect(cache.length).toBe(GOLDEN_IDS.length);
        disposeCache(cache);
      }
      expect(relErr(rows, full)).toBeLessThan(1e-12);
      m.dispose();
    });

    it('saved in HF layout (config.json, model.safetensors) it loads back with the same logits', async () => {
      const m = tinyModel(cfg, { dtype: 'float32' });
      const dir = tempDir('hf-save-');
      await m.save(dir);
      const back = await HFDecoder.load(dir, { dtype: 'float32' });
      expect([...back.params.keys()].sort()).toEqual([...m.params.keys()].sort());
      expect(relErr(await logitsOf(back, GOLDEN_IDS), await logitsOf(m, GOLDEN_IDS))).toBe(0);
      E.dispose([...m.parameters(), ...back.parameters()]);
    });

    it('a loss reaches every parameter (biases and norms included) with a finite gradient', () => {
      const m = tinyModel(cfg, { dtype: 'float64' });
      const ids = E.tensor(Int32Array.from(GOLDEN_IDS.slice(0, -1)), [1, GOLDEN_IDS.length - 1]);
      const targets = E.tensor(Int32Array.from(GOLDEN_IDS.slice(1)), [GOLDEN_IDS.length - 1]);
      const { logits } = m.forward(ids);
      E.crossEntropy(logits.reshape([GOLDEN_IDS.length - 1, m.vocabSize]), targets).backward();
      for (const [pname, p] of m.params) {
        expect(p.grad, pname).toBeTruthy();
        const g = Array.from(p.grad!.dataSync());
        expect(
          g.every((x) => Number.isFinite(x)),
          pname,
        ).toBe(true);
        expect(
          g.some((x) => x !== 0),
          pname,
        ).toBe(true);
      }
      m.dispose();
    });
  });
}

describe('igpo logprobs', () => {
  it('prints {"logprobs": [...]}, n - 1 of them, equal to the float64 log-softmax of the PyTorch logits', async () => {
    const m = tinyModel(TINY_MODELS.qwen2, { dtype: 'float64' });
    const dir = tempDir('hf-logprobs-');
    await writeModelDir(dir, m);
    m.dispose();
    const ids = GOLDEN_IDS.slice(0, 8);
    const r = spawnSync('npx', ['tsx', 'igpo/cli.ts', 'logprobs', '--model', dir, '--ids', ids.join(',')], {
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const { logprobs } = JSON.parse(r.stdout) as { logprobs: number[] };
    expect(logprobs).toHaveLength(ids.length - 1);
    const want = ids.slice(1).map((id, i) => {
      const row = golden.qwen2.logits[i];
      const max = Math.max(...row);
      return row[id] - max - Math.log(row.reduce((s, x) => s + Math.exp(x - max), 0));
    });
    logprobs.forEach((lp, i) => expect(Math.abs(lp - want[i])).toBeLessThan(1e-12));

    const bad = spawnSync('npx', ['tsx', 'igpo/cli.ts', 'logprobs', '--model', dir, '--ids', '1,99'], {
      encoding: 'utf8',
    });
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim()).toMatch(/^error: logprobs: id 99 at position 1 is not in \[0, 41\)$/);
  }, 60_000);

  it('sequenceLogProbs refuses fewer than two ids and too many', async () => {
    const m = tinyModel(TINY_MODELS.llama, { dtype: 'float32', blockSize: 8 });
    await expect(sequenceLogProbs(m, [1])).rejects.toThrow(/need at least 2 ids/);
    await expect(sequenceLogProbs(m, new Array<number>(9).fill(1))).rejects.toThrow(/exceed the model's block size 8/);
    m.dispose();
  });
});

describeWebGPU('the HF decoder on WebGPU', () => {
  for (const [name, cfg] of Object.entries(TINY_MODELS)) {
    it(`${name}: float32 logits match the CPU's float64 to 1e-4, also through a KV cache`, async () => {
      const gpu = tinyModel(cfg, { dtype: 'float32', device: 'webgpu' });
      const cpu = tinyModel(cfg, { dtype: 'float64' });
      expect(relErr(await logitsOf(gpu, GOLDEN_IDS), await logitsOf(cpu, GOLDEN_IDS))).toBeLessThan(1e-4);
      const rows: number[][] = [];
      {
        const ids = (xs: number[]) => E.tensor(Int32Array.from(xs), [1, xs.length], { device: 'webgpu' });
        const first = E.noGrad(() => gpu.forward(ids(GOLDEN_IDS.slice(0, 4)), { returnCache: true }));
        first.logits.dispose();
        for (let i = 4; i < GOLDEN_IDS.length; i++) {
          const step = E.noGrad(() => gpu.forward(ids([GOLDEN_IDS[i]]), { cache: first.cache }));
          rows.push(Array.from(await step.logits.data()));
          step.logits.dispose();
        }
        disposeCache(first.cache);
      }
      expect(relErr(rows, (await logitsOf(cpu, GOLDEN_IDS)).slice(4))).toBeLessThan(1e-4);
      E.dispose([...gpu.parameters(), ...cpu.parameters()]);
    });
  }
});
