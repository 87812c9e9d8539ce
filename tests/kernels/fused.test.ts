// The fused row kernels (kernels/logsoftmax.ts, targetlogprob.ts, norms.ts) and the fused AdamW step
// (kernels/adamw.ts) against the CPU's fused kernels (engine/cpu/fused.ts), kernel by kernel and through
// the engine's differentiable ops on both devices. Attention has its own file (attention.test.ts).

import { fc, test as fcTest } from '@fast-check/vitest';
import { expect, it } from 'vitest';
import * as E from '../../engine/index.js';
import type { AdamWParams, TypedArray, View } from '../../engine/index.js';
import type { WebGPUBackend } from '../../kernels/index.js';
import { planLogSoftmax } from '../../kernels/logsoftmax.js';
import { planRowParts, rowPartsTuning } from '../../kernels/rowreduce.js';
import { both, describeWebGPU, expectClose, floats, sizeOfShape, take, view } from '../helpers/webgpu.js';

/** Row lengths: odd, around the row workgroup size (64) and its multiples, and beyond. */
const COLS = [1, 3, 17, 31, 33, 63, 65, 127, 129, 300, 1000];
const ROWS = [1, 2, 3, 17, 33, 65, 127];

/** A shape [...rows, cols] of rank 1 to 3 with at most maxSize elements. */
const rowShape = (cols: readonly number[] = COLS, maxSize = 40_000) =>
  fc
    .tuple(fc.array(fc.constantFrom(...ROWS), { maxLength: 2 }), fc.constantFrom(...cols))
    .map(([lead, c]) => [...lead, c])
    .filter((s) => sizeOfShape(s) <= maxSize);

const readCpu = (env: { cpu: E.CpuBackend }, handle: unknown, shape: readonly number[]) =>
  env.cpu.readSync({ handle, shape, dtype: 'float32' });

// -------------------------------------------------------------------------------------------------
// Running an engine expression on both devices.

interface Input {
  data: TypedArray;
  shape: number[];
  grad?: boolean;
}

/**
 * Builds the inputs on `device`, runs fn, backpropagates sum(y * cot) and returns y and the gradients of
 * the inputs marked grad, read back (everything is disposed).
 */
async function runOn(
  device: E.Device,
  inputs: readonly Input[],
  fn: (xs: E.Tensor[]) => E.Tensor,
  cot: Float32Array,
): Promise<{ y: TypedArray; grads: TypedArray[] }> {
  const xs = inputs.map((i) => E.tensor(i.data, i.shape, { device, requiresGrad: i.grad ?? false }));
  const y = fn(xs);
  const c = E.tensor(cot, y.shape, { device });
  const loss = E.sum(E.mul(y, c));
  loss.backward();
  const out = await y.data();
  const grads = await Promise.all(xs.filter((_, k) => inputs[k].grad).map((x) => x.grad!.data()));
  E.dispose([xs, xs.map((x) => x.grad), y, c, loss]);
  return { y: out, grads };
}

/** fn's output and input gradients on webgpu match the CPU's within rtol. */
async function expectSameOnBoth(
  inputs: readonly Input[],
  fn: (xs: E.Tensor[]) => E.Tensor,
  cot: Float32Array,
  rtol: number,
  what: string,
): Promise<void> {
  const g = await runOn('webgpu', inputs, fn, cot);
  const c = await runOn('cpu', inputs, fn, cot);
  expectClose(g.y, c.y, rtol, `${what}: output`);
  g.grads.forEach((gr, k) => expectClose(gr, c.grads[k], rtol, `${what}: gradient ${k}`));
}

/** Targets for rows of V classes: about a quarter masked (-1), the rest in [0, V). */
const targetsArb = (rows: number, V: number) =>
  fc
    .array(
      fc.oneof({ weight: 1, arbitrary: fc.constant(-1) }, { weight: 3, arbitrary: fc.integer({ min: 0, max: V - 1 }) }),
      { minLength: rows, maxLength: rows },
    )
    .map((a) => Int32Array.from(a));

