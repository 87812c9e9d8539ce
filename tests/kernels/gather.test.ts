// The index WGSL kernels (kernels/gather.ts) against the CPU backend: gather in 'select' and 'along' modes
// and scatterAdd (its adjoint, with repeated indices), float32 and int32; out-of-range indices read 0.
// Outputs are poisoned before each kernel runs, so an element no thread writes fails.

import { fc, test } from '@fast-check/vitest';
import { expect, it } from 'vitest';
import type { DType, TypedArray } from '../../engine/index.js';
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
  view,
} from '../helpers/webgpu.js';

const dtypeArb = fc.constantFrom<DType>('float32', 'int32');
const values = (dtype: DType, n: number): fc.Arbitrary<TypedArray> =>
  dtype === 'float32' ? floats(n, 10) : ints(n, -1000, 1000);
const SMALL = [1, 2, 3, 5, 17, 33];

/**
 * x's shape, an axis, and an index shape for mode 'select' (any rank); sizes 4 and 16 give rows of 4 and
 * 16k columns after the axis, which scatterAdd sums as vec4s, four a thread.
 */
const selectCase = shapeArb(1, 3, 3000, [...SMALL, 4, 16]).chain((xs) =>
  fc.tuple(fc.constant(xs), fc.integer({ min: 0, max: xs.length - 1 }), shapeArb(0, 2, 200, [1, 2, 3, 7, 65])),
);
/** x's shape, an axis, and an index shape of x's rank, no larger than x off the axis. */
const alongCase = shapeArb(1, 4, 3000, SMALL).chain((xs) =>
  fc
    .integer({ min: 0, max: xs.length - 1 })
    .chain((axis) =>
      fc.tuple(
        fc.constant(xs),
        fc.constant(axis),
        fc.tuple(...xs.map((d, i) => (i === axis ? fc.constantFrom(1, 2, 3, 17) : fc.integer({ min: 1, max: d })))),
      ),
    ),
);
const indexValues = (n: number, N: number) => ints(n, 0, N - 1);

