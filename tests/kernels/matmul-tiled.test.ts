// The hardware matmul families (kernels/matmul-tiled.ts, matmul-sgmatrix.ts) forced on whatever adapter
// the tests run on, against the CPU backend: odd sizes off every tile, batched with broadcast, all four
// transpose flags, float32 and int32; the f16 variant on f16-rounded inputs. Outputs are poisoned before
// each kernel runs. Not a benchmark.

import { expect, it } from 'vitest';
import type { TypedArray, View } from '../../engine/index.js';
import { chooseMatmulKernel, type MatmulKernel } from '../../kernels/matmul-family.js';
import { canUseSubgroupMatrix, SUBGROUP_MATRIX_FEATURE } from '../../kernels/matmul-sgmatrix.js';
import { matmulTiled, tiledStorageBytes } from '../../kernels/matmul-tiled.js';
import { both, describeWebGPU, expectClose, expectSame, sizeOfShape, take } from '../helpers/webgpu.js';

const SIZES = [1, 3, 17, 33, 65, 127];
const COMPILING = 240_000;

/** Deterministic pseudo-random data away from 0 (seeded per call). */
function rnd(n: number, seed: number, int: boolean): TypedArray {
  let s = seed >>> 0;
  const next = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32) * 2 - 1;
  if (int) return Int32Array.from({ length: n }, () => Math.round(next() * 9));
  return Float32Array.from({ length: n }, () => {
    const v = next();
    return Math.abs(v) < 1e-3 ? 1e-3 : v;
  });
}

/** Rounds float32 values to f16 precision (nearest even) as the f16 staging does. */
function roundF16(x: Float32Array): Float32Array {
  return x.map((v) => {
    if (v === 0) return 0;
    const e = Math.floor(Math.log2(Math.abs(v)));
    const q = 2 ** (Math.max(e, -14) - 10);
    const t = v / q;
    const r = Math.round(t);
    return (Math.abs(t - Math.trunc(t)) === 0.5 && r % 2 !== 0 ? r - Math.sign(t) : r) * q;
  });
}

interface Case {
  aShape: number[];
  bShape: number[];
  out: number[];
  transA: boolean;
  transB: boolean;
  int: boolean;
}

function mk(
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  ab: number[] = [],
  bb: number[] = [],
  int = false,
): Case {
  const out = [
    ...(ab.length >= bb.length ? ab : bb).map((d, i, arr) =>
      Math.max(d, bb[i - (arr.length - bb.length)] ?? 1, ab[i - (arr.length - ab.length)] ?? 1),
    ),
    M,
    N,
  ];
  return {
    aShape: [...ab, ...(transA ? [K, M] : [M, K])],
    bShape: [...bb, ...(transB ? [N, K] : [K, N])],
    out,
    transA,
    transB,
    int,
  };
}

