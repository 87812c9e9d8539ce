// The decoder's fused kernels on WebGPU (kernels/rope.ts: q, k, v into heads with RoPE; kernels/norms.ts:
// the residual add with RMSNorm) against the CPU's composed forms, values and gradients, and the cost of
// one decode step of the default decoder in dispatches, submits, bind groups and buffers created.

import { fc, test as fcTest } from '@fast-check/vitest';
import { expect, it } from 'vitest';
import * as E from '../../engine/index.js';
import type { TypedArray } from '../../engine/index.js';
import { PRESETS } from '../../igpo/presets.js';
import { rowPartsTuning } from '../../kernels/rowreduce.js';
import { GPT } from '../../model/gpt.js';
import { BatchDecoder } from '../../model/sample.js';
import { both, describeWebGPU, expectClose, floats, take } from '../helpers/webgpu.js';

interface Input {
  data: Float32Array;
  shape: number[];
  grad?: boolean;
}

/**
 * fn on `device`: its outputs and the gradients of the inputs marked grad under the loss
 * sum_i sum(y_i * cot_i) (random cotangents: an all-ones one hides transpositions), read back.
 */
async function runOn(
  device: E.Device,
  inputs: readonly Input[],
  fn: (xs: E.Tensor[]) => E.Tensor[],
  cots: readonly Float32Array[],
): Promise<{ ys: TypedArray[]; grads: TypedArray[] }> {
  const xs = inputs.map((i) => E.tensor(i.data, i.shape, { device, requiresGrad: i.grad ?? false }));
  const ys = fn(xs);
  const cs = ys.map((y, k) => E.tensor(cots[k], y.shape, { device }));
  const loss = ys.map((y, k) => E.sum(E.mul(y, cs[k]))).reduce((a, b) => E.add(a, b));
  loss.backward();
  const out = await Promise.all(ys.map((y) => y.data()));
  const grads = await Promise.all(xs.filter((_, k) => inputs[k].grad).map((x) => x.grad!.data()));
  E.dispose([xs, xs.map((x) => x.grad), ys, cs, loss]);
  return { ys: out, grads };
}

async function expectSameOnBoth(
  inputs: readonly Input[],
  fn: (xs: E.Tensor[]) => E.Tensor[],
  cots: readonly Float32Array[],
  rtol: number,
  what: string,
): Promise<void> {
  const g = await runOn('webgpu', inputs, fn, cots);
  const c = await runOn('cpu', inputs, fn, cots);
  g.ys.forEach((y, k) => expectClose(y, c.ys[k], rtol, `${what}: output ${k}`));
  g.grads.forEach((gr, k) => expectClose(gr, c.grads[k], rtol, `${what}: gradient ${k}`));
}

/** Angles as the decoder's tables hold them: cos and sin of one angle per (row, pair). */
function angles(n: number, seed: number): [Float32Array, Float32Array] {
  const a = Array.from({ length: n }, (_, i) => Math.sin(seed * 7.31 + i * 1.7) * 40);
  return [Float32Array.from(a, Math.cos), Float32Array.from(a, Math.sin)];
}

const ODD = [1, 3, 17, 33, 65, 127];