describeWebGPU('fused kernels: log-softmax and target log-prob', (env) => {
  const fusedOf = (b: WebGPUBackend | E.CpuBackend) => b.fused as E.FusedKernels;

  fcTest.prop(
    [rowShape().chain((s) => fc.tuple(fc.constant(s), floats(sizeOfShape(s), 10), floats(sizeOfShape(s), 2)))],
    { numRuns: 30 },
  )('logSoftmax and logSoftmaxBackward match the CPU', async ([shape, x, dy]) => {
    const { gpu, cpu } = env;
    const [gx, cx] = both(gpu, cpu, x, shape);
    const want = readCpu(env, fusedOf(cpu).logSoftmax(cx), shape);
    expectClose(
      await take(gpu, fusedOf(gpu).logSoftmax(gx), shape, 'float32', [gx]),
      want,
      1e-5,
      `logSoftmax ${JSON.stringify(shape)}`,
    );
    // The backward from the CPU's y, so that only the backward kernel is compared.
    const [gy, cy] = both(gpu, cpu, want as Float32Array, shape);
    const [gd, cd] = both(gpu, cpu, dy, shape);
    const got = await take(gpu, fusedOf(gpu).logSoftmaxBackward(gy, gd), shape, 'float32', [gy, gd]);
    expectClose(
      got,
      readCpu(env, fusedOf(cpu).logSoftmaxBackward(cy, cd), shape),
      1e-5,
      `logSoftmaxBackward ${JSON.stringify(shape)}`,
    );
  });

  it(
    'logSoftmax: -Infinity entries drop out, an all -Infinity row is NaN, +Infinity and ' + 'NaN as on the CPU',
    async () => {
      const { gpu, cpu } = env;
      for (const cols of [5, 40, 300]) {
        const rows = [
          [],
          [-Infinity],
          [-Infinity, -Infinity, -Infinity],
          'all',
          [Infinity],
          [Infinity, Infinity],
          [NaN],
        ] as const;
        const data = new Float32Array(rows.length * cols);
        rows.forEach((specials, r) => {
          for (let j = 0; j < cols; j++) data[r * cols + j] = specials === 'all' ? -Infinity : Math.sin(r * 31 + j) * 4;
          if (specials !== 'all') specials.forEach((v, k) => (data[r * cols + ((k * 7 + 1) % cols)] = v));
        });
        const shape = [rows.length, cols];
        const [gx, cx] = both(gpu, cpu, data, shape);
        const got = await take(gpu, fusedOf(gpu).logSoftmax(gx), shape, 'float32', [gx]);
        expectClose(got, readCpu(env, fusedOf(cpu).logSoftmax(cx), shape), 1e-5, `cols ${cols}`);
      }
    },
  );

  // kernels/logsoftmax.ts's layouts: one thread per row (parts = 1, one kernel) and several per row (states,
  // then a merge), each with vec4 units (cols % 4 == 0) and scalar ones; some rows hold NaN / +-Inf, in the
  // four-unit blocks and in the tail, so the exact fallback after the fast path runs too.
  fcTest.prop(
    [
      fc.constantFrom(1, 2, 3, 17, 65).chain((rows) =>
        fc.constantFrom(4, 8, 64, 68, 65, 127, 1000, 1001, 4100).chain((cols) =>
          fc.tuple(
            fc.constant([rows, cols]),
            fc.constantFrom(1, 100_000),
            floats(rows * cols, 10),
            fc.array(fc.tuple(fc.nat(rows * cols - 1), fc.constantFrom(NaN, Infinity, -Infinity)), {
              maxLength: 3,
            }),
          ),
        ),
      ),
    ],
    { numRuns: 40 },
  )(
    'logSoftmax and target log-prob: one thread or several per row, vec4 or scalar units, specials ' +
      'anywhere, match the CPU',
    async ([shape, minThreads, x, specials]) => {
      const { gpu, cpu } = env;
      const data = Float32Array.from(x);
      for (const [at, v] of specials) data[at] = v;
      const [rows, cols] = shape;
      rowPartsTuning.minThreads = minThreads;
      try {
        const plan = planLogSoftmax(gpu, rows, cols);
        expect(plan.width).toBe(cols % 4 === 0 ? 4 : 1);
        // minThreads 1 always gives one part; 100000 gives several wherever a row has 32 units or more.
        expect(plan.parts > 1).toBe(minThreads > 1 && plan.units >= 32);
        const what =
          `${JSON.stringify(shape)} parts ${plan.parts} width ${plan.width} specials ` + `${JSON.stringify(specials)}`;
        const [gx, cx] = both(gpu, cpu, data, shape);
        const got = await take(gpu, fusedOf(gpu).logSoftmax(gx), shape, 'float32');
        expectClose(got, readCpu(env, fusedOf(cpu).logSoftmax(cx), shape), 1e-5, `logSoftmax ${what}`);
        // Targets: row 0 masked, the others spread over the row (first, last and inner columns).
        const t = Int32Array.from({ length: rows }, (_, r) => (r === 0 && rows > 1 ? -1 : (r * 37) % cols));
        const dout = Float32Array.from({ length: rows }, (_, r) => Math.cos(r) + 0.1);
        const [gt, ct] = both(gpu, cpu, t, [rows]);
        const [gd, cd] = both(gpu, cpu, dout, [rows]);
        const lp = await take(gpu, fusedOf(gpu).targetLogProb(gx, gt), [rows], 'float32');
        expectClose(lp, readCpu(env, fusedOf(cpu).targetLogProb(cx, ct), [rows]), 1e-5, `targetLogProb ${what}`);
        const dl = await take(gpu, fusedOf(gpu).targetLogProbBackward(gx, gt, gd), shape, 'float32', [gx, gt, gd]);
        expectClose(
          dl,
          readCpu(env, fusedOf(cpu).targetLogProbBackward(cx, ct, cd), shape),
          1e-5,
          `targetLogProbBackward ${what}`,
        );
      } finally {
        rowPartsTuning.minThreads = 'auto';
      }
    },
  );

  it('large magnitudes (|x| up to 1e4) stay finite in log-softmax and target log-prob', async () => {
    const { gpu, cpu } = env;
    for (const [bound, cols] of [
      [80, 33],
      [80, 1000],
      [1e4, 129],
    ] as const) {
      const rows = 17;
      const x = Float32Array.from({ length: rows * cols }, (_, i) => Math.fround(Math.sin(i * 12.9898) * bound));
      const t = Int32Array.from({ length: rows }, (_, r) => (r * 13) % cols);
      const dout = Float32Array.from({ length: rows }, (_, r) => Math.cos(r));
      const [gx, cx] = both(gpu, cpu, x, [rows, cols]);
      const [gt, ct] = both(gpu, cpu, t, [rows]);
      const [gd, cd] = both(gpu, cpu, dout, [rows]);
      const checks: [string, unknown, unknown, number[]][] = [
        ['logSoftmax', fusedOf(gpu).logSoftmax(gx), fusedOf(cpu).logSoftmax(cx), [rows, cols]],
        ['targetLogProb', fusedOf(gpu).targetLogProb(gx, gt), fusedOf(cpu).targetLogProb(cx, ct), [rows]],
        [
          'targetLogProbBackward',
          fusedOf(gpu).targetLogProbBackward(gx, gt, gd),
          fusedOf(cpu).targetLogProbBackward(cx, ct, cd),
          [rows, cols],
        ],
      ];
      for (const [name, g, c, shape] of checks) {
        const got = await take(gpu, g, shape, 'float32');
        expect(got.every(Number.isFinite), `${name} |x| ~ ${bound}: finite`).toBe(true);
        expectClose(got, readCpu(env, c, shape), 1e-5, `${name} |x| ~ ${bound}`);
      }
      for (const v of [gx, gt, gd]) gpu.free(v.handle);
    }
  });

  fcTest.prop(
    [
      rowShape()
        .filter((s) => s.length >= 2)
        .chain((s) => {
          const rows = sizeOfShape(s.slice(0, -1));
          const V = s[s.length - 1];
          return fc.tuple(fc.constant(s), floats(rows * V, 10), targetsArb(rows, V), floats(rows, 2));
        }),
    ],
    { numRuns: 30 },
  )('targetLogProb and targetLogProbBackward match the CPU, masked rows included', async ([shape, x, t, dout]) => {
    const { gpu, cpu } = env;
    const rowsShape = shape.slice(0, -1);
    const [gx, cx] = both(gpu, cpu, x, shape);
    const [gt, ct] = both(gpu, cpu, t, rowsShape);
    const [gd, cd] = both(gpu, cpu, dout, rowsShape);
    const what = `${JSON.stringify(shape)} targets ${t.slice(0, 8)}`;
    const lp = await take(gpu, fusedOf(gpu).targetLogProb(gx, gt), rowsShape, 'float32');
    expectClose(lp, readCpu(env, fusedOf(cpu).targetLogProb(cx, ct), rowsShape), 1e-5, `targetLogProb ${what}`);
    t.forEach((v, r) => v < 0 && expect(lp[r], `masked row ${r}`).toBe(0));
    const dl = await take(gpu, fusedOf(gpu).targetLogProbBackward(gx, gt, gd), shape, 'float32', [gx, gt, gd]);
    expectClose(
      dl,
      readCpu(env, fusedOf(cpu).targetLogProbBackward(cx, ct, cd), shape),
      1e-5,
      `targetLogProbBackward ${what}`,
    );
    const V = shape[shape.length - 1];
    t.forEach(
      (v, r) =>
        v < 0 &&
        expect(
          dl.subarray(r * V, (r + 1) * V).every((g) => g === 0),
          `masked row ${r} has zero gradient`,
        ).toBe(true),
    );
  });

  it('a target out of range makes the read throw the CPU error; a masked one (-1) gives 0', async () => {
    const { gpu } = env;
    const x = Float32Array.from({ length: 3 * 5 }, (_, i) => i / 7);
    const [gx, gt] = [view(gpu, x, [3, 5]), view(gpu, Int32Array.of(1, 5, -1), [3])];
    await expect(take(gpu, fusedOf(gpu).targetLogProb(gx, gt), [3], 'float32', [gt])).rejects.toThrow(
      'targetLogProb: target 5 is out of range for 5 classes',
    );
    const ok = view(gpu, Int32Array.of(1, 4, -1), [3]);
    const lp = await take(gpu, fusedOf(gpu).targetLogProb(gx, ok), [3], 'float32', [gx, ok]);
    expect(Number.isFinite(lp[0]) && Number.isFinite(lp[1])).toBe(true);
    expect(lp[2]).toBe(0);
  });

  fcTest.prop(
    [
      rowShape(COLS, 20_000)
        .filter((s) => s.length >= 2)
        .chain((s) => {
          const rows = sizeOfShape(s.slice(0, -1));
          const V = s[s.length - 1];
          return fc.tuple(
            fc.constant(s),
            floats(rows * V, 8),
            targetsArb(rows, V),
            floats(rows * V, 2),
            floats(rows, 2),
          );
        }),
    ],
    { numRuns: 12 },
  )('gradients through E.logSoftmax and E.targetLogProb match the CPU', async ([shape, x, t, cotLs, cotLp]) => {
    const rowsShape = shape.slice(0, -1);
    const what = JSON.stringify(shape);
    await expectSameOnBoth(
      [{ data: x, shape, grad: true }],
      ([a]) => E.logSoftmax(a),
      cotLs,
      1e-5,
      `logSoftmax ${what}`,
    );
    await expectSameOnBoth(
      [
        { data: x, shape, grad: true },
        { data: t, shape: rowsShape },
      ],
      ([a, tg]) => E.targetLogProb(a, tg),
      cotLp,
      1e-5,
      `targetLogProb ${what}`,
    );
  });
});