describeWebGPU('hardware matmul families, forced', (env) => {
  /** `block` forces the tile size (8: 128 x 128) through matmulTiled itself, bypassing the planner. */
  async function run(kernel: MatmulKernel, c: Case, seed: number, f16 = false, block?: 4 | 8): Promise<void> {
    const { gpu, cpu } = env;
    let a = rnd(sizeOfShape(c.aShape), seed, c.int);
    let b = rnd(sizeOfShape(c.bShape), seed + 7, c.int);
    const [ga] = both(gpu, cpu, a, c.aShape);
    const [gb] = both(gpu, cpu, b, c.bShape);
    gpu.configure({ matmulKernel: kernel });
    let got: TypedArray;
    try {
      const h =
        block === undefined
          ? gpu.matmul(ga, gb, c.transA, c.transB, c.out)
          : matmulTiled(gpu, ga, gb, c.transA, c.transB, c.out, { block, f16 });
      got = await take(gpu, h, c.out, c.int ? 'int32' : 'float32', [ga, gb]);
    } finally {
      gpu.configure({ matmulKernel: 'auto' });
    }
    if (f16) [a, b] = [roundF16(a as Float32Array), roundF16(b as Float32Array)];
    const ca: View = { handle: cpu.upload(a), shape: c.aShape, dtype: c.int ? 'int32' : 'float32' };
    const cb: View = { handle: cpu.upload(b), shape: c.bShape, dtype: c.int ? 'int32' : 'float32' };
    const want = cpu.readSync({ handle: cpu.matmul(ca, cb, c.transA, c.transB, c.out), shape: c.out, dtype: ca.dtype });
    const t = (x: boolean) => (x ? '^T' : '');
    const label = `${kernel} ${JSON.stringify(c.aShape)}${t(c.transA)} @ ${JSON.stringify(c.bShape)}${t(c.transB)}`;
    if (c.int) expectSame(got, want, label);
    else expectClose(got, want, f16 ? 1e-3 : 1e-4, label);
  }

  it(
    'tiled f32: M, N, K over odd sizes, and the transposes',
    async () => {
      let seed = 1;
      for (const M of SIZES)
        for (const N of SIZES) {
          const K = SIZES[(M + N) % SIZES.length];
          await run('tiled', mk(M, N, K, seed % 2 === 0, seed % 3 === 0), seed++);
        }
      for (const K of SIZES) await run('tiled', mk(33, 65, K, false, false), seed++);
    },
    COMPILING,
  );

  it(
    'tiled: larger (130 x 257 x 96, 128 x 128 tiles where the device has the memory), batched and broadcast, int32',
    async () => {
      await run('tiled', mk(130, 257, 96, false, false), 11);
      await run('tiled', mk(36, 20, 68, true, true, [2, 1], [3]), 12);
      await run('tiled', mk(33, 17, 65, true, false, [2, 3], [3]), 13);
      await run('tiled', mk(17, 33, 20, false, true, [1], [2]), 14);
      await run('tiled', mk(65, 33, 17, false, false, [2], [], true), 15);
      // K = 0: zeros (compared directly: the reference is not consulted for an empty sum).
      const { gpu } = env;
      const z = { handle: gpu.fill([4, 0], 'float32', 1), shape: [4, 0], dtype: 'float32' as const };
      gpu.configure({ matmulKernel: 'tiled' });
      const h = gpu.matmul(z, { ...z, shape: [0, 8] }, false, false, [4, 8]);
      gpu.configure({ matmulKernel: 'auto' });
      expectSame(await take(gpu, h, [4, 8], 'float32', [z]), new Float32Array(32), 'tiled K = 0');
    },
    COMPILING,
  );

  it(
    'tiled 128 x 128 tiles forced: odd sizes off the tile, transposes, batched, int32',
    async (ctx) => {
      const { gpu } = env;
      if (gpu.device.limits.maxComputeWorkgroupStorageSize < tiledStorageBytes(8, false)) {
        ctx.skip(`128 x 128 tiles: the device has under ${tiledStorageBytes(8, false)} bytes of workgroup memory`);
        return;
      }
      let seed = 40;
      await run('tiled', mk(130, 257, 96, false, false), seed++, false, 8);
      await run('tiled', mk(127, 129, 65, true, true), seed++, false, 8);
      await run('tiled', mk(1, 3, 17, true, false), seed++, false, 8);
      await run('tiled', mk(33, 17, 127, false, true, [2], [2]), seed++, false, 8);
      await run('tiled', mk(65, 129, 33, false, false, [], [], true), seed, false, 8);
    },
    COMPILING,
  );

  it(
    'f16 staging (needs shader-f16): odd sizes and transposes, on f16-rounded inputs',
    async (ctx) => {
      if (!env.gpu.features.has('shader-f16')) ctx.skip('the adapter lacks shader-f16');
      let seed = 100;
      for (const [M, N, K] of [
        [1, 3, 17],
        [17, 33, 65],
        [65, 127, 33],
        [127, 1, 3],
        [130, 257, 96],
      ])
        await run('f16', mk(M, N, K, seed % 2 === 0, seed % 3 === 0, [2], [1]), seed++, true);
    },
    COMPILING,
  );

  it(
    `subgroup matrices (needs ${SUBGROUP_MATRIX_FEATURE}): odd sizes, on f16-rounded inputs`,
    async (ctx) => {
      if (!canUseSubgroupMatrix(env.gpu)) {
        await expect(run('subgroup-matrix', mk(3, 3, 3, false, false), 1)).rejects.toThrow(SUBGROUP_MATRIX_FEATURE);
        ctx.skip(`the adapter lacks ${SUBGROUP_MATRIX_FEATURE} (f16 x f16 -> f32)`);
      }
      let seed = 200;
      for (const M of [1, 17, 65, 127])
        await run('subgroup-matrix', mk(M, 33, 65, seed % 2 === 0, seed % 3 === 0), seed++, true);
    },
    COMPILING,
  );

  it('auto keeps the blocked kernel on a software adapter and refuses an unknown family', () => {
    const { gpu } = env;
    if (gpu.adapter.architecture === 'software') expect(chooseMatmulKernel(gpu, 1024, 1024, 1024, 1)).toBe('blocked');
    expect(() => gpu.configure({ matmulKernel: 'fast' as MatmulKernel })).toThrow(/matmulKernel is 'fast'/);
  });
});