describeWebGPU('fused decoder kernels: q, k, v heads with RoPE', (env) => {
  // B x T rows of C = nh x hs, with odd rows and heads and head sizes around 2, 6 and 34.
  const qkvCase = fc
    .record({
      B: fc.constantFrom(1, 2, 3),
      T: fc.constantFrom(...ODD),
      nh: fc.constantFrom(1, 3, 4),
      hs: fc.constantFrom(2, 6, 16, 34),
      seed: fc.integer({ min: 0, max: 1000 }),
    })
    .filter(({ B, T, nh, hs }) => B * T * nh * hs <= 40_000)
    .chain((c) => {
      const C = c.nh * c.hs;
      const n = c.B * c.T * C;
      return fc.tuple(
        fc.constant(c),
        floats(n, 2),
        floats(C * C, 0.5),
        floats(C * C, 0.5),
        floats(C * C, 0.5),
        fc.tuple(floats(n, 1), floats(n, 1), floats(n, 1)),
      );
    });

  fcTest.prop([qkvCase], { numRuns: 30 })(
    'E.qkvHeads: heads, rotations and gradients of h, wq, wk, wv match the CPU',
    async ([{ B, T, nh, hs, seed }, h, wq, wk, wv, cots]) => {
      const C = nh * hs;
      const [cos, sin] = angles(B * T * (hs / 2), seed);
      const inputs: Input[] = [
        { data: h, shape: [B, T, C], grad: true },
        { data: wq, shape: [C, C], grad: true },
        { data: wk, shape: [C, C], grad: true },
        { data: wv, shape: [C, C], grad: true },
        { data: cos, shape: [B, T, hs / 2] },
        { data: sin, shape: [B, T, hs / 2] },
      ];
      await expectSameOnBoth(
        inputs,
        ([x, a, b, c, co, si]) => E.qkvHeads(x, a, b, c, co, si, nh),
        cots,
        2e-5,
        `qkvHeads B ${B} T ${T} nh ${nh} hs ${hs}`,
      );
    },
    // 30 runs, each compiling its shape class on a cold cache: about a minute when CI runs the hs = 64
    // attention kernels beside it on 2 cores.
    180_000,
  );

  it('ropeHeads writes every element (poisoned outputs), and rotates by the formula', async () => {
    const { gpu } = env;
    const [B, T, nh, hs] = [3, 17, 3, 6];
    const C = nh * hs;
    const n = B * T * C;
    const src = [0, 1, 2].map((s) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + s)));
    const [cos, sin] = angles(B * T * (hs / 2), 5);
    const [q, k, v] = src.map((d) => ({ handle: gpu.upload(d), shape: [B, T, C], dtype: 'float32' as const }));
    const co = { handle: gpu.upload(cos), shape: [B, T, hs / 2], dtype: 'float32' as const };
    const si = { handle: gpu.upload(sin), shape: [B, T, hs / 2], dtype: 'float32' as const };
    const r = gpu.fused.ropeHeads!(q, k, v, co, si, nh);
    const shape = [B, nh, T, hs];
    const outs = [
      await take(gpu, r.q, shape, 'float32'),
      await take(gpu, r.k, shape, 'float32'),
      await take(gpu, r.v, shape, 'float32', [q, k, v]),
    ];
    const half = hs / 2;
    for (let b = 0; b < B; b++)
      for (let t = 0; t < T; t++)
        for (let hd = 0; hd < nh; hd++)
          for (let i = 0; i < half; i++) {
            const s = (b * T + t) * C + hd * hs + i;
            const d = ((b * nh + hd) * T + t) * hs + i;
            const [c, sn] = [cos[(b * T + t) * half + i], sin[(b * T + t) * half + i]];
            for (let j = 0; j < 2; j++) {
              const [x1, x2] = [src[j][s], src[j][s + half]];
              expect(outs[j][d]).toBeCloseTo(x1 * c - x2 * sn, 5);
              expect(outs[j][d + half]).toBeCloseTo(x1 * sn + x2 * c, 5);
            }
            expect([outs[2][d], outs[2][d + half]]).toEqual([src[2][s], src[2][s + half]]);
          }
    // The backward undoes the forward (a rotation's transpose is its inverse), element for element.
    const g = { handle: gpu.upload(outs[0] as Float32Array), shape, dtype: 'float32' as const };
    const back = await take(gpu, gpu.fused.ropeHeadsBackward!(g, co, si), [B, T, C], 'float32', [g, co, si]);
    expectClose(back, src[0], 1e-6, 'ropeHeadsBackward of ropeHeads');
  });

  it('bad input: one line naming the op and the shapes', () => {
    const x = E.zeros([2, 3, 12], { device: 'webgpu' });
    const w = E.zeros([12, 12], { device: 'webgpu' });
    const cs = E.zeros([2, 3, 3], { device: 'webgpu' });
    expect(() => E.qkvHeads(x, w, w, w, cs, cs, 3)).toThrow(
      /qkvHeads: cos and sin must be \[2, 3, 2\] float32, got \[2, 3, 3\]/,
    );
    expect(() => E.qkvHeads(x, w, w, w, cs, cs, 5)).toThrow(/qkvHeads: h \[2, 3, 12\] must be .* 5 heads/);
    E.dispose([x, w, cs]);
  });
});

