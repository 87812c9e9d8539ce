// The matmul WGSL kernel (kernels/matmul.ts) against the CPU backend: the planned layout and every forced
// layout (rows and vec4 groups per thread, workgroup width, subgroups, split-K), all four transpose flag
// combinations, broadcast batches, odd sizes off every tile, skinny M = 1..64, f16 inputs, NaN and Inf.
// Outputs (and split-K's partial sums) are poisoned before each kernel runs, so an element no thread
// writes fails. Not a benchmark: bench/suites/kernels.ts times it.

import { fc, test as fcTest } from '@fast-check/vitest';
// Plain tests use vitest's `it`: @fast-check/vitest's `test(name, fn)` runs fn numRuns times.
import { expect, it } from 'vitest';
import type { CpuBackend, DType, TypedArray, View } from '../../engine/index.js';
import type { WebGPUBackend } from '../../kernels/index.js';
import { canUseSubgroups } from '../../kernels/features.js';
import { matmul, packF16, planMatmul, type MatmulConfig, type MatmulOptions } from '../../kernels/matmul.js';
import { both, describeWebGPU, expectClose, expectSame, floats, ints, sizeOfShape, take } from '../helpers/webgpu.js';

const RTOL = 1e-4;
/**
 * Per-test timeout: each new shape class compiles a pipeline, and lavapipe takes 0.3 to 3 s per matmul
 * layout (Mesa caches them on disk, so later runs are quicker); the properties meet dozens of classes.
 */
const COMPILING = 240_000;
/** Odd sizes, multiples of 4 (the vec4 paths) and sizes just off the tiles (8, 16, 32, 64 wide). */
const DIMS = [1, 2, 3, 4, 5, 8, 17, 20, 33, 36, 65, 127];

/** Batch shapes for a and b that broadcast together (each dim equal, or 1 on one side; ranks may differ). */
const batchPair = fc
  .array(fc.tuple(fc.constantFrom(1, 2, 3), fc.constantFrom('both', 'a1', 'b1')), { maxLength: 3 })
  .chain((dims) =>
    fc.integer({ min: 0, max: dims.length }).map((dropB) => {
      const a = dims.map(([d, k]) => (k === 'a1' ? 1 : d));
      const b = dims.map(([d, k]) => (k === 'b1' ? 1 : d)).slice(dropB);
      const out = dims.map(([d]) => d);
      return { a, b, out };
    }),
  );

interface Case {
  M: number;
  N: number;
  K: number;
  transA: boolean;
  transB: boolean;
  aShape: number[];
  bShape: number[];
  out: number[];
  dtype: DType;
}

/** A case and its data; floats stay away from 0 so that no product is subnormal (GPUs flush those). */
function caseArb(
  mnk: fc.Arbitrary<[number, number, number]>,
  dtypes: DType[] = ['float32'],
  maxWork = 400_000,
): fc.Arbitrary<[Case, TypedArray, TypedArray]> {
  return fc
    .tuple(mnk, fc.boolean(), fc.boolean(), batchPair, fc.constantFrom(...dtypes))
    .filter(([[M, N, K], , , bp]) => sizeOfShape(bp.out) * M * N * Math.max(K, 1) <= maxWork)
    .chain(([[M, N, K], transA, transB, bp, dtype]) => {
      const aShape = [...bp.a, ...(transA ? [K, M] : [M, K])];
      const bShape = [...bp.b, ...(transB ? [N, K] : [K, N])];
      const vals = (n: number): fc.Arbitrary<TypedArray> => (dtype === 'float32' ? floats(n, 2, 1e-3) : ints(n, -9, 9));
      const c: Case = { M, N, K, transA, transB, aShape, bShape, out: [...bp.out, M, N], dtype };
      return fc.tuple(fc.constant(c), vals(sizeOfShape(aShape)), vals(sizeOfShape(bShape)));
    });
}

const dim = fc.constantFrom(...DIMS);
const anyMNK = fc.tuple(dim, dim, dim);

/** Forced layouts: every TM, vec4 groups, widths, with and without subgroups and split-K. */
const layoutArb: fc.Arbitrary<Partial<MatmulConfig>> = fc.record({
  tm: fc.constantFrom<MatmulConfig['tm']>(1, 2, 4, 8, 16, 32),
  nv: fc.constantFrom<MatmulConfig['nv']>(1, 2),
  wg: fc.constantFrom<MatmulConfig['wg']>(8, 16, 64),
  subgroups: fc.boolean(),
  splitK: fc.constantFrom(1, 1, 3),
});

const what = (c: Case, extra = '') =>
  `${JSON.stringify(c.aShape)}${c.transA ? '^T' : ''} @ ${JSON.stringify(c.bShape)}${c.transB ? '^T' : ''} ` +
  `${c.dtype}${extra}`;

