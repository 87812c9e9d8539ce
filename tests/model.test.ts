// The decoder and its KV-cache decoding: cached log-probs equal a full forward over the same tokens,
// scoring rolls back, seeds reproduce, and the sampler's truncations do what they say.

import { fc, test as fcTest } from '@fast-check/vitest';
import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';
import { GPT, type GPTConfig } from '../model/gpt.js';
import { BatchDecoder, sampleToken } from '../model/sample.js';
import { lengthBuckets, type Example } from '../model/train.js';

const tiny: GPTConfig = { vocabSize: 23, blockSize: 64, nLayer: 2, nHead: 2, nEmbd: 8, ropeBase: 10000, normEps: 1e-5 };

/** log p(seq[t] | seq[<t]) for t >= 1 from one full forward of one row, no cache. */
function fullLogprobs(model: GPT, seq: number[]): number[] {
  return E.tidy(() => {
    const ids = E.tensor(Int32Array.from(seq), [1, seq.length]);
    const { logits } = model.forward(ids);
    const targets = E.tensor(Int32Array.from([...seq.slice(1), -1]), [1, seq.length]);
    return Array.from(E.targetLogProb(logits, targets).dataSync()).slice(0, -1);
  });
}

describe('GPT', () => {
  test('shapes, parameter count, and a clear error past blockSize', () => {
    const m = new GPT(tiny);
    const C = tiny.nEmbd;
    expect(m.numParams()).toBe(tiny.vocabSize * C + tiny.nLayer * (2 * C + 4 * C * C + 8 * C * C) + C);
    const { logits } = m.forward(E.randint(0, tiny.vocabSize, [3, 5]));
    expect(logits.shape).toEqual([3, 5, tiny.vocabSize]);
    expect(() => m.forward(E.zeros([1, 65], { dtype: 'int32' }))).toThrow(/exceed blockSize 64/);
    expect(() => new GPT({ ...tiny, nHead: 3 })).toThrow(/divisible by nHead/);
    const pt = new GPT({ ...tiny, prevTokens: 2 });
    const { cache } = pt.forward(E.randint(0, tiny.vocabSize, [1, 4]), { returnCache: true });
    expect(() => pt.forward(E.randint(0, tiny.vocabSize, [1, 1]), { cache })).toThrow(/needs opts.history/);
  });

  fcTest.prop([fc.integer(), fc.constantFrom<'float32' | 'float64'>('float32', 'float64'), fc.constantFrom(0, 1, 2)], {
    numRuns: 10,
  })(
    'KV-cache sampling, tool appends and scoring give the log-probs of a full forward (with 0, 1 or 2 ' +
      'previous-token embeddings)',
    async (seed, dtype, prevTokens) => {
      const tol = dtype === 'float64' ? 1e-9 : 2e-4;
      const g = new E.Generator(seed);
      const model = new GPT({ ...tiny, prevTokens }, { generator: g, dtype });
      const prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9]];
      const dec = new BatchDecoder(model, prompts);
      const first = await dec.generate({ maxTokens: 6, stop: [7], generator: g });
      dec.append([[10, 11], null, [12, 13, 14, 15]]); // a tool's response, of different lengths per row
      const slotsBefore = dec.slots;
      const cont = [[3, 4], [5], null];
      const scored = await dec.score(cont);
      expect(dec.slots).toBe(slotsBefore); // rolled back
      const second = await dec.generate({ maxTokens: 4, generator: g, active: [true, false, true] });
      for (let b = 0; b < 3; b++) {
        const seq = dec.sequences[b];
        expect(seq).toEqual([
          ...prompts[b],
          ...first.tokens[b],
          ...(b === 0 ? [10, 11] : b === 2 ? [12, 13, 14, 15] : []),
          ...second.tokens[b],
        ]);
        const full = fullLogprobs(model, seq);
        // Sampled tokens' log-probs, at the positions where they sit in the full sequence.
        const at = (offset: number, lps: number[]) =>
          lps.forEach((lp, j) => expect(Math.abs(lp - full[offset + j - 1])).toBeLessThan(tol));
        at(prompts[b].length, first.logprobs[b]);
        at(seq.length - second.tokens[b].length, second.logprobs[b]);
        // Scored continuation = full forward of the sequence as it was, extended by the continuation.
        if (cont[b]) {
          const prefix = seq.slice(0, seq.length - second.tokens[b].length);
          const ext = fullLogprobs(model, [...prefix, ...cont[b]!]);
          scored[b].forEach((lp, j) => expect(Math.abs(lp - ext[prefix.length - 1 + j])).toBeLessThan(tol));
        } else expect(scored[b]).toEqual([]);
      }
      expect(second.tokens[1]).toEqual([]);
      dec.dispose();
    },
  );

  fcTest.prop([fc.integer(), fc.constantFrom<'float32' | 'float64'>('float32', 'float64'), fc.constantFrom(0, 2)], {
    numRuns: 10,
  })(
    'retain drops rows: the kept ones decode, append and score as a full forward says, with their own tokens',
    async (seed, dtype, prevTokens) => {
      const tol = dtype === 'float64' ? 1e-9 : 2e-4;
      const g = new E.Generator(seed);
      const model = new GPT({ ...tiny, prevTokens }, { generator: g, dtype });
      const prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9], [2, 2]];
      const dec = new BatchDecoder(model, prompts);
      const first = await dec.generate({ maxTokens: 5, stop: [7], generator: g });
      dec.retain([0, 2, 3]);
      dec.append([[10, 11], null, [12]]);
      dec.retain([0, 2]); // rows 0 and 3 of the original batch
      expect(dec.B).toBe(2);
      const second = await dec.generate({ maxTokens: 4, generator: g });
      const scored = await dec.score([[3, 4], [5]]);
      [0, 3].forEach((orig, b) => {
        const seq = dec.sequences[b];
        const appended = orig === 0 ? [10, 11] : [12];
        expect(seq).toEqual([...prompts[orig], ...first.tokens[orig], ...appended, ...second.tokens[b]]);
        const full = fullLogprobs(model, seq);
        second.logprobs[b].forEach((lp, j) =>
          expect(Math.abs(lp - full[seq.length - second.tokens[b].length + j - 1])).toBeLessThan(tol),
        );
        const ext = fullLogprobs(model, [...seq, ...(b === 0 ? [3, 4] : [5])]);
        scored[b].forEach((lp, j) => expect(Math.abs(lp - ext[seq.length - 1 + j])).toBeLessThan(tol));
      });
      expect(() => dec.retain([1, 0])).toThrow(/increasing indices/);
      expect(() => dec.retain([])).toThrow(/not empty/);
      dec.dispose();
    },
  );

  test('a seed gives the same tokens', async () => {
    const run = async () => {
      const model = new GPT(tiny, { generator: new E.Generator(5) });
      const dec = new BatchDecoder(model, [[1, 2], [3]]);
      const r = await dec.generate({ maxTokens: 8, generator: new E.Generator(9), topK: 5, topP: 0.9 });
      dec.dispose();
      return r.tokens;
    };
    expect(await run()).toEqual(await run());
  });
});

