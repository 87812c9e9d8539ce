// The elementwise WGSL kernels (kernels/elementwise.ts) against the CPU backend: every unary and binary
// op, broadcasting, where, cast and fill, on random inputs and on NaN / Inf / 0 explicitly.
// Outputs are poisoned with NaN before each kernel runs, so an element no thread writes fails.

import { fc, test } from '@fast-check/vitest';
// Plain tests use vitest's `it`: @fast-check/vitest's `test(name, fn)` runs fn numRuns times.
import { expect, it } from 'vitest';
import type { BinaryOp, UnaryOp } from '../../engine/index.js';
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

const UNARY: UnaryOp[] = [
  'neg',
  'exp',
  'log',
  'sqrt',
  'rsqrt',
  'tanh',
  'sigmoid',
  'relu',
  'gelu',
  'silu',
  'abs',
  'sign',
  'square',
  'reciprocal',
  'isnan',
  'isinf',
];
const BINARY: BinaryOp[] = [
  'add',
  'sub',
  'mul',
  'div',
  'pow',
  'maximum',
  'minimum',
  'eq',
  'ne',
  'lt',
  'le',
  'gt',
  'ge',
];
const INT_NATIVE = new Set<UnaryOp>(['neg', 'abs', 'sign', 'square', 'relu', 'reciprocal', 'isnan', 'isinf']);
const POSITIVE_ONLY = new Set<UnaryOp>(['log', 'sqrt', 'rsqrt']);
const RTOL = 1e-5;

/** outShape and two operand shapes that broadcast to it (leading dims dropped, some dims set to 1). */
const broadcastTriple = shapeArb(0, 4, 6000).chain((out) =>
  fc.tuple(fc.constant(out), operandShape(out), operandShape(out)),
);
function operandShape(out: number[]): fc.Arbitrary<number[]> {
  return fc
    .tuple(
      fc.integer({ min: 0, max: out.length }),
      fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length }),
    )
    .map(([drop, ones]) => out.slice(drop).map((d, i) => (ones[i + drop] ? 1 : d)));
}

const SPECIALS = Float32Array.from([NaN, Infinity, -Infinity, 0, -0, 1, -1, 0.5, -2.5, 3, 100, -100]);

