// The strided-copy WGSL kernel (kernels/movement.ts) against the CPU backend: permute, slice, pad, expand
// and cat on random shapes, float32 and int32, compared bit for bit.
// Outputs are poisoned before each kernel runs, so an element no thread writes fails.

import { fc, test } from '@fast-check/vitest';
import type { DType, TypedArray } from '../../engine/index.js';
import { both, describeWebGPU, expectSame, floats, ints, shapeArb, sizeOfShape, take } from '../helpers/webgpu.js';

const dtypeArb = fc.constantFrom<DType>('float32', 'int32');
const values = (dtype: DType, n: number): fc.Arbitrary<TypedArray> =>
  dtype === 'float32' ? floats(n, 100) : ints(n, -1000, 1000);
/** A shape, a dtype and values for it. */
const tensorArb = (minRank: number, maxRank: number, maxSize = 20_000) =>
  fc
    .tuple(shapeArb(minRank, maxRank, maxSize), dtypeArb)
    .chain(([s, dt]) => fc.tuple(fc.constant(s), fc.constant(dt), values(dt, sizeOfShape(s))));

describeWebGPU('movement kernels', (env) => {
  test.prop(
    [
      tensorArb(1, 5).chain(([s, dt, data]) =>
        fc.tuple(
          fc.constant(s),
          fc.constant(dt),
          fc.constant(data),
          fc.shuffledSubarray(
            s.map((_, i) => i),
            { minLength: s.length, maxLength: s.length },
          ),
        ),
      ),
    ],
    { numRuns: 40 },
  )('permute matches the CPU', async ([shape, dtype, data, perm]) => {
    const { gpu, cpu } = env;
    const [g, c] = both(gpu, cpu, data, shape);
    const out = perm.map((p) => shape[p]);
    const got = await take(gpu, gpu.permute(g, perm), out, dtype, [g]);
    expectSame(
      got,
      cpu.readSync({ handle: cpu.permute(c, perm), shape: out, dtype }),
      `permute ${JSON.stringify(shape)} by ${perm}`,
    );
  });

  test.prop([
    tensorArb(1, 4).chain(([s, dt, data]) =>
      fc.tuple(
        fc.constant(s),
        fc.constant(dt),
        fc.constant(data),
        fc.tuple(
          ...s.map((d) =>
            fc.integer({ min: 0, max: d }).chain((b) => fc.tuple(fc.constant(b), fc.integer({ min: 0, max: d - b }))),
          ),
        ),
      ),
    ),
  ])('slice matches the CPU', async ([shape, dtype, data, box]) => {
    const { gpu, cpu } = env;
    const begin = box.map(([b]) => b);
    const size = box.map(([, n]) => n);
    const [g, c] = both(gpu, cpu, data, shape);
    const got = await take(gpu, gpu.slice(g, begin, size), size, dtype, [g]);
    expectSame(
      got,
      cpu.readSync({ handle: cpu.slice(c, begin, size), shape: size, dtype }),
      `slice ${JSON.stringify(shape)} at ${begin} size ${size}`,
    );
  });

  test.prop([
    tensorArb(1, 4, 5000).chain(([s, dt, data]) =>
      fc.tuple(
        fc.constant(s),
        fc.constant(dt),
        fc.constant(data),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 3 })), {
          minLength: s.length,
          maxLength: s.length,
        }),
      ),
    ),
  ])('pad matches the CPU (zeros around, input inside)', async ([shape, dtype, data, padding]) => {
    const { gpu, cpu } = env;
    const before = padding.map(([b]) => b);
    const after = padding.map(([, a]) => a);
    const out = shape.map((d, i) => d + before[i] + after[i]);
    const [g, c] = both(gpu, cpu, data, shape);
    const got = await take(gpu, gpu.pad(g, before, after), out, dtype, [g]);
    expectSame(
      got,
      cpu.readSync({ handle: cpu.pad(c, before, after), shape: out, dtype }),
      `pad ${JSON.stringify(shape)} by ${before} / ${after}`,
    );
  });

  test.prop([
    shapeArb(1, 4, 20_000).chain((out) =>
      fc
        .tuple(
          fc.integer({ min: 0, max: out.length - 1 }),
          fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length }),
          dtypeArb,
        )
        .chain(([drop, ones, dt]) => {
          const src = out.slice(drop).map((d, i) => (ones[i + drop] ? 1 : d));
          return fc.tuple(fc.constant(out), fc.constant(src), fc.constant(dt), values(dt, sizeOfShape(src)));
        }),
    ),
  ])('expand matches the CPU', async ([out, src, dtype, data]) => {
    const { gpu, cpu } = env;
    const [g, c] = both(gpu, cpu, data, src);
    const got = await take(gpu, gpu.expand(g, out), out, dtype, [g]);
    expectSame(
      got,
      cpu.readSync({ handle: cpu.expand(c, out), shape: out, dtype }),
      `expand ${JSON.stringify(src)} to ${JSON.stringify(out)}`,
    );
  });

  test.prop([
    // Sizes 4 and 16 give rows of 4k words after the axis (the vec4 kernel); more than 7 parts, two dispatches.
    fc.tuple(shapeArb(1, 4, 4000, [1, 2, 3, 4, 16, 17, 33]), dtypeArb).chain(([s, dt]) =>
      fc.integer({ min: 0, max: s.length - 1 }).chain((axis) =>
        fc.array(fc.constantFrom(0, 1, 2, 3, 17, 33), { minLength: 1, maxLength: 10 }).chain((lens) =>
          fc.tuple(
            fc.constant(axis),
            fc.constant(dt),
            fc.tuple(
              ...lens.map((n) => {
                const shape = s.map((d, i) => (i === axis ? n : d));
                return fc.tuple(fc.constant(shape), values(dt, sizeOfShape(shape)));
              }),
            ),
          ),
        ),
      ),
    ),
  ])('cat matches the CPU', async ([axis, dtype, parts]) => {
    const { gpu, cpu } = env;
    const views = parts.map(([shape, data]) => both(gpu, cpu, data, shape));
    const out = [...parts[0][0]];
    out[axis] = parts.reduce((n, [shape]) => n + shape[axis], 0);
    const got = await take(
      gpu,
      gpu.cat(
        views.map(([g]) => g),
        axis,
      ),
      out,
      dtype,
      views.map(([g]) => g),
    );
    expectSame(
      got,
      cpu.readSync({
        handle: cpu.cat(
          views.map(([, c]) => c),
          axis,
        ),
        shape: out,
        dtype,
      }),
      `cat ${parts.map(([s]) => JSON.stringify(s))} on ${axis}`,
    );
  });
});
