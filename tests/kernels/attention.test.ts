// The flash-style attention kernels (kernels/attention/) against the CPU's fused attention: forward
// (tiled and decode), backward, keyBias, fully masked rows, gradients through E.scaledDotProductAttention,
// and memory that stays O(T * hs) at T = 2048. Not the row kernels (fused.test.ts).

import { fc, test as fcTest } from '@fast-check/vitest';
import { afterEach, expect, it } from 'vitest';
import * as E from '../../engine/index.js';
import type { TypedArray } from '../../engine/index.js';
import { DECODE_MAX_T } from '../../kernels/attention/index.js';
import { attentionKernels, chooseAttentionKernels } from '../../kernels/attention/choose.js';
import type { WebGPUBackend } from '../../kernels/index.js';
import { rng } from '../helpers/rng.js';
import { both, describeWebGPU, expectClose, floats, sizeOfShape, take } from '../helpers/webgpu.js';

// Few head sizes, because each is a set of pipelines and lavapipe takes about a second per pipeline:
// 5 runs the scalar path, 16 the vec4 path.
const HEAD_SIZES = [5, 16];
/** The unrolled kernels at hs = 64 took 72 s to compile and run on lavapipe (2 cores, no shader cache). */
const HS64_TIMEOUT_MS = 300_000;
type BiasKind = 'none' | 'mask' | 'finite';

interface Case {
  /** q [B0, (H,) T, hs], k and v [B0, (H,) S, hs]; H = 0 means rank 3. */
  B0: number;
  H: number;
  T: number;
  S: number;
  hs: number;
  bias: BiasKind;
}

const qShape = (c: Case) => [c.B0, ...(c.H ? [c.H] : []), c.T, c.hs];
const kShape = (c: Case) => [c.B0, ...(c.H ? [c.H] : []), c.S, c.hs];

/** keyBias [B0, S]: 0 or -Infinity (padding; some rows end up seeing no key), or finite values. */
const biasArb = (kind: BiasKind, n: number): fc.Arbitrary<Float32Array | null> =>
  kind === 'none'
    ? fc.constant(null)
    : kind === 'finite'
      ? floats(n, 3)
      : fc.array(fc.constantFrom(0, 0, -Infinity), { minLength: n, maxLength: n }).map((a) => Float32Array.from(a));

const caseArb = fc
  .record({
    B0: fc.constantFrom(1, 2, 3),
    H: fc.constantFrom(0, 1, 2),
    T: fc.constantFrom(1, 3, DECODE_MAX_T, DECODE_MAX_T + 1, 33, 65, 127),
    extra: fc.constantFrom(0, 1, 7, 40),
    hs: fc.constantFrom(...HEAD_SIZES),
    bias: fc.constantFrom<BiasKind>('none', 'mask', 'finite'),
  })
  .map(({ extra, ...c }): Case => ({ ...c, S: c.T + extra }))
  .filter((c) => sizeOfShape(kShape(c)) * c.T <= 400_000)
  .chain((c) => {
    const nq = sizeOfShape(qShape(c));
    const nk = sizeOfShape(kShape(c));
    return fc.record({
      c: fc.constant(c),
      q: floats(nq, 2),
      k: floats(nk, 2),
      v: floats(nk, 2),
      dout: floats(nq, 2),
      bias: biasArb(c.bias, c.B0 * c.S),
    });
  });

/**
 * expectClose, except where the reference is only cancellation noise (rms below 1e-6: e.g. dq when every row
 * sees a single key, where dS = P (dP - D) is 0 up to rounding): then every element must be within 1e-5.
 */
function expectCloseGrad(got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, what: string): void {
  let ss = 0;
  for (let i = 0; i < want.length; i++) ss += want[i] * want[i];
  if (want.length > 0 && Math.sqrt(ss / want.length) < 1e-6) {
    for (let i = 0; i < want.length; i++)
      if (!(Math.abs(got[i] - want[i]) <= 1e-5))
        throw new Error(`${what}: element ${i} is ${got[i]}, expected ${want[i]} (a reference of rounding noise)`);
    return;
  }
  expectClose(got, want, rtol, what);
}

const describeCase = (c: Case) => `q ${JSON.stringify(qShape(c))} S ${c.S} bias ${c.bias}`;

