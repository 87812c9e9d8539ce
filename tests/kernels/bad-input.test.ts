// Bad input on WebGPU: ops given tensors of two devices name themselves; checkNumerics reports the op
// that made a NaN or an Inf at the next read; a target or an index out of range throws the CPU's error; an
// allocation the adapter cannot give is refused and leaves the backend usable; NaN propagates through
// fused attention; huge tied logits give a uniform softmax; a failed checkpoint load leaves no buffer.

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, expect, it } from 'vitest';
import * as E from '../../engine/index.js';
import { loadCheckpoint, saveCheckpoint } from '../../model/checkpoint.js';
import { GPT } from '../../model/gpt.js';
import { defaultTokenizer } from '../../model/tokenizer.js';
import { useTempDirs } from '../helpers/tempdir.js';
import { describeWebGPU } from '../helpers/webgpu.js';

const tempDir = useTempDirs();

afterEach(() => E.setDebug({ checkNumerics: false }));

describeWebGPU('bad input on WebGPU', (ctx) => {
  const g = (values: number[], shape = [values.length]) =>
    E.tensor(Float32Array.from(values), shape, { device: 'webgpu' });

  it('ops given tensors on two devices say which op, fused ones included', () => {
    const [xg, xc] = [E.zeros([2, 4], { device: 'webgpu' }), E.zeros([2, 4])];
    const t = E.tensor(Int32Array.from([0, 1]), [2]);
    const devices = /tensors are on different devices \(\w+, \w+/;
    expect(() => E.add(xg, xc)).toThrow(new RegExp(`^add: ${devices.source}`));
    expect(() => E.crossEntropy(xg, t)).toThrow(new RegExp(`^crossEntropy: ${devices.source}`));
    expect(() => E.targetLogProb(xg, t)).toThrow(new RegExp(`^targetLogProb: ${devices.source}`));
    expect(() => E.rmsNorm(xg, E.ones([4]))).toThrow(new RegExp(`^rmsNorm: ${devices.source}`));
    expect(() => E.layerNorm(xg, E.ones([4], { device: 'webgpu' }), E.zeros([4]))).toThrow(
      new RegExp(`^layerNorm: ${devices.source}`),
    );
    const q = E.zeros([2, 1, 3, 4], { device: 'webgpu' });
    expect(() => E.scaledDotProductAttention(q, q, q, { keyBias: E.zeros([2, 3]) })).toThrow(
      new RegExp(`^attention: ${devices.source}`),
    );
    expect(() => E.scaledDotProductAttention(q, q, E.zeros([2, 1, 3, 4]))).toThrow(
      new RegExp(`^attention: ${devices.source}`),
    );
  });

  it('checkNumerics names the op that made a NaN or an Inf, at the next read', async () => {
    E.setDebug({ checkNumerics: true });
    const cases: [string, () => E.Tensor][] = [
      ['log', () => g([1, -1]).log()],
      ['div', () => E.div(g([1, 0]), g([1, 0]))],
      ['sqrt', () => g([4, -4]).sqrt()],
      ['exp', () => g([1, 100]).exp()],
      ['mul', () => E.mul(g([1, 1e30]), g([1, 1e30]))],
      ['rsqrt', () => g([1, 0]).rsqrt()],
    ];
    for (const [op, make] of cases) {
      const y = make().add(1); // a later op: the error still names the first
      await expect(y.data(), op).rejects.toThrow(
        new RegExp(`^checkNumerics: op '${op}' produced (NaN|Infinity) at flat index 1 of its output \\[2\\] float32`),
      );
      expect(Array.from(await g([1, 2]).data())).toEqual([1, 2]); // reported once; the next read is clean
    }
    E.setDebug({ checkNumerics: false });
    expect(Number.isNaN((await g([-1]).log().data())[0])).toBe(true);
  });

  it('a target out of range throws the CPU\u2019s error, at the next read', async () => {
    const logits = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6];
    const targets = Int32Array.from([1, 7]);
    expect(() => E.crossEntropy(E.tensor(logits, [2, 3]), E.tensor(targets, [2]))).toThrow(
      'targetLogProb: target 7 is out of range for 3 classes',
    );
    const loss = E.crossEntropy(g(logits, [2, 3]), E.tensor(targets, [2], { device: 'webgpu' }));
    await expect(loss.data()).rejects.toThrow('targetLogProb: target 7 is out of range for 3 classes');
    const ok = E.crossEntropy(g(logits, [2, 3]), E.tensor(Int32Array.from([1, 2]), [2], { device: 'webgpu' }));
    expect(Number.isFinite((await ok.data())[0])).toBe(true);
  });

  it('an index out of range throws the CPU error at the next read (embedding, indexSelect, gather)', async () => {
    const table = [0, 1, 2, 3, 4, 5, 6, 7];
    const ids = (v: number[], shape = [v.length]) => E.tensor(Int32Array.from(v), shape);
    const gpuIds = (v: number[], shape = [v.length]) => E.tensor(Int32Array.from(v), shape, { device: 'webgpu' });
    const cases: [string, (d: 'cpu' | 'webgpu') => E.Tensor][] = [
      [
        'gather: index 9 is out of range for dimension 0 of size 4 (x [4, 2])',
        (d) =>
          E.embedding(
            d === 'cpu' ? ids([0, 9]) : gpuIds([0, 9]),
            d === 'cpu' ? E.tensor(table, [4, 2]) : g(table, [4, 2]),
          ),
      ],
      [
        'gather: index -1 is out of range for dimension 1 of size 2 (x [4, 2])',
        (d) =>
          E.indexSelect(
            d === 'cpu' ? E.tensor(table, [4, 2]) : g(table, [4, 2]),
            1,
            d === 'cpu' ? ids([-1]) : gpuIds([-1]),
          ),
      ],
      [
        'gather: index 2 is out of range for dimension 1 of size 2 (x [4, 2])',
        (d) =>
          E.gather(
            d === 'cpu' ? E.tensor(table, [4, 2]) : g(table, [4, 2]),
            1,
            (d === 'cpu' ? ids : gpuIds)([0, 2], [1, 2]),
          ),
      ],
    ];
    for (const [message, make] of cases) {
      expect(() => make('cpu').dataSync()).toThrow(message);
      await expect(make('webgpu').data()).rejects.toThrow(message);
    }
    expect(Array.from(await E.embedding(gpuIds([3, 0]), g(table, [4, 2])).data())).toEqual([6, 7, 0, 1]);
  });

  it('an allocation the adapter cannot give is refused in one line, and the backend goes on working', async () => {
    expect(() => E.zeros([1e12], { device: 'webgpu' })).toThrow(
      /^webgpu: fill: an output of 1000000000000 float32 elements of \d+ bytes is more than this adapter allows/,
    );
    expect(() => E.zeros([3e8], { device: 'webgpu' })).toThrow(
      /more than this adapter allows \(\d+ bytes: maxBufferSize/,
    );
    expect(Array.from(await g([1, 2]).add(1).data())).toEqual([2, 3]);
  });

  it('a NaN query row gives a NaN attention row on the GPU kernels; huge tied logits a uniform softmax', async () => {
    // T = 1 takes the decode kernel, T = 6 the subgroup one on lavapipe, and without subgroups the
    // workgroup-memory one; a NaN and a +Infinity in the query both make the row NaN, as on the CPU.
    const cases = [1, 6].flatMap((T) => [NaN, Infinity].flatMap((bad) => [true, false].map((sg) => ({ T, bad, sg }))));
    for (const { T, bad, sg } of cases) {
      ctx.gpu.configure({ attention: { ...ctx.gpu.options.attention, subgroups: sg ? 'auto' : false } });
      const gen = new E.Generator(T);
      const data = Float32Array.from(E.randn([1, 2, T, 16], { generator: gen }).dataSync());
      data[16 * (T - 1)] = bad;
      const q = E.tensor(data, [1, 2, T, 16], { device: 'webgpu' });
      const k = E.randn([1, 2, T + 2, 16], { generator: gen, device: 'webgpu' });
      const v = E.randn([1, 2, T + 2, 16], { generator: gen, device: 'webgpu' });
      const y = Array.from(await E.scaledDotProductAttention(q, k, v).data());
      const row = (h: number, i: number) => y.slice((h * T + i) * 16, (h * T + i + 1) * 16);
      expect(row(0, T - 1).every(Number.isNaN), `T ${T}, ${bad}, subgroups ${sg}`).toBe(true);
      for (let i = 0; i < T - 1; i++) expect(row(0, i).every(Number.isFinite)).toBe(true);
      for (let i = 0; i < T; i++) expect(row(1, i).every(Number.isFinite)).toBe(true);
    }
    ctx.gpu.configure({ attention: { ...ctx.gpu.options.attention, subgroups: 'auto' } });
    const x = g([1e30, 1e30, 1e30, 1e30, -1e30, -1e30, 5, 5], [2, 4]);
    expect(Array.from(await E.softmax(x).data())).toEqual([0.25, 0.25, 0.25, 0.25, 0, 0, 0.5, 0.5]);
  });

  it('a checkpoint refused on load leaves no buffer behind', async () => {
    const dir = tempDir('igpo-bad-ckpt-');
    const tok = defaultTokenizer();
    const model = new GPT({
      vocabSize: tok.vocabSize,
      blockSize: 32,
      nLayer: 1,
      nHead: 2,
      nEmbd: 8,
      ropeBase: 10000,
      normEps: 1e-5,
    });
    model.p('lnf').assign(E.tensor(Float32Array.from([1, 1, NaN, 1, 1, 1, 1, 1]), [8]));
    const path = join(dir, 'nan.safetensors');
    await saveCheckpoint(path, model, { tokenizer: tok });
    writeFileSync(join(dir, 'junk.safetensors'), 'not a checkpoint at all');
    model.dispose();
    ctx.gpu.trim();
    const before = ctx.gpu.memory().buffersLive;
    for (let i = 0; i < 20; i++) {
      await expect(loadCheckpoint(path, { device: 'webgpu' })).rejects.toThrow(
        /parameter 'lnf' holds a non-finite value \(NaN at element 2\)/,
      );
      await expect(loadCheckpoint(join(dir, 'junk.safetensors'), { device: 'webgpu' })).rejects.toThrow(
        /junk\.safetensors/,
      );
    }
    expect(ctx.gpu.memory().buffersLive).toBe(before);
    const ok = await loadCheckpoint(path, { device: 'webgpu', allowNonFinite: true });
    expect(Number.isNaN((await ok.model.p('lnf').data())[2])).toBe(true);
    ok.model.dispose();
  });
});