describeWebGPU('fused kernels: LayerNorm and RMSNorm', (env) => {
  const fusedOf = (b: WebGPUBackend | E.CpuBackend) => b.fused as E.FusedKernels;
  // Rows up to 300: more than one chunk of rows in the deterministic dweight / dbias reduction.
  const normCase = fc
    .tuple(fc.constantFrom(1, 3, 17, 65, 127, 300), fc.constantFrom(...COLS))
    .filter(([r, c]) => r * c <= 40_000)
    .chain(([rows, C]) =>
      fc.tuple(fc.constant<number[]>([rows, C]), floats(rows * C, 5), floats(C, 2), floats(C, 2), floats(rows * C, 2)),
    );

  // minThreads 1: the forward's one-thread-per-row kernel (kernels/norms.ts), vec4 or scalar units by C;
  // 100000: the workgroup-per-row kernel wherever a row has 32 units or more.
  fcTest.prop([normCase, fc.constantFrom(1e-5, 1e-6, 0.1), fc.constantFrom(1, 100_000)], { numRuns: 40 })(
    'layerNorm and rmsNorm forward and backward match the CPU',
    async ([shape, x, w, b, dy], eps, minThreads) => {
      rowPartsTuning.minThreads = minThreads;
      try {
        await normForwardBackward(
          [shape, x, w, b, dy],
          eps,
          `parts ${planRowParts(env.gpu, shape[0], shape[1]).parts}`,
        );
      } finally {
        rowPartsTuning.minThreads = 'auto';
      }
    },
  );

  async function normForwardBackward(
    [shape, x, w, b, dy]: [number[], Float32Array, Float32Array, Float32Array, Float32Array],
    eps: number,
    layout: string,
  ): Promise<void> {
    const { gpu, cpu } = env;
    const [rows, C] = shape;
    const what = `${JSON.stringify(shape)} eps ${eps} ${layout}`;
    const [gx, cx] = both(gpu, cpu, x, shape);
    const [gw, cw] = both(gpu, cpu, w, [C]);
    const [gb, cb] = both(gpu, cpu, b, [C]);
    const [gdy, cdy] = both(gpu, cpu, dy, shape);

    const ln = fusedOf(gpu).layerNorm(gx, gw, gb, eps);
    const lnC = fusedOf(cpu).layerNorm(cx, cw, cb, eps);
    expectClose(await take(gpu, ln.y, shape, 'float32'), readCpu(env, lnC.y, shape), 1e-5, `layerNorm y ${what}`);
    expectClose(
      await take(gpu, ln.mean, [rows], 'float32'),
      readCpu(env, lnC.mean, [rows]),
      1e-5,
      `layerNorm mean ${what}`,
    );
    expectClose(
      await take(gpu, ln.rstd, [rows], 'float32'),
      readCpu(env, lnC.rstd, [rows]),
      1e-5,
      `layerNorm rstd ${what}`,
    );
    // Backward from the CPU's statistics, so only the backward kernels are compared.
    const [gm, cm] = both(gpu, cpu, readCpu(env, lnC.mean, [rows]), [rows]);
    const [gr, cr] = both(gpu, cpu, readCpu(env, lnC.rstd, [rows]), [rows]);
    const lb = fusedOf(gpu).layerNormBackward(gx, gw, gm, gr, gdy);
    const lbC = fusedOf(cpu).layerNormBackward(cx, cw, cm, cr, cdy);
    expectClose(await take(gpu, lb.dx, shape, 'float32'), readCpu(env, lbC.dx, shape), 1e-5, `layerNorm dx ${what}`);
    expectClose(
      await take(gpu, lb.dweight, [C], 'float32'),
      readCpu(env, lbC.dweight, [C]),
      1e-5,
      `layerNorm dweight ${what}`,
    );
    expectClose(
      await take(gpu, lb.dbias, [C], 'float32'),
      readCpu(env, lbC.dbias, [C]),
      1e-5,
      `layerNorm dbias ${what}`,
    );

    const rms = fusedOf(gpu).rmsNorm(gx, gw, eps);
    const rmsC = fusedOf(cpu).rmsNorm(cx, cw, eps);
    expectClose(await take(gpu, rms.y, shape, 'float32'), readCpu(env, rmsC.y, shape), 1e-5, `rmsNorm y ${what}`);
    expectClose(
      await take(gpu, rms.rstd, [rows], 'float32'),
      readCpu(env, rmsC.rstd, [rows]),
      1e-5,
      `rmsNorm rstd ${what}`,
    );
    const [gr2, cr2] = both(gpu, cpu, readCpu(env, rmsC.rstd, [rows]), [rows]);
    const rb = fusedOf(gpu).rmsNormBackward(gx, gw, gr2, gdy);
    const rbC = fusedOf(cpu).rmsNormBackward(cx, cw, cr2, cdy);
    expectClose(await take(gpu, rb.dx, shape, 'float32'), readCpu(env, rbC.dx, shape), 1e-5, `rmsNorm dx ${what}`);
    expectClose(
      await take(gpu, rb.dweight, [C], 'float32'),
      readCpu(env, rbC.dweight, [C]),
      1e-5,
      `rmsNorm dweight ${what}`,
    );
    for (const v of [gx, gw, gb, gdy, gm, gr, gr2]) gpu.free(v.handle);
  }

  it('dweight and dbias are deterministic: the same bits on every run', async () => {
    const { gpu } = env;
    const [rows, C] = [1000, 33];
    const x = view(
      gpu,
      Float32Array.from({ length: rows * C }, (_, i) => Math.sin(i)),
      [rows, C],
    );
    const w = view(
      gpu,
      Float32Array.from({ length: C }, (_, i) => Math.cos(i)),
      [C],
    );
    const m = view(
      gpu,
      Float32Array.from({ length: rows }, (_, i) => Math.sin(i) / 10),
      [rows],
    );
    const r = view(
      gpu,
      Float32Array.from({ length: rows }, (_, i) => 1 + Math.cos(i) / 10),
      [rows],
    );
    const dy = view(
      gpu,
      Float32Array.from({ length: rows * C }, (_, i) => Math.cos(i * 3)),
      [rows, C],
    );
    const runs: Uint32Array[] = [];
    for (let k = 0; k < 3; k++) {
      const g = fusedOf(gpu).layerNormBackward(x, w, m, r, dy);
      gpu.free(g.dx);
      const dw = await take(gpu, g.dweight, [C], 'float32');
      const db = await take(gpu, g.dbias, [C], 'float32');
      runs.push(new Uint32Array(Float32Array.from([...dw, ...db]).buffer));
    }
    expect(runs[1]).toEqual(runs[0]);
    expect(runs[2]).toEqual(runs[0]);
    for (const v of [x, w, m, r, dy]) gpu.free(v.handle);
  });

  fcTest.prop([normCase], { numRuns: 12 })(
    'gradients through E.layerNorm and E.rmsNorm match the CPU',
    async ([shape, x, w, b, cot]) => {
      const C = shape[1];
      const what = JSON.stringify(shape);
      const inputs = [
        { data: x, shape, grad: true },
        { data: w, shape: [C], grad: true },
        { data: b, shape: [C], grad: true },
      ];
      await expectSameOnBoth(inputs, ([a, wt, bs]) => E.layerNorm(a, wt, bs), cot, 1e-5, `layerNorm ${what}`);
      await expectSameOnBoth(inputs.slice(0, 2), ([a, wt]) => E.rmsNorm(a, wt), cot, 1e-5, `rmsNorm ${what}`);
    },
  );
});