describeWebGPU('attention kernels', (env) => {
  afterEach(() => {
    env.gpu.configure({ attention: { constantLoops: 'auto', subgroups: 'auto' } });
  });

  /** Runs the forward and backward kernels on both backends (the backward from the CPU's out and lse). */
  async function compareKernels(
    c: Case,
    data: { q: Float32Array; k: Float32Array; v: Float32Array; dout: Float32Array; bias: Float32Array | null },
  ) {
    const { gpu, cpu } = env;
    const what = describeCase(c);
    const qs = qShape(c);
    const ks = kShape(c);
    const lseShape = qs.slice(0, -1);
    const scale = 1 / Math.sqrt(c.hs);
    const [gq, cq] = both(gpu, cpu, data.q, qs);
    const [gk, ck] = both(gpu, cpu, data.k, ks);
    const [gv, cv] = both(gpu, cpu, data.v, ks);
    const [gd, cd] = both(gpu, cpu, data.dout, qs);
    const [gb, cb] = data.bias ? both(gpu, cpu, data.bias, [c.B0, c.S]) : [undefined, undefined];
    const fg = gpu.fused as E.FusedKernels;
    const fc_ = cpu.fused as E.FusedKernels;

    const got = fg.attention(gq, gk, gv, scale, gb);
    const want = fc_.attention(cq, ck, cv, scale, cb);
    const wantOut = cpu.readSync({ handle: want.out, shape: qs, dtype: 'float32' });
    const wantLse = cpu.readSync({ handle: want.lse, shape: lseShape, dtype: 'float32' });
    expectClose(await take(gpu, got.out, qs, 'float32'), wantOut, 1e-4, `out ${what}`);
    expectClose(await take(gpu, got.lse, lseShape, 'float32'), wantLse, 1e-4, `lse ${what}`);

    const [go, co] = both(gpu, cpu, wantOut, qs);
    const [gl, cl] = both(gpu, cpu, wantLse, lseShape);
    const g = fg.attentionBackward(gq, gk, gv, go, gl, gd, scale, gb);
    const w = fc_.attentionBackward(cq, ck, cv, co, cl, cd, scale, cb);
    for (const [name, h, hw, shape] of [
      ['dq', g.dq, w.dq, qs],
      ['dk', g.dk, w.dk, ks],
      ['dv', g.dv, w.dv, ks],
    ] as const) {
      expectCloseGrad(
        await take(gpu, h, shape, 'float32'),
        cpu.readSync({ handle: hw, shape, dtype: 'float32' }),
        1e-4,
        `${name} ${what}`,
      );
    }
    for (const x of [gq, gk, gv, gd, go, gl, ...(gb ? [gb] : [])]) gpu.free(x.handle);
    return { lse: wantLse };
  }

  fcTest.prop([caseArb], { numRuns: 30 })(
    'forward (tiled and decode) and backward match the CPU',
    async ({ c, ...data }) => {
      await compareKernels(c, data);
    },
  );

  // On lavapipe (subgroups of 8) the default above is the subgroup kernels; these are the workgroup-memory
  // ones, which adapters without subgroups (and hardware adapters) take.
  fcTest.prop([caseArb], { numRuns: 12 })(
    'the workgroup-memory kernels (no subgroups) match the CPU too',
    async ({ c, ...data }) => {
      env.gpu.configure({ attention: { ...env.gpu.options.attention, subgroups: false } });
      expect(attentionKernels(env.gpu).subgroups).toBe(false);
      await compareKernels(c, data);
    },
  );

  it('the subgroup kernels run by default on a software adapter with subgroups of 8 or more', () => {
    const gpu: WebGPUBackend = env.gpu;
    const info = (gpu.device as GPUDevice & { adapterInfo?: { subgroupMinSize?: number } }).adapterInfo;
    const expected =
      gpu.adapter.architecture === 'software' && gpu.features.has('subgroups') && (info?.subgroupMinSize ?? 0) >= 8;
    expect(attentionKernels(gpu).subgroups).toBe(expected);
  });

  it(
    'rows that see no key (causal limit plus -Infinity bias) give out 0, lse -Infinity and ' + 'zero gradients',
    async () => {
      // Batch row 0 hides key 0, so its query 0 (which sees only key 0) sees nothing; batch row 1 hides every key.
      const c: Case = { B0: 2, H: 2, T: 5, S: 5, hs: 5, bias: 'mask' };
      const n = sizeOfShape(qShape(c));
      const wave = (k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37 + k));
      const bias = Float32Array.from([-Infinity, 0, 0, 0, 0, -Infinity, -Infinity, -Infinity, -Infinity, -Infinity]);
      for (const T of [5, 1]) {
        const cc = { ...c, T, S: 5 };
        const nq = sizeOfShape(qShape(cc));
        const { lse } = await compareKernels(cc, {
          q: wave(1).subarray(0, nq),
          k: wave(2),
          v: wave(3),
          dout: wave(4).subarray(0, nq),
          bias,
        });
        // b0 = 1 (the second half of the rows) sees nothing at all.
        expect([...lse.subarray(lse.length / 2)].every((x) => x === -Infinity)).toBe(true);
      }
    },
  );

  it('the constant-bound (unrolled) variant, used on hardware adapters, matches the CPU too', async () => {
    env.gpu.configure({ attention: { constantLoops: true, subgroups: false } });
    const c: Case = { B0: 2, H: 0, T: 33, S: 40, hs: 4, bias: 'finite' };
    const wave = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.61 + k) * 2);
    const [nq, nk] = [sizeOfShape(qShape(c)), sizeOfShape(kShape(c))];
    for (const T of [33, 1]) {
      const cc = { ...c, T };
      const m = sizeOfShape(qShape(cc));
      await compareKernels(cc, {
        q: wave(nq, 1).subarray(0, m),
        k: wave(nk, 2),
        v: wave(nk, 3),
        dout: wave(nq, 4).subarray(0, m),
        bias: wave(c.B0 * c.S, 5),
      });
    }
  });

  // The unrolled kernels at the model's head sizes: decode (T <= DECODE_MAX_T) and tiled forward, D, dQ and
  // dK/dV. One bias kind per head size keeps lavapipe's compile time (unrolled loops) within bounds; at
  // hs = 64 that is over a minute (16 and 32: about 16 s together), hence its timeout.
  async function unrolledAtHeadSize(hs: number) {
    env.gpu.configure({ attention: { constantLoops: true, subgroups: false } });
    const rand = rng(1000 + hs);
    const u = (n: number) => Float32Array.from({ length: n }, () => (rand() * 2 - 1) * 2);
    for (const [T, extra] of [
      [1, 6],
      [3, 0],
      [17, 2],
      [33, 0],
      [65, 1],
    ]) {
      const c: Case = { B0: 1, H: 2, T, S: T + extra, hs, bias: 'finite' };
      const [nq, nk] = [sizeOfShape(qShape(c)), sizeOfShape(kShape(c))];
      await compareKernels(c, { q: u(nq), k: u(nk), v: u(nk), dout: u(nq), bias: u(c.B0 * c.S) });
    }
  }
  const UNROLLED_CASES = 'T in 1, 3, 17, 33, 65, B*H = 2';
  for (const hs of [16, 32, 64])
    it(
      `the unrolled kernels match the CPU at hs = ${hs}, ${UNROLLED_CASES}`,
      () => unrolledAtHeadSize(hs),
      hs === 64 ? HS64_TIMEOUT_MS : undefined,
    );

  it('chooses the kernel families by the adapter unless the options force them', () => {
    const auto = { constantLoops: 'auto', subgroups: 'auto' } as const;
    expect(chooseAttentionKernels({ architecture: 'software' }, true, auto)).toEqual({
      constantLoops: false,
      subgroups: true,
    });
    expect(chooseAttentionKernels({ architecture: 'software' }, false, auto)).toEqual({
      constantLoops: false,
      subgroups: false,
    });
    expect(chooseAttentionKernels({ architecture: 'ampere' }, true, auto)).toEqual({
      constantLoops: true,
      subgroups: false,
    });
    expect(chooseAttentionKernels({ architecture: 'ampere' }, true, { constantLoops: false, subgroups: true })).toEqual(
      {
        constantLoops: false,
        subgroups: true,
      },
    );
    expect(() => chooseAttentionKernels({ architecture: 'ampere' }, false, { ...auto, subgroups: true })).toThrow(
      /^attention: the subgroup kernels need the adapter feature 'subgroups'/,
    );
  });

  // ---------------------------------------------------------------------------------------------------
  // Through the engine: E.scaledDotProductAttention and its backward on both devices.

  async function runOn(
    device: E.Device,
    c: Case,
    d: { q: TypedArray; k: TypedArray; v: TypedArray; cot: TypedArray; bias: TypedArray | null },
  ) {
    const opts = { device, requiresGrad: true };
    const [q, k, v] = [E.tensor(d.q, qShape(c), opts), E.tensor(d.k, kShape(c), opts), E.tensor(d.v, kShape(c), opts)];
    const keyBias = d.bias ? E.tensor(d.bias, [c.B0, c.S], { device }) : undefined;
    const y = E.scaledDotProductAttention(q, k, v, { keyBias });
    const cot = E.tensor(d.cot, y.shape, { device });
    const loss = E.sum(E.mul(y, cot));
    loss.backward();
    const out = [await y.data(), await q.grad!.data(), await k.grad!.data(), await v.grad!.data()];
    E.dispose([q, k, v, q.grad, k.grad, v.grad, keyBias, y, cot, loss]);
    return out;
  }

  const engineCases: Case[] = [
    { B0: 2, H: 0, T: 33, S: 33, hs: 16, bias: 'none' }, // T == S
    { B0: 2, H: 2, T: 17, S: 40, hs: 16, bias: 'mask' }, // T < S, padding in the cache
    { B0: 2, H: 2, T: 1, S: 40, hs: 16, bias: 'mask' }, // decode
    { B0: 3, H: 0, T: 1, S: 65, hs: 5, bias: 'none' }, // decode
    { B0: 1, H: 3, T: 65, S: 65, hs: 5, bias: 'finite' },
  ];

  for (const c of engineCases) {
    it(`gradients through E.scaledDotProductAttention match the CPU: ${describeCase(c)}`, async () => {
      const wave = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.731 + k) * 1.5);
      const [nq, nk] = [sizeOfShape(qShape(c)), sizeOfShape(kShape(c))];
      // Padding: the first keys of batch row 0 are hidden (a left-padded cache); finite: a smooth bias.
      const bias =
        c.bias === 'none'
          ? null
          : Float32Array.from({ length: c.B0 * c.S }, (_, i) =>
              c.bias === 'mask' ? (i < 3 ? -Infinity : 0) : Math.cos(i),
            );
      const d = { q: wave(nq, 1), k: wave(nk, 2), v: wave(nk, 3), cot: wave(nq, 4), bias };
      const gpu = await runOn('webgpu', c, d);
      const cpu = await runOn('cpu', c, d);
      ['out', 'dq', 'dk', 'dv'].forEach((name, i) =>
        expectCloseGrad(gpu[i], cpu[i], 1e-4, `${name} ${describeCase(c)}`),
      );
    });
  }

  // ---------------------------------------------------------------------------------------------------
  // Memory.

  it(
    'the forward at T = 2048 (B*H = 2, hs = 64) allocates O(T * hs), never a T x T matrix, and ' + 'matches the CPU',
    async () => {
      const gpu: WebGPUBackend = env.gpu;
      const [B0, H, T, hs] = [1, 2, 2048, 64];
      const shape = [B0, H, T, hs];
      const n = sizeOfShape(shape);
      const wave = (k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.0137 * k + k));
      const data = [wave(1), wave(2), wave(3)];
      const [q, k, v] = data.map((a) => E.tensor(a, shape, { device: 'webgpu' }));
      await q.data(); // uploads done
      gpu.pool.resetPeak();
      const before = gpu.memory().bytesLive;
      const y = E.scaledDotProductAttention(q, k, v);
      const got = await y.data();
      const extra = gpu.memory().bytesPeak - before;
      // out (B*H*T*hs floats) and lse (B*H*T floats), in pool size classes; T*T*4 = 16 MiB would be one score matrix.
      expect(extra).toBeLessThanOrEqual(2 * (n + B0 * H * T) * 4);
      expect(extra).toBeLessThan((T * T * 4) / 8);
      const [cq, ck, cv] = data.map((a) => E.tensor(a, shape, { device: 'cpu' }));
      const want = E.scaledDotProductAttention(cq, ck, cv);
      expectClose(got, await want.data(), 1e-4, 'T = 2048');
      E.dispose([q, k, v, y, cq, ck, cv, want]);
    },
  );

  it('the backward at T = 1024 (hs = 64) allocates O(T * hs) too', async () => {
    const gpu: WebGPUBackend = env.gpu;
    const [T, hs] = [1024, 64];
    const shape = [1, 1, T, hs];
    const n = T * hs;
    const [q, k, v] = [1, 2, 3].map((s) =>
      E.tensor(
        Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.0173 * s + s)),
        shape,
        { device: 'webgpu', requiresGrad: true },
      ),
    );
    const y = E.scaledDotProductAttention(q, k, v);
    const seed = E.tensor(
      Float32Array.from({ length: n }, (_, i) => Math.cos(i)),
      shape,
      { device: 'webgpu' },
    );
    await y.data();
    gpu.pool.resetPeak();
    const before = gpu.memory().bytesLive;
    y.backward(seed);
    await Promise.all([q.grad!.data(), k.grad!.data(), v.grad!.data()]);
    const extra = gpu.memory().bytesPeak - before;
    // dq, dk, dv and D (plus the engine's transient copies), against 4 MiB for one T x T matrix.
    expect(extra).toBeLessThanOrEqual(8 * n * 4);
    expect(extra).toBeLessThan((T * T * 4) / 2);
    E.dispose([q, k, v, q.grad, k.grad, v.grad, y, seed]);
  });
});
