// The CPU matmul against a naive triple loop in float64, at sizes that are not multiples of the kernel's
// 4x8 tile (1, 3, 17, 33, 65, 127 and the tile edges), under every pair of transpose flags, with
// broadcast batch dims and in float64. Forward values only; gradients are in gradcheck-matmul.test.ts.
// Then the products large enough to split across two threads, bit for bit against one thread.

import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, test } from 'vitest';
import { SPLIT_FLOP, splitCount, threadsReady, wasmGemmThreaded } from '../engine/cpu/wasm-gemm.js';
import * as E from '../engine/index.js';
import { rng } from './helpers/rng.js';

/** Values in [-1, 1) that float32 holds exactly, so the float64 reference sees the same inputs. */
function values(n: number, seed: number): Float64Array {
  const r = rng(seed);
  return Float64Array.from({ length: n }, () => Math.fround(2 * r() - 1));
}

interface Case {
  aShape: number[];
  bShape: number[];
  transA: boolean;
  transB: boolean;
  dtype: 'float32' | 'float64';
}

/**
 * Checks E.matmulT against sum_k op(A)[i, k] op(B)[k, j] in float64, per element within the bound
 * (K + 2) u sum_k |op(A)[i, k] op(B)[k, j]| (u the unit roundoff): rounding in any summation order.
 */
function check(c: Case, seed: number): void {
  const { aShape, bShape, transA, transB, dtype } = c;
  const ra = aShape.length;
  const rb = bShape.length;
  const [M, K] = transA ? [aShape[ra - 1], aShape[ra - 2]] : [aShape[ra - 2], aShape[ra - 1]];
  const N = transB ? bShape[rb - 2] : bShape[rb - 1];
  const aData = values(
    aShape.reduce((p, d) => p * d, 1),
    seed,
  );
  const bData = values(
    bShape.reduce((p, d) => p * d, 1),
    seed + 1,
  );
  const batch = E.broadcastShapes('test', aShape.slice(0, -2), bShape.slice(0, -2));

  const a = E.tensor(aData, aShape, { dtype });
  const b = E.tensor(bData, bShape, { dtype });
  const y = E.matmulT(a, b, transA, transB);
  expect(y.shape).toEqual([...batch, M, N]);
  const got = y.dataSync();

  const u = dtype === 'float32' ? 2 ** -24 : 2 ** -53;
  const nb = batch.reduce((p, d) => p * d, 1);
  // Offsets of each batch entry's matrix in a and b, broadcast like the engine does.
  const aOffs = E.broadcastStrides(aShape.slice(0, -2), batch);
  const bOffs = E.broadcastStrides(bShape.slice(0, -2), batch);
  for (let bi = 0; bi < nb; bi++) {
    let ao = 0;
    let bo = 0;
    for (let d = batch.length - 1, rest = bi; d >= 0; d--) {
      const idx = rest % batch[d];
      rest = Math.floor(rest / batch[d]);
      ao += idx * aOffs[d];
      bo += idx * bOffs[d];
    }
    ao *= M * K;
    bo *= K * N;
    for (let i = 0; i < M; i++) {
      for (let j = 0; j < N; j++) {
        let s = 0;
        let abs = 0;
        for (let k = 0; k < K; k++) {
          const x = aData[ao + (transA ? k * M + i : i * K + k)];
          const w = bData[bo + (transB ? j * K + k : k * N + j)];
          s += x * w;
          abs += Math.abs(x * w);
        }
        const v = got[bi * M * N + i * N + j];
        if (!(Math.abs(v - s) <= (K + 2) * u * abs)) {
          throw new Error(
            `matmulT [${aShape}]${transA ? '^T' : ''} @ [${bShape}]${transB ? '^T' : ''} ${dtype}: ` +
              `batch ${bi}, C[${i}, ${j}] = ${v}, reference ${s} (seed ${seed})`,
          );
        }
      }
    }
  }
}

const FLAGS = [
  [false, false],
  [false, true],
  [true, false],
  [true, true],
] as const;
const ODD = [1, 3, 17, 33, 65, 127];
// The tile is 4 x 8: one short of, exactly, and one past each edge.
const EDGES = [2, 4, 5, 7, 8, 9];