describeWebGPU('fused kernels: AdamW', (env) => {
  const hpArb = fc.record({
    lr: fc.constantFrom(1e-3, 3e-2, 0.1),
    beta1: fc.constantFrom(0.9, 0.8),
    beta2: fc.constantFrom(0.999, 0.95),
    eps: fc.constantFrom(1e-8, 1e-6),
    weightDecay: fc.constantFrom(0, 0.01, 0.1),
    step: fc.constantFrom(1, 2, 10, 1000),
  });

  fcTest.prop(
    [
      fc.constantFrom(1, 3, 17, 127, 1000, 5000).chain((n) =>
        fc.tuple(
          fc.constant(n),
          floats(n, 2),
          floats(n, 1),
          floats(n, 0.1),
          floats(n, 0.01).map((a) => a.map(Math.abs)),
        ),
      ),
      hpArb,
    ],
    {
      numRuns: 25,
    },
  )('one step updates param, m and v in place like the CPU', async ([n, p, g, m, v], hp: AdamWParams) => {
    const { gpu, cpu } = env;
    const views = [p, g, m, v].map((a) => both(gpu, cpu, a, [n]));
    const [G, C] = [views.map((x) => x[0]), views.map((x) => x[1])] as [View[], View[]];
    (gpu.fused as E.FusedKernels).adamw(G[0], G[1], G[2], G[3], hp);
    (cpu.fused as E.FusedKernels).adamw(C[0], C[1], C[2], C[3], hp);
    for (const [k, name] of [
      [0, 'param'],
      [2, 'm'],
      [3, 'v'],
    ] as const) {
      expectClose(await gpu.read(G[k]), cpu.readSync(C[k]), 1e-5, `adamw ${name} n ${n} ${JSON.stringify(hp)}`);
    }
    for (const x of G) gpu.free(x.handle);
  });

  it('E.AdamW steps on webgpu track the CPU over several steps', async () => {
    const shapes = [[17, 33], [65], [3, 5, 7]];
    const run = async (device: E.Device) => {
      const params = shapes.map((s, k) =>
        E.tensor(
          Float32Array.from({ length: sizeOfShape(s) }, (_, i) => Math.sin(i + k)),
          s,
          { device, requiresGrad: true },
        ),
      );
      const opt = new E.AdamW(params, { lr: 0.05, weightDecay: 0.1, betas: [0.9, 0.99] });
      for (let step = 0; step < 4; step++) {
        E.tidy(() => {
          const loss = params.reduce(
            (acc, p, k) => E.add(acc, E.sum(E.mul(E.mul(p, p), Math.cos(step + k)))),
            E.tensor(0, { device }),
          );
          loss.backward();
        });
        opt.step();
        opt.zeroGrad();
      }
      const out = await Promise.all(params.map((p) => p.data()));
      E.dispose(params);
      return out;
    };
    const gpu = await run('webgpu');
    const cpu = await run('cpu');
    gpu.forEach((g, k) => expectClose(g, cpu[k], 1e-5, `param ${k}`));
  });
});