describeWebGPU('gather and scatterAdd kernels', (env) => {
  test.prop([
    selectCase.chain(([xs, axis, is]) =>
      fc.tuple(
        fc.constant([xs, axis, is] as const),
        dtypeArb.chain((dt) => fc.tuple(fc.constant(dt), values(dt, sizeOfShape(xs)))),
        indexValues(sizeOfShape(is), xs[axis]),
      ),
    ),
  ])("gather 'select' matches the CPU", async ([[xs, axis, is], [dtype, data], index]) => {
    const { gpu, cpu } = env;
    const [gx, cx] = both(gpu, cpu, data, xs);
    const [gi, ci] = both(gpu, cpu, index, is);
    const out = [...xs.slice(0, axis), ...is, ...xs.slice(axis + 1)];
    const got = await take(gpu, gpu.gather(gx, gi, axis, 'select'), out, dtype, [gx, gi]);
    expectSame(
      got,
      cpu.readSync({ handle: cpu.gather(cx, ci, axis, 'select'), shape: out, dtype }),
      `select ${JSON.stringify(xs)} axis ${axis} index ${JSON.stringify(is)}`,
    );
  });

  test.prop([
    alongCase.chain(([xs, axis, is]) =>
      fc.tuple(
        fc.constant([xs, axis, is] as const),
        dtypeArb.chain((dt) => fc.tuple(fc.constant(dt), values(dt, sizeOfShape(xs)))),
        indexValues(sizeOfShape(is), xs[axis]),
      ),
    ),
  ])("gather 'along' matches the CPU", async ([[xs, axis, is], [dtype, data], index]) => {
    const { gpu, cpu } = env;
    const [gx, cx] = both(gpu, cpu, data, xs);
    const [gi, ci] = both(gpu, cpu, index, is);
    const got = await take(gpu, gpu.gather(gx, gi, axis, 'along'), is, dtype, [gx, gi]);
    expectSame(
      got,
      cpu.readSync({ handle: cpu.gather(cx, ci, axis, 'along'), shape: is, dtype }),
      `along ${JSON.stringify(xs)} axis ${axis} index ${JSON.stringify(is)}`,
    );
  });

  test.prop([
    selectCase.chain(([xs, axis, is]) => {
      const src = [...xs.slice(0, axis), ...is, ...xs.slice(axis + 1)];
      return fc.tuple(
        fc.constant([xs, axis, is, src] as const),
        dtypeArb.chain((dt) => fc.tuple(fc.constant(dt), values(dt, sizeOfShape(src)))),
        indexValues(sizeOfShape(is), xs[axis]),
      );
    }),
  ])(
    "scatterAdd 'select' (embedding backward, repeated indices) matches the CPU",
    async ([[xs, axis, is, srcShape], [dtype, data], index]) => {
      const { gpu, cpu } = env;
      const [gs, cs] = both(gpu, cpu, data, srcShape);
      const [gi, ci] = both(gpu, cpu, index, is);
      const got = await take(gpu, gpu.scatterAdd(gs, gi, axis, 'select', xs), xs, dtype, [gs, gi]);
      const want = cpu.readSync({ handle: cpu.scatterAdd(cs, ci, axis, 'select', xs), shape: xs, dtype });
      if (dtype === 'int32') expectSame(got, want, 'scatterAdd select int32');
      else
        expectClose(
          got,
          want,
          1e-5,
          `scatterAdd select ${JSON.stringify(xs)} axis ${axis} index ${JSON.stringify(is)}`,
        );
    },
  );

  test.prop([
    alongCase.chain(([xs, axis, is]) =>
      fc.tuple(
        fc.constant([xs, axis, is] as const),
        dtypeArb.chain((dt) => fc.tuple(fc.constant(dt), values(dt, sizeOfShape(is)))),
        indexValues(sizeOfShape(is), xs[axis]),
      ),
    ),
  ])("scatterAdd 'along' (gather backward) matches the CPU", async ([[xs, axis, is], [dtype, data], index]) => {
    const { gpu, cpu } = env;
    const [gs, cs] = both(gpu, cpu, data, is);
    const [gi, ci] = both(gpu, cpu, index, is);
    const got = await take(gpu, gpu.scatterAdd(gs, gi, axis, 'along', xs), xs, dtype, [gs, gi]);
    const want = cpu.readSync({ handle: cpu.scatterAdd(cs, ci, axis, 'along', xs), shape: xs, dtype });
    if (dtype === 'int32') expectSame(got, want, 'scatterAdd along int32');
    else
      expectClose(got, want, 1e-5, `scatterAdd along ${JSON.stringify(xs)} axis ${axis} index ${JSON.stringify(is)}`);
  });

  it('out-of-range indices make the read of gather throw the CPU error, and add nothing in scatterAdd', async () => {
    const { gpu } = env;
    const x = view(gpu, Float32Array.from([1, 2, 3, 4, 5, 6]), [3, 2]); // rows [1,2] [3,4] [5,6]
    const idx = view(gpu, Int32Array.from([2, -1, 3, 0]), [4]);
    await expect(take(gpu, gpu.gather(x, idx, 0, 'select'), [4, 2], 'float32')).rejects.toThrow(
      /^gather: index -?\d+ is out of range for dimension 0 of size 3 \(x \[3, 2\]\)/,
    );
    const idxAlong = view(gpu, Int32Array.from([1, 5, -2, 0, 1, 1]), [3, 2]);
    await expect(take(gpu, gpu.gather(x, idxAlong, 1, 'along'), [3, 2], 'float32')).rejects.toThrow(
      /^gather: index -?\d+ is out of range for dimension 1 of size 2/,
    );
    const src = view(gpu, Float32Array.from([1, 1, 10, 10, 100, 100, 1000, 1000]), [4, 2]);
    expect([
      ...(await take(gpu, gpu.scatterAdd(src, idx, 0, 'select', [3, 2]), [3, 2], 'float32', [x, idx, idxAlong, src])),
    ]).toEqual([1000, 1000, 0, 0, 1, 1]);
  });
});