const mat = (rows: number, cols: number, trans: boolean) => (trans ? [cols, rows] : [rows, cols]);

describe('cpu matmul vs a float64 triple loop', () => {
  for (const [transA, transB] of FLAGS) {
    const flags = `transA ${transA}, transB ${transB}`;

    test(`every M, N, K in {${ODD}}, ${flags}`, () => {
      let seed = 1;
      for (const M of ODD)
        for (const N of ODD)
          for (const K of ODD) {
            check({ aShape: mat(M, K, transA), bShape: mat(K, N, transB), transA, transB, dtype: 'float32' }, seed++);
          }
    });

    test(`tile edges: M, N in {${EDGES}}, K in {1, 8, 33}, ${flags}`, () => {
      let seed = 1000;
      for (const M of EDGES)
        for (const N of EDGES)
          for (const K of [1, 8, 33]) {
            check({ aShape: mat(M, K, transA), bShape: mat(K, N, transB), transA, transB, dtype: 'float32' }, seed++);
          }
    });

    test(`broadcast batch dims, ${flags}`, () => {
      let seed = 2000;
      for (const [M, N, K] of [
        [1, 17, 33],
        [3, 5, 7],
        [17, 33, 65],
        [65, 9, 3],
      ]) {
        const a = mat(M, K, transA);
        const b = mat(K, N, transB);
        // Both batched; one side broadcast along an axis; one side missing the batch dims altogether.
        for (const [ba, bb] of [
          [[3], [3]],
          [[2, 1], [3]],
          [
            [1, 3],
            [2, 1],
          ],
          [[], [2, 3]],
          [[4], []],
        ]) {
          check({ aShape: [...ba, ...a], bShape: [...bb, ...b], transA, transB, dtype: 'float32' }, seed++);
        }
      }
    });

    test(`float64, ${flags}`, () => {
      let seed = 3000;
      for (const [M, N, K] of [
        [1, 1, 1],
        [3, 17, 33],
        [33, 65, 17],
        [127, 3, 65],
      ]) {
        check(
          { aShape: [2, ...mat(M, K, transA)], bShape: mat(K, N, transB), transA, transB, dtype: 'float64' },
          seed++,
        );
      }
    });
  }

  test("K across the kernel's K blocks (256 steps) and M across its row blocks, every flag", () => {
    let seed = 6000;
    for (const [transA, transB] of FLAGS)
      for (const [M, N, K] of [
        [17, 33, 255],
        [9, 17, 256],
        [33, 9, 257],
        [5, 65, 513],
        [601, 9, 300],
      ]) {
        check({ aShape: mat(M, K, transA), bShape: mat(K, N, transB), transA, transB, dtype: 'float32' }, seed++);
      }
  });

  test('an empty dimension gives zeros or an empty result', () => {
    expect(Array.from(E.matmul(E.zeros([3, 0]), E.zeros([0, 2])).dataSync())).toEqual([0, 0, 0, 0, 0, 0]);
    expect(E.matmul(E.zeros([0, 4]), E.zeros([4, 5])).shape).toEqual([0, 5]);
  });
});

test('K = 0 gives zeros, also in memory that held a product before, under every transpose flag', () => {
  for (const dtype of ['float32', 'float64'] as const) {
    for (const [transA, transB] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ]) {
      // Fill and free outputs of the size the empty product will ask for, so it may get that memory back.
      for (let i = 0; i < 3; i++) {
        const x = E.ones([2, 17, 17], { dtype });
        const y = E.matmul(x, x);
        E.dispose([x, y]);
      }
      const a = E.zeros(transA ? [2, 0, 17] : [2, 17, 0], { dtype });
      const b = E.zeros(transB ? [17, 0] : [0, 17], { dtype });
      const y = E.matmulT(a, b, transA, transB);
      expect(y.shape).toEqual([2, 17, 17]);
      expect(Math.max(...Array.from(y.dataSync(), Math.abs))).toBe(0);
      E.dispose([a, b, y]);
    }
  }
});