describeWebGPU('fused decoder kernels: residual add with RMSNorm', (env) => {
  const normCase = fc
    .tuple(fc.constantFrom(...ODD), fc.constantFrom(1, 3, 4, 17, 33, 64, 65, 127, 300))
    .chain(([rows, C]) =>
      fc.tuple(
        fc.constant<number[]>([rows, C]),
        floats(rows * C, 3),
        floats(rows * C, 3),
        floats(C, 2),
        fc.tuple(floats(rows * C, 1), floats(rows * C, 1)),
      ),
    );

  // minThreads 1: one thread per row (vec4 or scalar units by C); 100000: a workgroup per row.
  fcTest.prop([normCase, fc.constantFrom(1e-5, 0.1), fc.constantFrom(1, 100_000)], { numRuns: 30 })(
    'addRmsNorm kernel: sum, y and rstd match the CPU (x + r, then rmsNorm)',
    async ([shape, x, r, w], eps, minThreads) => {
      const { gpu, cpu } = env;
      rowPartsTuning.minThreads = minThreads;
      try {
        const [gx, cx] = both(gpu, cpu, x, shape);
        const [gr, cr] = both(gpu, cpu, r, shape);
        const [gw, cw] = both(gpu, cpu, w, [shape[1]]);
        const out = gpu.fused.addRmsNorm!(gx, gr, gw, eps);
        const sum = cpu.binary('add', cx, cr, shape);
        const want = cpu.fused.rmsNorm({ handle: sum, shape, dtype: 'float32' }, cw, eps);
        const read = (h: unknown, s: number[]) => cpu.readSync({ handle: h, shape: s, dtype: 'float32' });
        const what = `[${shape}] eps ${eps}`;
        expectClose(await take(gpu, out.sum, shape, 'float32'), read(sum, shape), 0, `sum ${what}`);
        expectClose(await take(gpu, out.y, shape, 'float32'), read(want.y, shape), 1e-5, `y ${what}`);
        expectClose(
          await take(gpu, out.rstd, [shape[0]], 'float32', [gx, gr, gw]),
          read(want.rstd, [shape[0]]),
          1e-5,
          `rstd ${what}`,
        );
      } finally {
        rowPartsTuning.minThreads = 'auto';
      }
    },
  );

  fcTest.prop([normCase], { numRuns: 12 })(
    'E.addRmsNorm: outputs and gradients of x, r and the weight match the CPU',
    async ([shape, x, r, w, cots]) => {
      const inputs: Input[] = [
        { data: x, shape, grad: true },
        { data: r, shape, grad: true },
        { data: w, shape: [shape[1]], grad: true },
      ];
      await expectSameOnBoth(inputs, ([a, b, c]) => E.addRmsNorm(a, b, c, 1e-5), cots, 1e-5, `addRmsNorm [${shape}]`);
    },
  );

  it('bad input: r must match x', () => {
    const x = E.zeros([2, 8], { device: 'webgpu' });
    const r = E.zeros([2, 4], { device: 'webgpu' });
    const w = E.ones([8], { device: 'webgpu' });
    expect(() => E.addRmsNorm(x, r, w)).toThrow(/addRmsNorm: r \[2, 4\] float32 must match x \[2, 8\] float32/);
    E.dispose([x, r, w]);
  });
});

describeWebGPU('one decode step of the default decoder', (env) => {
  it('costs at most the dispatches, submits, bind groups and buffers it costs today', async () => {
    const { gpu } = env;
    gpu.configure({ poisonAllocations: false }); // a poisoned allocation is a fill dispatch of its own
    const cfg = { vocabSize: 107, ropeBase: 10000, normEps: 1e-5, ...PRESETS.default.model };
    const model = new GPT(cfg, { generator: new E.Generator(0), device: 'webgpu' });
    const B = 8;
    const prompts = Array.from({ length: B }, (_, b) =>
      Array.from({ length: 64 }, (_, t) => ((b * 7 + t * 3) % 100) + 1),
    );
    const dec = new BatchDecoder(model, prompts, 0);
    try {
      await dec.generate({ maxTokens: 4, temperature: 1, generator: new E.Generator(7) }); // warm: pipelines, pool
      const before = { ...gpu.stats };
      const steps = 8;
      await dec.generate({ maxTokens: steps, temperature: 1, generator: new E.Generator(7) });
      const per = Object.fromEntries(
        Object.entries(gpu.stats).map(([k, v]) => [k, (v - before[k as keyof typeof before]) / steps]),
      );
      // Steady state, per step: one forward of [8, 1] and one read of the logits.
      expect(per.reads).toBe(1);
      expect(per.dispatches).toBeLessThanOrEqual(46);
      expect(per.submits).toBeLessThanOrEqual(2.5);
      expect(per.bindGroups).toBeLessThanOrEqual(12);
      expect(per.buffersCreated).toBeLessThanOrEqual(1);
      expect(per.stagingCreated).toBe(0);
      expect(per.pipelines).toBe(0);
    } finally {
      dec.dispose();
      model.dispose();
      gpu.configure({ poisonAllocations: true });
    }
  });
});