describeWebGPU('elementwise kernels', (env) => {
  test.prop(
    [fc.constantFrom(...UNARY), shapeArb(0, 4).chain((s) => fc.tuple(fc.constant(s), floats(sizeOfShape(s), 20)))],
    { numRuns: 48 },
  )('unary float32 matches the CPU', async (op, [shape, raw]) => {
    const { gpu, cpu } = env;
    const data = POSITIVE_ONLY.has(op)
      ? raw.map((v) => Math.abs(v) + 0.01)
      : op === 'reciprocal'
        ? raw.map((v) => (Math.abs(v) < 0.01 ? 0.5 : v))
        : raw;
    const [g, c] = both(gpu, cpu, data, shape);
    const got = await take(gpu, gpu.unary(op, g), shape, 'float32', [g]);
    expectClose(got, cpu.readSync({ ...c, handle: cpu.unary(op, c) }), RTOL, `${op} ${JSON.stringify(shape)}`);
  });

  it('unary float32 on NaN, Inf, 0 and -0 matches the CPU', async () => {
    const { gpu, cpu } = env;
    for (const op of UNARY) {
      const [g, c] = both(gpu, cpu, SPECIALS, [SPECIALS.length]);
      const got = await take(gpu, gpu.unary(op, g), [SPECIALS.length], 'float32', [g]);
      expectClose(got, cpu.readSync({ ...c, handle: cpu.unary(op, c) }), RTOL, op);
    }
  });

  test.prop(
    [fc.constantFrom(...UNARY), shapeArb(1, 3).chain((s) => fc.tuple(fc.constant(s), ints(sizeOfShape(s), -12, 12)))],
    { numRuns: 32 },
  )(
    'unary int32 matches the CPU (exactly for integer ops; within 1 where computed in float32 and truncated)',
    async (op, [shape, data]) => {
      const { gpu, cpu } = env;
      const [g, c] = both(gpu, cpu, data, shape);
      const got = await take(gpu, gpu.unary(op, g), shape, 'int32', [g]);
      const want = cpu.readSync({ ...c, handle: cpu.unary(op, c) });
      if (INT_NATIVE.has(op)) expectSame(got, want, op);
      // e.g. gelu(5) is 4.9999995 in double (truncated to 4) and 5 in float32.
      else
        for (let i = 0; i < want.length; i++)
          expect(Math.abs(got[i] - want[i]), `${op}(${data[i]})`).toBeLessThanOrEqual(1);
    },
  );

  test.prop(
    [
      fc.constantFrom(...BINARY),
      broadcastTriple.chain(([out, sa, sb]) =>
        fc.tuple(fc.constant([out, sa, sb]), floats(sizeOfShape(sa), 8), floats(sizeOfShape(sb), 8), fc.boolean()),
      ),
    ],
    { numRuns: 64 },
  )('binary float32 with broadcasting matches the CPU', async (op, [[out, sa, sb], xa, xb, smallInts]) => {
    const { gpu, cpu } = env;
    let a = xa;
    let b = xb;
    // Small integers make ties, so eq / le / maximum meet equal operands.
    if (smallInts) [a, b] = [a.map((v) => Math.round(v / 3)), b.map((v) => Math.round(v / 3))];
    if (op === 'pow') [a, b] = [a.map((v) => Math.abs(v) + 0.1), b.map((v) => v / 3)];
    if (op === 'div') b = b.map((v) => (Math.abs(v) < 0.05 ? 0.5 : v));
    const [ga, ca] = both(gpu, cpu, a, sa);
    const [gb, cb] = both(gpu, cpu, b, sb);
    const got = await take(gpu, gpu.binary(op, ga, gb, out), out, 'float32', [ga, gb]);
    const want = cpu.readSync({ handle: cpu.binary(op, ca, cb, out), shape: out, dtype: 'float32' });
    expectClose(got, want, op === 'pow' ? 4e-5 : RTOL, `${op} ${JSON.stringify([sa, sb])} -> ${JSON.stringify(out)}`);
  });

  it('binary float32 on NaN, Inf, 0 and -0 (all pairs) matches the CPU', async () => {
    const { gpu, cpu } = env;
    const n = SPECIALS.length;
    const a = new Float32Array(n * n);
    const b = new Float32Array(n * n);
    for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) [a[i * n + j], b[i * n + j]] = [SPECIALS[i], SPECIALS[j]];
    for (const op of BINARY) {
      const [ga, ca] = both(gpu, cpu, a, [n * n]);
      const [gb, cb] = both(gpu, cpu, b, [n * n]);
      const got = await take(gpu, gpu.binary(op, ga, gb, [n * n]), [n * n], 'float32', [ga, gb]);
      expectClose(
        got,
        cpu.readSync({ handle: cpu.binary(op, ca, cb, [n * n]), shape: [n * n], dtype: 'float32' }),
        1e-6,
        op,
      );
    }
  });

  test.prop(
    [
      fc.constantFrom(...BINARY),
      broadcastTriple.chain(([out, sa, sb]) =>
        fc.tuple(fc.constant([out, sa, sb]), ints(sizeOfShape(sa), -9, 9), ints(sizeOfShape(sb), -3, 6)),
      ),
    ],
    { numRuns: 48 },
  )('binary int32 with broadcasting matches the CPU exactly', async (op, [[out, sa, sb], a, b]) => {
    const { gpu, cpu } = env;
    const [ga, ca] = both(gpu, cpu, a, sa);
    const [gb, cb] = both(gpu, cpu, b, sb);
    const got = await take(gpu, gpu.binary(op, ga, gb, out), out, 'int32', [ga, gb]);
    expectSame(got, cpu.readSync({ handle: cpu.binary(op, ca, cb, out), shape: out, dtype: 'int32' }), op);
  });

  test.prop(
    [
      broadcastTriple.chain(([out, sa, sb]) =>
        fc
          .tuple(fc.constant([out, sa, sb]), operandShape(out), fc.boolean())
          .chain(([shapes, sc, intCond]) =>
            fc.tuple(
              fc.constant([...shapes, sc] as [number[], number[], number[], number[]]),
              floats(sizeOfShape(sa)),
              floats(sizeOfShape(sb)),
              intCond
                ? ints(sizeOfShape(sc), -1, 1)
                : floats(sizeOfShape(sc), 1).map((x) => x.map((v) => (v > 0.5 ? NaN : Math.round(v)))),
            ),
          ),
      ),
    ],
    { numRuns: 40 },
  )(
    'where broadcasts cond (float with NaN, or int32), a and b like the CPU',
    async ([[out, sa, sb, sc], a, b, cond]) => {
      const { gpu, cpu } = env;
      const [ga, ca] = both(gpu, cpu, a, sa);
      const [gb, cb] = both(gpu, cpu, b, sb);
      const [gc, cc] = both(gpu, cpu, cond, sc);
      const got = await take(gpu, gpu.where(gc, ga, gb, out), out, 'float32', [ga, gb, gc]);
      expectSame(
        got as Float32Array,
        cpu.readSync({ handle: cpu.where(cc, ca, cb, out), shape: out, dtype: 'float32' }),
        'where',
      );
    },
  );

  test.prop([shapeArb(0, 3).chain((s) => fc.tuple(fc.constant(s), floats(sizeOfShape(s), 1e6)))])(
    'cast float32 -> int32 -> float32 matches the CPU',
    async ([shape, data]) => {
      const { gpu, cpu } = env;
      const withSpecials = Float32Array.from([...data, NaN, Infinity, -Infinity, -0.5, 2.9999]);
      const n = withSpecials.length;
      const [g, c] = both(gpu, cpu, withSpecials, [n]);
      const gi = { handle: gpu.cast(g, 'int32'), shape: [n], dtype: 'int32' as const };
      const ci = { handle: cpu.cast(c, 'int32'), shape: [n], dtype: 'int32' as const };
      const back = await take(gpu, gpu.cast(gi, 'float32'), [n], 'float32');
      expectSame(await take(gpu, gi.handle, [n], 'int32', [g]), cpu.readSync(ci), `to int32 ${JSON.stringify(shape)}`);
      expectSame(
        back,
        cpu.readSync({ handle: cpu.cast(ci, 'float32'), shape: [n], dtype: 'float32' }),
        'back to float32',
      );
    },
  );

  test.prop([
    shapeArb(0, 4, 70_000, [1, 3, 17, 65, 255, 257]),
    fc.constantFrom(0, 1.5, -7, NaN, Infinity, 2.7),
    fc.constantFrom('float32' as const, 'int32' as const),
  ])('fill writes every element like the CPU', async (shape, value, dtype) => {
    const { gpu, cpu } = env;
    const got = await take(gpu, gpu.fill(shape, dtype, value), shape, dtype);
    expectSame(got, cpu.readSync({ handle: cpu.fill(shape, dtype, value), shape, dtype }), `fill ${value} ${dtype}`);
  });

  // The vector path (kernels/elementwise.ts: no broadcast operand and a multiple of 4 elements) and the
  // scalar path side by side: lengths 4k and 4k +- 1 around one unit, one workgroup's span (256 threads x 4
  // vec4s = 4096 elements) and a few of them, with 'same' and 'scalar' (one-element) operands.
  const VECTOR_LENGTHS = [4, 8, 12, 64, 68, 1020, 4096, 4100, 8192 + 12, 3 * 4096 + 4];
  const lengthArb = fc
    .constantFrom(...VECTOR_LENGTHS)
    .chain((n) => fc.constantFrom(n, n - 1, n + 1, n + 3))
    .filter((n) => n > 0);
  test.prop(
    [
      fc.constantFrom<BinaryOp>('add', 'mul', 'maximum', 'lt', 'pow'),
      fc.constantFrom<UnaryOp>('exp', 'neg', 'gelu', 'sign'),
      lengthArb.chain((n) => fc.tuple(fc.constant(n), floats(n, 4), floats(n, 4), fc.integer({ min: 0, max: 2 }))),
    ],
    { numRuns: 40 },
  )(
    'vector and scalar paths: unary, binary (same or one-element operand), where, cast, fill match the CPU',
    async (bop, uop, [n, xa, xb, scalarSide]) => {
      const { gpu, cpu } = env;
      const a = bop === 'pow' ? xa.map((v) => Math.abs(v) + 0.1) : xa;
      const sa = scalarSide === 1 ? [1] : [n];
      const sb = scalarSide === 2 ? [1] : [n];
      const [ga, ca] = both(gpu, cpu, scalarSide === 1 ? a.slice(0, 1) : a, sa);
      const [gb, cb] = both(gpu, cpu, scalarSide === 2 ? xb.slice(0, 1) : xb, sb);
      const got = await take(gpu, gpu.binary(bop, ga, gb, [n]), [n], 'float32');
      expectClose(
        got,
        cpu.readSync({ handle: cpu.binary(bop, ca, cb, [n]), shape: [n], dtype: 'float32' }),
        bop === 'pow' ? 4e-5 : RTOL,
        `${bop} n=${n} ${JSON.stringify([sa, sb])}`,
      );
      const gu = await take(gpu, gpu.unary(uop, ga), sa, 'float32');
      expectClose(gu, cpu.readSync({ handle: cpu.unary(uop, ca), shape: sa, dtype: 'float32' }), RTOL, `${uop} n=${n}`);
      const [gc, cc] = both(
        gpu,
        cpu,
        xb.map((v) => (v > 0 ? 1 : 0)),
        [n],
      );
      const gw = await take(gpu, gpu.where(gc, ga, gb, [n]), [n], 'float32');
      expectSame(
        gw as Float32Array,
        cpu.readSync({ handle: cpu.where(cc, ca, cb, [n]), shape: [n], dtype: 'float32' }),
        `where n=${n}`,
      );
      const gi = await take(gpu, gpu.cast(gb, 'int32'), sb, 'int32', [ga, gb, gc]);
      expectSame(gi, cpu.readSync({ handle: cpu.cast(cb, 'int32'), shape: sb, dtype: 'int32' }), `cast n=${n}`);
      const gf = await take(gpu, gpu.fill([n], 'int32', -7), [n], 'int32');
      expectSame(gf, cpu.readSync({ handle: cpu.fill([n], 'int32', -7), shape: [n], dtype: 'int32' }), `fill n=${n}`);
    },
  );

  it('more than 65535 workgroups fold into y, and every element is written', async () => {
    const { gpu } = env;
    const n = 65535 * 256 + 1001;
    const got = await take(gpu, gpu.fill([n], 'float32', 0.25), [n], 'float32'); // poisoned with NaN first
    let wrong = 0;
    for (let i = 0; i < n; i++) if (got[i] !== 0.25) wrong++;
    expect(wrong).toBe(0);
  });

  it('float64 is refused with an error naming the op', () => {
    const { gpu, cpu } = env;
    expect(() => gpu.upload(new Float64Array(3))).toThrow(
      /webgpu: float64 is not supported \(WGSL has no f64\); use float32 \(op 'upload'\)/,
    );
    expect(() => gpu.fill([2], 'float64', 1)).toThrow(/float64 is not supported.*'fill'/);
    const g = both(gpu, cpu, new Float32Array(2), [2])[0];
    expect(() => gpu.cast(g, 'float64')).toThrow(/float64 is not supported.*'cast'/);
    gpu.free(g.handle, g.dtype);
  });
});