describe.runIf(wasmGemmThreaded)('cpu matmul on two threads', () => {
  const env = process.env.IGPO_THREADS;
  afterEach(() => {
    if (env === undefined) delete process.env.IGPO_THREADS;
    else process.env.IGPO_THREADS = env;
  });

  const f32 = (shape: number[], seed: number) =>
    E.tensor(
      values(
        shape.reduce((p, d) => p * d, 1),
        seed,
      ),
      shape,
      { dtype: 'float32' },
    );

  /** op(A) op(B) with IGPO_THREADS set to `threads`, as raw float32 bits. */
  const bits = (a: E.Tensor, b: E.Tensor, transA: boolean, transB: boolean, threads: number) => {
    process.env.IGPO_THREADS = String(threads);
    return new Uint32Array(E.matmulT(a, b, transA, transB).dataSync().slice().buffer);
  };

  test('every product above the threshold equals one thread bit for bit, split by rows or by columns', async () => {
    expect(await threadsReady()).toBe(true);
    // [batch of A, M, N, K]: split by rows (more 4-row panels than 8-column ones), by columns, batched.
    const cases: [number[], number, number, number][] = [
      [[], 255, 257, 131],
      [[], 1025, 17, 513],
      [[], 33, 2049, 129],
      [[3], 129, 255, 257],
    ];
    let seed = 4000;
    for (const [batch, M, N, K] of cases) {
      for (const [transA, transB] of FLAGS) {
        const aShape = [...batch, ...mat(M, K, transA)];
        const bShape = mat(K, N, transB);
        const a = f32(aShape, seed++);
        const b = f32(bShape, seed++);
        expect(2 * M * N * K).toBeGreaterThanOrEqual(SPLIT_FLOP);
        const one = bits(a, b, transA, transB, 1);
        const splits = splitCount.value;
        const two = bits(a, b, transA, transB, 2);
        expect(splitCount.value - splits, `[${aShape}] @ [${bShape}] was not split`).toBeGreaterThan(0);
        let diff = -1;
        for (let i = 0; i < one.length && diff < 0; i++) if (one[i] !== two[i]) diff = i;
        expect(diff, `[${aShape}]${transA ? '^T' : ''} @ [${bShape}]${transB ? '^T' : ''}: first bit difference`).toBe(
          -1,
        );
        E.dispose([a, b]);
      }
    }
    // And the split result is right, not only equal: the float64 reference at one size.
    process.env.IGPO_THREADS = '2';
    const splits = splitCount.value;
    check({ aShape: [255, 131], bShape: [131, 257], transA: false, transB: false, dtype: 'float32' }, 5000);
    expect(splitCount.value).toBe(splits + 1);
  });

  test('IGPO_THREADS=1 keeps every product on one thread; a bad value is refused with its name', () => {
    const a = f32([256, 256], 1);
    const splits = splitCount.value;
    process.env.IGPO_THREADS = '1';
    E.matmul(a, a).dispose();
    expect(splitCount.value).toBe(splits);
    process.env.IGPO_THREADS = 'two';
    expect(() => E.matmul(a, a)).toThrow(/IGPO_THREADS: expected a whole number >= 1, got 'two'/);
    a.dispose();
  });
});

test('a process started with IGPO_THREADS=1 (the kernel on a memory of its own, no worker) gives the same bits', () => {
  // The memory that is not shared is the fallback where wasm threads are missing; growing it detaches views.
  const code = `
    import * as E from './engine/index.js';
    import { wasmGemmAvailable, wasmGemmThreaded } from './engine/cpu/wasm-gemm.js';
    const out = [wasmGemmAvailable, wasmGemmThreaded];
    for (const [M, N, K] of [[601, 9, 300], [127, 129, 513]]) {
      const a = E.rand([M, K], { generator: new E.Generator(M) });
      const b = E.rand([K, N], { generator: new E.Generator(N) });
      out.push(Array.from(new Uint32Array(E.matmul(a, b).dataSync().slice().buffer)).join(','));
    }
    console.log(JSON.stringify(out));`;
  const run = (threads: string) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      env: { ...process.env, IGPO_THREADS: threads },
      encoding: 'utf8',
    });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout) as [boolean, boolean, ...string[]];
  };
  const [ownAvailable, ownThreaded, ...own] = run('1');
  const [, sharedThreaded, ...shared] = run('2');
  expect([ownAvailable, ownThreaded, sharedThreaded]).toEqual([true, false, wasmGemmThreaded]);
  expect(own).toEqual(shared);
}, 60_000);