/** Runs the GPU kernel and the CPU reference on the same data and compares (int32 exactly). */
async function check(
  gpu: WebGPUBackend,
  cpu: CpuBackend,
  c: Case,
  a: TypedArray,
  b: TypedArray,
  opts: MatmulOptions = {},
): Promise<void> {
  const [ga, ca] = both(gpu, cpu, a, c.aShape);
  const [gb, cb] = both(gpu, cpu, b, c.bShape);
  const got = await take(gpu, matmul(gpu, ga, gb, c.transA, c.transB, c.out, opts), c.out, c.dtype, [ga, gb]);
  const want = cpu.readSync({ handle: cpu.matmul(ca, cb, c.transA, c.transB, c.out), shape: c.out, dtype: c.dtype });
  const label = what(c, opts.config ? ` ${JSON.stringify(opts.config)}` : '');
  if (c.dtype === 'int32') expectSame(got, want, label);
  else expectClose(got, want, RTOL, label);
}

/** The value of IEEE half-float bits. */
function f16Value(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

describeWebGPU('matmul kernel', (env) => {
  fcTest.prop([caseArb(anyMNK, ['float32', 'float32', 'int32'])], { numRuns: 24 })(
    'planned layout: batched, broadcast, transposed, float32 and int32',
    async ([c, a, b]) => {
      await check(env.gpu, env.cpu, c, a, b);
    },
    COMPILING,
  );

  fcTest.prop([caseArb(anyMNK, ['float32', 'int32'], 200_000), layoutArb], { numRuns: 20 })(
    'every layout on odd sizes: TM, vec4 groups, width, subgroups, split-K',
    async ([c, a, b], layout) => {
      const config = { ...layout, subgroups: layout.subgroups === true && canUseSubgroups(env.gpu) };
      await check(env.gpu, env.cpu, c, a, b, { config });
    },
    COMPILING,
  );

  const skinnyMNK = fc.tuple(
    fc.integer({ min: 1, max: 64 }),
    fc.constantFrom(...DIMS, 64, 256, 260),
    fc.constantFrom(...DIMS, 64, 256, 301),
  );
  fcTest.prop([caseArb(skinnyMNK, ['float32'], 600_000)], { numRuns: 20 })(
    'skinny M = 1..64 (decoding, sampling) takes the skinny layout',
    async ([c, a, b]) => {
      const plan = planMatmul(env.gpu, c.M, c.N, c.K, sizeOfShape(c.out.slice(0, -2)));
      expect(plan.kind).toBe('skinny');
      expect(plan.tm).toBeGreaterThanOrEqual(Math.min(c.M, 16));
      await check(env.gpu, env.cpu, c, a, b);
    },
    COMPILING,
  );

  const longK = fc.tuple(fc.constantFrom(1, 3, 8, 16), fc.constantFrom(1, 17, 64), fc.constantFrom(512, 777, 1024));
  fcTest.prop([caseArb(longK, ['float32', 'int32'], 2_000_000)], { numRuns: 10 })(
    'few workgroups and a long K split K; the partial sums add up',
    async ([c, a, b]) => {
      const plan = planMatmul(env.gpu, c.M, c.N, c.K, sizeOfShape(c.out.slice(0, -2)));
      if (sizeOfShape(c.out.slice(0, -2)) === 1) expect(plan.splitK).toBeGreaterThan(1);
      await check(env.gpu, env.cpu, c, a, b);
    },
    COMPILING,
  );

  fcTest.prop([caseArb(anyMNK, ['float32'], 200_000), fc.boolean()], { numRuns: 12 })(
    'f16 inputs (converted on load, f32 sums) match the CPU on the rounded values',
    async ([c, a, b], sg) => {
      const { gpu, cpu } = env;
      if (!gpu.features.has('shader-f16')) {
        expect(() =>
          matmul(
            gpu,
            { handle: null, shape: c.aShape, dtype: 'float32' },
            { handle: null, shape: c.bShape, dtype: 'float32' },
            false,
            false,
            c.out,
            { inputs: 'f16' },
          ),
        ).toThrow(/shader-f16/);
        return;
      }
      const [pa, pb] = [packF16(a), packF16(b)];
      const round = (p: Int32Array, n: number) => Float32Array.from(new Uint16Array(p.buffer).subarray(0, n), f16Value);
      const [ra, rb] = [round(pa, a.length), round(pb, b.length)];
      const ga: View = { handle: gpu.upload(pa), shape: c.aShape, dtype: 'float32' };
      const gb: View = { handle: gpu.upload(pb), shape: c.bShape, dtype: 'float32' };
      const config = { subgroups: sg && canUseSubgroups(gpu) };
      const got = await take(
        gpu,
        matmul(gpu, ga, gb, c.transA, c.transB, c.out, { inputs: 'f16', config }),
        c.out,
        'float32',
      );
      for (const v of [ga, gb]) gpu.free(v.handle, 'int32');
      const [ca, cb] = [
        { handle: cpu.upload(ra), shape: c.aShape, dtype: 'float32' as const },
        { handle: cpu.upload(rb), shape: c.bShape, dtype: 'float32' as const },
      ];
      const want = cpu.readSync({
        handle: cpu.matmul(ca, cb, c.transA, c.transB, c.out),
        shape: c.out,
        dtype: 'float32',
      });
      expectClose(got, want, RTOL, what(c, ' f16 inputs'));
    },
    COMPILING,
  );

  /** Data with NaN, +Inf and -Inf sprinkled in, at moderate magnitudes (no overflow, whatever the order). */
  const withSpecials = (n: number) =>
    fc
      .tuple(
        floats(n, 2, 1e-3),
        fc.array(fc.tuple(fc.nat(), fc.constantFrom(NaN, Infinity, -Infinity)), { maxLength: 3 }),
      )
      .map(([v, sp]) => {
        const out = Float32Array.from(v);
        for (const [i, x] of sp) if (n > 0) out[i % n] = x;
        return out;
      });
  const specialCase = caseArb(anyMNK, ['float32'], 100_000).chain(([c]) =>
    fc.tuple(fc.constant(c), withSpecials(sizeOfShape(c.aShape)), withSpecials(sizeOfShape(c.bShape))),
  );
  fcTest.prop([specialCase, fc.boolean()], { numRuns: 12 })(
    'NaN and Inf propagate as on the CPU, with and without subgroups (masked K tails never make 0 * Inf)',
    async ([c, a, b], sg) => {
      await check(env.gpu, env.cpu, c, a, b, { config: { subgroups: sg && canUseSubgroups(env.gpu) } });
    },
    COMPILING,
  );

  fcTest.prop([fc.constantFrom(1, 3, 17, 65), fc.constantFrom(0, 5)])(
    'K = 0 gives zeros, and empty outputs are fine',
    async (M, N) => {
      const { gpu } = env;
      const a = { handle: gpu.fill([M, 0], 'float32', 1), shape: [M, 0], dtype: 'float32' as const };
      const b = { handle: gpu.fill([0, N], 'float32', 1), shape: [0, N], dtype: 'float32' as const };
      const got = await take(gpu, gpu.matmul(a, b, false, false, [M, N]), [M, N], 'float32', [a, b]);
      expectSame(got, new Float32Array(M * N), 'K = 0');
    },
  );

  it(
    'every transpose flag combination, aligned (vec4) and odd, with a broadcast batch',
    async () => {
      const { gpu, cpu } = env;
      for (const [M, N, K] of [
        [36, 20, 68],
        [33, 17, 65],
      ]) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            const aShape = [2, 1, ...(transA ? [K, M] : [M, K])];
            const bShape = [3, ...(transB ? [N, K] : [K, N])];
            const c: Case = { M, N, K, transA, transB, aShape, bShape, out: [2, 3, M, N], dtype: 'float32' };
            const rnd = (n: number, s: number) =>
              Float32Array.from({ length: n }, (_, i) => Math.cos(i * 0.731 + s) + 0.05);
            await check(gpu, cpu, c, rnd(sizeOfShape(aShape), 1), rnd(sizeOfShape(bShape), 2));
          }
        }
      }
    },
    COMPILING,
  );

  it('the benchmark shapes take the tuned layouts and match the CPU', async () => {
    const { gpu, cpu } = env;
    for (const [M, N, K] of [
      [256, 256, 256],
      [300, 130, 260],
      [4096, 64, 64],
      [8, 256, 64],
    ]) {
      const c: Case = {
        M,
        N,
        K,
        transA: false,
        transB: false,
        aShape: [M, K],
        bShape: [K, N],
        out: [M, N],
        dtype: 'float32',
      };
      const rnd = (n: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 12.9898 + M) * 0.5 + 0.01);
      expect(planMatmul(gpu, M, N, K, 1).kind).toBe(M <= 64 ? 'skinny' : 'tiled');
      await check(gpu, cpu, c, rnd(M * K), rnd(K * N));
    }
  });

  it('refuses mixed dtypes and a forced subgroup layout the device cannot run', () => {
    const { gpu } = env;
    const a = { handle: gpu.fill([2, 2], 'float32', 1), shape: [2, 2], dtype: 'float32' as const };
    const b = { handle: gpu.fill([2, 2], 'int32', 1), shape: [2, 2], dtype: 'int32' as const };
    expect(() => matmul(gpu, a, b, false, false, [2, 2])).toThrow(/share a dtype/);
    if (!canUseSubgroups(gpu))
      expect(() => matmul(gpu, a, a, false, false, [2, 2], { config: { subgroups: true } })).toThrow(/subgroups/);
    gpu.free(a.handle);
    gpu.free(b.handle);
  });
});
