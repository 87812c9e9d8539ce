// A KV cache written in place, on WebGPU against the CPU: the writeInto kernel (kernels/inplace.ts), the
// attention kernels' kvLen (only the first S of cap key rows read), and BatchDecoder on top of them.
// Destinations start poisoned, and the unused cache rows hold NaN, so an element written where it should
// not be, or read past S, shows.

import { fc, test } from '@fast-check/vitest';
import { afterEach, expect } from 'vitest';
import * as E from '../../engine/index.js';
import type { DType, TypedArray } from '../../engine/index.js';
import { DECODE_MAX_T } from '../../kernels/attention/index.js';
import { POISON_BITS } from '../../kernels/index.js';
import { GPT, type GPTConfig } from '../../model/gpt.js';
import { BatchDecoder } from '../../model/sample.js';
import { both, describeWebGPU, expectClose, expectSame, floats, ints, take } from '../helpers/webgpu.js';

const SIZES = [1, 3, 17, 33, 65, 127] as const;
const size = fc.constantFrom<number>(...SIZES);

/** n elements of the poison pattern: NaN as float32, 2143289344 as int32. */
const poison = (dtype: DType, n: number): TypedArray => {
  const bits = new Uint32Array(n).fill(POISON_BITS);
  return dtype === 'float32' ? new Float32Array(bits.buffer) : new Int32Array(bits.buffer);
};

describeWebGPU('writeInto kernel', (env) => {
  test.prop(
    [
      fc
        .record({
          shape: fc.array(size, { minLength: 1, maxLength: 3 }),
          axisSeed: fc.nat(),
          extra: size,
          startSeed: fc.nat(),
          dtype: fc.constantFrom<DType>('float32', 'int32'),
        })
        .filter(({ shape, extra }) => shape.reduce((p, d) => p * d, 1) * (1 + extra) <= 300_000)
        .chain((c) => {
          const n = c.shape.reduce((p, d) => p * d, 1);
          return fc.tuple(fc.constant(c), c.dtype === 'float32' ? floats(n, 100) : ints(n, -1000, 1000));
        }),
    ],
    { numRuns: 40 },
  )('writes src into its slots of a poisoned dst as the CPU does, and nothing else', async ([c, data]) => {
    const { gpu, cpu } = env;
    const axis = c.axisSeed % c.shape.length;
    const dstShape = c.shape.map((d, i) => (i === axis ? d + c.extra : d));
    const start = c.startSeed % (c.extra + 1);
    const n = dstShape.reduce((p, d) => p * d, 1);
    const [gs, cs] = both(gpu, cpu, data, c.shape);
    const [gd, cd] = both(gpu, cpu, poison(c.dtype, n), dstShape);
    gpu.writeInto(gd, gs, axis, start);
    cpu.writeInto(cd, cs, axis, start);
    const want = cpu.readSync(cd);
    const what = `src ${JSON.stringify(c.shape)} into ${JSON.stringify(dstShape)} at ${start} along ${axis}`;
    expectSame(await take(gpu, gd.handle, dstShape, c.dtype, [gs]), want, what);
    // The reference itself: the slots hold src, every other element is still the poison.
    const inner = c.shape.slice(axis + 1).reduce((p, d) => p * d, 1);
    const written = want.filter((_, i) => {
      const slot = Math.floor(i / inner) % dstShape[axis];
      return slot >= start && slot < start + c.shape[axis];
    });
    expectSame(c.dtype === 'float32' ? Float32Array.from(written) : Int32Array.from(written), data, `${what} (CPU)`);
    const untouched = new Uint32Array(want.buffer).filter((_, i) => {
      const slot = Math.floor(i / inner) % dstShape[axis];
      return slot < start || slot >= start + c.shape[axis];
    });
    expect(untouched.every((b) => b === POISON_BITS)).toBe(true);
  });
});

