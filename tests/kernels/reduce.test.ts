// The reduction WGSL kernels (kernels/reduce.ts) against the CPU backend: sum / max / min over random
// axis sets, float32 and int32, both the row kernel (long trailing rows) and the general one.
// Outputs are poisoned with NaN before each kernel runs, so an element no thread writes fails.

import { fc, test } from '@fast-check/vitest';
import { expect, it } from 'vitest';
import type { ReduceOp } from '../../engine/index.js';
import {
  both,
  describeWebGPU,
  expectClose,
  expectSame,
  floats,
  ints,
  shapeArb,
  sizeOfShape,
  take,
} from '../helpers/webgpu.js';

const OPS: ReduceOp[] = ['sum', 'max', 'min'];
const keepdim = (shape: readonly number[], axes: readonly number[]) => shape.map((d, i) => (axes.includes(i) ? 1 : d));

/** A shape and a sorted subset of its axes (possibly empty, possibly all). */
const shapeAndAxes = (sizes?: number[]) =>
  shapeArb(1, 4, 30_000, sizes).chain((s) =>
    fc.tuple(
      fc.constant(s),
      fc.subarray(s.map((_, i) => i)).map((a) => [...a].sort((x, y) => x - y)),
    ),
  );

describeWebGPU('reduce kernels', (env) => {
  test.prop(
    [
      fc.constantFrom(...OPS),
      shapeAndAxes().chain(([s, axes]) => fc.tuple(fc.constant(s), fc.constant(axes), floats(sizeOfShape(s)))),
    ],
    { numRuns: 60 },
  )('float32 over random axes matches the CPU', async (op, [shape, axes, data]) => {
    const { gpu, cpu } = env;
    const [g, c] = both(gpu, cpu, data, shape);
    const out = keepdim(shape, axes);
    const got = await take(gpu, gpu.reduce(op, g, axes), out, 'float32', [g]);
    expectClose(
      got,
      cpu.readSync({ handle: cpu.reduce(op, c, axes), shape: out, dtype: 'float32' }),
      1e-5,
      `${op} ${JSON.stringify(shape)} axes ${axes}`,
    );
  });

  // Trailing rows from 64 elements up take the workgroup-per-row kernel: lengths around the workgroup size.
  test.prop(
    [
      fc.constantFrom(...OPS),
      fc
        .tuple(fc.constantFrom(1, 3, 17), fc.constantFrom(63, 64, 65, 127, 255, 256, 257, 1000, 4099))
        .chain(([rows, cols]) => fc.tuple(fc.constant([rows, cols]), floats(rows * cols))),
    ],
    { numRuns: 30 },
  )('float32 along long last rows (the row kernel) matches the CPU', async (op, [shape, data]) => {
    const { gpu, cpu } = env;
    const [g, c] = both(gpu, cpu, data, shape);
    const out = [shape[0], 1];
    const got = await take(gpu, gpu.reduce(op, g, [1]), out, 'float32', [g]);
    expectClose(
      got,
      cpu.readSync({ handle: cpu.reduce(op, c, [1]), shape: out, dtype: 'float32' }),
      1e-5,
      `${op} ${JSON.stringify(shape)}`,
    );
  });

  test.prop(
    [
      fc.constantFrom(...OPS),
      shapeAndAxes().chain(([s, axes]) =>
        fc.tuple(fc.constant(s), fc.constant(axes), ints(sizeOfShape(s), -1000, 1000)),
      ),
    ],
    { numRuns: 40 },
  )('int32 over random axes matches the CPU exactly', async (op, [shape, axes, data]) => {
    const { gpu, cpu } = env;
    const [g, c] = both(gpu, cpu, data, shape);
    const out = keepdim(shape, axes);
    const got = await take(gpu, gpu.reduce(op, g, axes), out, 'int32', [g]);
    expectSame(
      got,
      cpu.readSync({ handle: cpu.reduce(op, c, axes), shape: out, dtype: 'int32' }),
      `${op} ${JSON.stringify(shape)} axes ${axes}`,
    );
  });

  it('NaN propagates through sum, max and min; infinities add up like the CPU', async () => {
    const { gpu, cpu } = env;
    // Rows: plain, one NaN, +Inf, both infinities, -Inf; short rows (general kernel) and long (row kernel).
    for (const cols of [5, 300]) {
      const rows = [[], [NaN], [Infinity], [Infinity, -Infinity], [-Infinity]];
      const data = new Float32Array(rows.length * cols);
      rows.forEach((specials, r) => {
        for (let j = 0; j < cols; j++) data[r * cols + j] = (j % 7) - 3;
        specials.forEach((v, k) => (data[r * cols + 1 + k * 2] = v));
      });
      for (const op of OPS) {
        const [g, c] = both(gpu, cpu, data, [rows.length, cols]);
        const got = await take(gpu, gpu.reduce(op, g, [1]), [rows.length, 1], 'float32', [g]);
        expectClose(
          got,
          cpu.readSync({ handle: cpu.reduce(op, c, [1]), shape: [rows.length, 1], dtype: 'float32' }),
          1e-6,
          `${op} cols ${cols}`,
        );
      }
    }
  });

  it('more than 65535 rows fold into y (row kernel)', async () => {
    const { gpu, cpu } = env;
    const shape = [65535 + 7, 64];
    const data = new Float32Array(sizeOfShape(shape));
    for (let i = 0; i < data.length; i++) data[i] = ((i * 7919) % 101) / 10 - 5;
    const [g, c] = both(gpu, cpu, data, shape);
    const got = await take(gpu, gpu.reduce('sum', g, [1]), [shape[0], 1], 'float32', [g]);
    expectClose(
      got,
      cpu.readSync({ handle: cpu.reduce('sum', c, [1]), shape: [shape[0], 1], dtype: 'float32' }),
      1e-5,
      'sum',
    );
  });

  it('a sum over an empty axis is 0', async () => {
    const { gpu } = env;
    const g = { handle: gpu.fill([3, 0], 'float32', 1), shape: [3, 0], dtype: 'float32' as const };
    expect([...(await take(gpu, gpu.reduce('sum', g, [1]), [3, 1], 'float32', [g]))]).toEqual([0, 0, 0]);
  });
});