describe('sampleToken', () => {
  const logits = [0.1, 2.5, -1, 2.4, 0];
  test('temperature 0 and top-k 1 are greedy; top-p below the top probability keeps only the argmax', () => {
    const g = new E.Generator(1);
    expect(sampleToken(logits, { temperature: 0 }, g).token).toBe(1);
    for (let i = 0; i < 20; i++) {
      expect(sampleToken(logits, { topK: 1 }, g).token).toBe(1);
      expect(sampleToken(logits, { topP: 0.1 }, g).token).toBe(1);
      expect([1, 3]).toContain(sampleToken(logits, { topK: 2 }, g).token);
    }
  });

  test('log-probs are log softmax(logits / temperature) and frequencies follow them', () => {
    const g = new E.Generator(2);
    const n = 20000;
    const counts = new Array(logits.length).fill(0);
    let lp0 = 0;
    for (let i = 0; i < n; i++) {
      const { token, logprob } = sampleToken(logits, { temperature: 2 }, g);
      counts[token]++;
      if (token === 0) lp0 = logprob;
    }
    const z = logits.reduce((s, x) => s + Math.exp(x / 2), 0);
    expect(lp0).toBeCloseTo(0.1 / 2 - Math.log(z), 12);
    logits.forEach((x, j) => expect(Math.abs(counts[j] / n - Math.exp(x / 2) / z)).toBeLessThan(0.015));
  });

  test('banned tokens are never drawn, greedy or sampled, and the rest renormalise', () => {
    const g = new E.Generator(3);
    expect(sampleToken(logits, { temperature: 0, banned: [1] }, g).token).toBe(3);
    expect(sampleToken(logits, { temperature: 0, banned: [0, 1, 3] }, g).token).toBe(4);
    for (let i = 0; i < 200; i++)
      expect([1, 3]).not.toContain(sampleToken(logits, { temperature: 5, banned: [1, 3] }, g).token);
    const z = [0.1, -1, 0].reduce((s, x) => s + Math.exp(x), 0);
    expect(sampleToken([0.1, 9, -1, 9, 0], { temperature: 0, banned: [1, 3] }, g).logprob).toBeCloseTo(
      0.1 - Math.log(z),
      12,
    );
  });
});

describe('lengthBuckets', () => {
  fcTest.prop([
    fc.array(fc.integer({ min: 1, max: 40 }), { minLength: 1, maxLength: 200 }),
    fc.integer({ min: 1, max: 6 }),
    fc.integer({ min: 1, max: 5 }),
    fc.integer(),
  ])('hands out every example once, in batches sorted into similar lengths', (lengths, batchSize, pool, seed) => {
    let i = 0;
    const next = (): Example => {
      const n = lengths[i++ % lengths.length];
      return { ids: Array.from({ length: n }, () => i), lossMask: Array.from({ length: n }, () => true) };
    };
    const nextBatch = lengthBuckets(next, batchSize, new E.Generator(seed), pool);
    const batches = Array.from({ length: pool }, nextBatch);
    expect(i).toBe(pool * batchSize); // one pool drawn, nothing more
    const ids = batches.flat().map((e) => e.ids[0]);
    expect(new Set(ids).size).toBe(pool * batchSize);
    // Sorted: batches do not overlap in length, whatever order they come out in.
    const ranges = batches
      .map((b) => [Math.min(...b.map((e) => e.ids.length)), Math.max(...b.map((e) => e.ids.length))])
      .sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    for (let k = 1; k < ranges.length; k++) expect(ranges[k][0]).toBeGreaterThanOrEqual(ranges[k - 1][1]);
    for (const b of batches) expect(b.length).toBe(batchSize);
    nextBatch();
    expect(i).toBe(2 * pool * batchSize); // the next pool
  });
});