describeWebGPU('attention kernels over the first kvLen rows of a cache', (env) => {
  afterEach(() => {
    env.gpu.configure({ attention: { subgroups: 'auto', constantLoops: 'auto' } });
  });

  /** T query rows on S = T + past keys, in buffers of cap = S + spare rows whose unused rows are NaN. */
  const caseArb = (headSizes: number[]) =>
    fc
      .record({
        B0: fc.constantFrom(1, 2),
        H: fc.constantFrom(1, 3),
        T: fc.constantFrom(1, 3, DECODE_MAX_T + 1, 33, 65, 127),
        past: fc.constantFrom(0, 1, 17, 33),
        spare: fc.constantFrom(1, 3, 17, 65),
        hs: fc.constantFrom(...headSizes),
        withBias: fc.boolean(),
      })
      .filter((c) => c.B0 * c.H * (c.T + c.past + c.spare) * c.hs * c.T <= 600_000)
      .chain((c) => {
        const S = c.T + c.past;
        const BH = c.B0 * c.H;
        return fc.record({
          c: fc.constant({ ...c, S, cap: S + c.spare }),
          q: floats(BH * c.T * c.hs, 2),
          k: floats(BH * S * c.hs, 2),
          v: floats(BH * S * c.hs, 2),
          bias: c.withBias
            ? fc.array(fc.constantFrom(0, 0, 0, -Infinity, 0.5), { minLength: c.B0 * S, maxLength: c.B0 * S })
            : fc.constant(null),
        });
      });

  /** rows (B, S, w) -> (B, cap, w) with NaN in rows S..cap-1. */
  const inCache = (x: ArrayLike<number>, B: number, S: number, cap: number, w: number) => {
    const out = new Float32Array(B * cap * w).fill(NaN);
    for (let b = 0; b < B; b++) for (let i = 0; i < S * w; i++) out[b * cap * w + i] = x[b * S * w + i];
    return out;
  };

  // The adapter's default kernels; the workgroup-memory ones (adapters without subgroups); and the
  // constant-bound loops of hardware adapters (a head size of 4 only: lavapipe compiles unrolled loops slowly).
  const variants = [
    { label: '', subgroups: 'auto', constantLoops: 'auto', headSizes: [5, 16], runs: 24 },
    { label: ', workgroup-memory kernels', subgroups: false, constantLoops: 'auto', headSizes: [5, 16], runs: 10 },
    { label: ', constant-bound loops', subgroups: false, constantLoops: true, headSizes: [4], runs: 4 },
  ] as const;
  for (const t of variants) {
    test.prop([caseArb([...t.headSizes])], { numRuns: t.runs })(
      `forward (decode and tiled${t.label}) matches the CPU on the used rows alone`,
      async ({ c, q, k, v, bias }) => {
        env.gpu.configure({ attention: { subgroups: t.subgroups, constantLoops: t.constantLoops } });
        const { gpu, cpu } = env;
        const BH = c.B0 * c.H;
        const qs = [c.B0, c.H, c.T, c.hs];
        const [ks, kc] = [
          [c.B0, c.H, c.S, c.hs],
          [c.B0, c.H, c.cap, c.hs],
        ];
        const biasData = bias && Float32Array.from(bias);
        const scale = 1 / Math.sqrt(c.hs);
        const what = `q ${JSON.stringify(qs)} S ${c.S} of ${c.cap} bias ${!!bias}`;
        // The reference: the CPU on exactly the used rows, no kvLen.
        const cq = { handle: cpu.upload(q), shape: qs, dtype: 'float32' as const };
        const view = (data: Float32Array, shape: number[]) => ({
          handle: cpu.upload(data),
          shape,
          dtype: 'float32' as const,
        });
        const want = (cpu.fused as E.FusedKernels).attention(
          cq,
          view(k, ks),
          view(v, ks),
          scale,
          biasData ? view(biasData, [c.B0, c.S]) : undefined,
        );
        const [gq] = both(gpu, cpu, q, qs);
        const [gk] = both(gpu, cpu, inCache(k, BH, c.S, c.cap, c.hs), kc);
        const [gv] = both(gpu, cpu, inCache(v, BH, c.S, c.cap, c.hs), kc);
        const gb = biasData ? both(gpu, cpu, inCache(biasData, c.B0, c.S, c.cap, 1), [c.B0, c.cap])[0] : undefined;
        const got = (gpu.fused as E.FusedKernels).attention(gq, gk, gv, scale, gb, c.S);
        const lseShape = qs.slice(0, -1);
        expectClose(
          await take(gpu, got.out, qs, 'float32'),
          cpu.readSync({ handle: want.out, shape: qs, dtype: 'float32' }),
          1e-4,
          `out ${what}`,
        );
        expectClose(
          await take(gpu, got.lse, lseShape, 'float32', [gq, gk, gv, ...(gb ? [gb] : [])]),
          cpu.readSync({ handle: want.lse, shape: lseShape, dtype: 'float32' }),
          1e-4,
          `lse ${what}`,
        );
      },
    );
  }
});

describeWebGPU('BatchDecoder on a cache written in place', () => {
  test('generate, append (past a growth of the capacity), retain and score give the log-probs of the CPU', async () => {
    const cfg: GPTConfig = {
      vocabSize: 31,
      blockSize: 128,
      nLayer: 2,
      nHead: 2,
      nEmbd: 16,
      ropeBase: 10000,
      normEps: 1e-5,
      prevTokens: 2,
    };
    const onCpu = new GPT(cfg, { generator: new E.Generator(4) });
    const onGpu = new GPT(cfg, { generator: new E.Generator(4), device: 'webgpu' });
    const prompts = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 10, 11]];
    const [cpu, gpu] = [new BatchDecoder(onCpu, prompts), new BatchDecoder(onGpu, prompts)];
    const close = (got: number[][], want: number[][], what: string) =>
      got.forEach((row, b) => expectClose(row, want[b], 1e-4, `${what}, row ${b}`));
    // Sampled on the GPU; the CPU scores the same tokens teacher-forced, then takes them as appended.
    const sampled = await gpu.generate({ maxTokens: 8, stop: [7], generator: new E.Generator(5) });
    close(sampled.logprobs, await cpu.score(sampled.tokens), 'sampled tokens');
    cpu.append(sampled.tokens);
    const tool = [[10, 11, 12, 13, 14, 15, 16, 17, 18], null, [12, 13]]; // past 16 slots: the cache grows
    for (const dec of [cpu, gpu]) dec.append(tool);
    expect(gpu.slots).toBe(cpu.slots);
    const cont = [[3, 4, 5, 6, 7, 8], [5], [1, 2]];
    close(await gpu.score(cont), await cpu.score(cont), 'scored after the append');
    for (const dec of [cpu, gpu]) dec.retain([0, 2]);
    const more = await gpu.generate({ maxTokens: 6, generator: new E.Generator(6) });
    close(more.logprobs, await cpu.score(more.tokens), 'sampled after retain');
    expect(gpu.sequences.map((s, b) => s.slice(0, -more.tokens[b].length))).toEqual(cpu.sequences);
    for (const dec of [cpu, gpu]) dec.dispose();
    onCpu.dispose();
    onGpu.dispose();
  });
});
