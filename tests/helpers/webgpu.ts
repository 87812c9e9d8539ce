// Test support for WebGPU kernels: one adapter per test file, describeWebGPU (skips or fails without an
// adapter), views over GPU and CPU storage, a NaN/Inf-aware closeness check, and shape arbitraries.
// Test-only; not part of the backend.

import { fc } from '@fast-check/vitest';
import { beforeAll, beforeEach, describe, expect } from 'vitest';
import { CpuBackend, stridesOf, type Backend, type DType, type TypedArray, type View } from '../../engine/index.js';
import { initWebGPU, POISON_BITS, type WebGPUBackend } from '../../kernels/index.js';

export const NO_ADAPTER_LINE = 'no WebGPU adapter: run `bash scripts/setup-lavapipe.sh` (Mesa lavapipe) to get one';

let once: Promise<WebGPUBackend | Error> | null = null;
let noted = false;

/** The file's backend, created on first use, with every output poisoned so unwritten elements show. */
function webgpuOnce(): Promise<WebGPUBackend | Error> {
  once ??= initWebGPU({ poisonAllocations: true }).then(
    (r) => r.backend,
    (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
  );
  return once;
}

export interface WebGPUContext {
  /** The WebGPU backend (only inside tests: it exists once beforeAll has run). */
  readonly gpu: WebGPUBackend;
  /** The reference. */
  readonly cpu: CpuBackend;
}

/**
 * A describe block whose tests need a WebGPU adapter. Without one they fail with the adapter error when
 * env REQUIRE_WEBGPU=1, and are otherwise skipped after one line saying how to get an adapter.
 */
export function describeWebGPU(name: string, fn: (ctx: WebGPUContext) => void): void {
  describe(name, () => {
    let backend: WebGPUBackend | undefined;
    const cpu = new CpuBackend();
    beforeAll(async () => {
      const r = await webgpuOnce();
      if (!(r instanceof Error)) {
        backend = r;
        return;
      }
      if (process.env.REQUIRE_WEBGPU === '1') throw r;
      if (!noted) console.warn(NO_ADAPTER_LINE);
      noted = true;
    });
    beforeEach((ctx) => {
      if (!backend) ctx.skip();
    });
    fn({
      get gpu() {
        if (!backend) throw new Error('describeWebGPU: the backend exists only inside tests');
        return backend;
      },
      cpu,
    });
  });
}

// -------------------------------------------------------------------------------------------------
// Views and reads.

export function view(backend: Backend, data: TypedArray, shape: readonly number[]): View {
  const dtype: DType = data instanceof Float32Array ? 'float32' : data instanceof Int32Array ? 'int32' : 'float64';
  return { handle: backend.upload(data), shape, dtype };
}

/** The same data on both backends. */
export function both(gpu: Backend, cpu: Backend, data: TypedArray, shape: readonly number[]): [View, View] {
  return [view(gpu, data, shape), view(cpu, data, shape)];
}

export async function readHandle(
  backend: Backend,
  handle: unknown,
  shape: readonly number[],
  dtype: DType,
): Promise<TypedArray> {
  return backend.read({ handle, shape, dtype });
}

/** Reads a GPU result, frees it (and the given inputs), and returns the values. */
export async function take(
  gpu: Backend,
  handle: unknown,
  shape: readonly number[],
  dtype: DType,
  free: readonly View[] = [],
): Promise<TypedArray> {
  const out = await gpu.read({ handle, shape, dtype });
  gpu.free(handle, dtype);
  for (const v of free) gpu.free(v.handle, v.dtype);
  return out;
}

// -------------------------------------------------------------------------------------------------
// Comparison.

function classify(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Infinity) return '+Inf';
  if (x === -Infinity) return '-Inf';
  return 'finite';
}

/**
 * got ~ want: NaN exactly where want is NaN, each infinity exactly where want has the same one (NaN never
 * equals Inf), and over the finite rest ||got - want|| / ||want|| <= rtol (or ||got - want|| <= rtol when
 * want is all zeros). int32 compares exactly. A poisoned element that no kernel wrote is NaN (float32) or
 * 2143289344 (int32), so it fails here.
 */
export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, what = ''): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < want.length; i++) {
    const g = got[i];
    const w = want[i];
    const cg = classify(g);
    const cw = classify(w);
    if (cg !== cw) throw new Error(`${what}: element ${i} is ${g} (${cg}), expected ${w} (${cw})`);
    if (cw !== 'finite') continue;
    num += (g - w) ** 2;
    den += w * w;
  }
  const err = den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
  if (!(err <= rtol)) {
    let worst = 0;
    for (let i = 1; i < want.length; i++)
      if (Math.abs(got[i] - want[i]) > Math.abs(got[worst] - want[worst])) worst = i;
    throw new Error(
      `${what}: relative error ${err.toExponential(3)} > ${rtol} (worst element ${worst}: got ${got[worst]}, ` +
        `expected ${want[worst]})`,
    );
  }
}

/** Bitwise equality (copies and int32). */
export function expectSame(got: TypedArray, want: TypedArray, what = ''): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length);
  const w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < w.length; i++) {
    if (g[i] !== w[i]) {
      const poisoned = g[i] === POISON_BITS ? ' (the poison pattern: never written)' : '';
      throw new Error(`${what}: element ${i} is ${got[i]}${poisoned}, expected ${want[i]}`);
    }
  }
}

// -------------------------------------------------------------------------------------------------
// Arbitraries.

/** Sizes that are not multiples of any workgroup or tile size, and the edges around them. */
export const ODD_SIZES = [1, 2, 3, 5, 7, 17, 33, 65, 127] as const;

export const dim = (sizes: readonly number[] = ODD_SIZES): fc.Arbitrary<number> => fc.constantFrom(...sizes);

/** A shape of rank in [minRank, maxRank] with at most maxSize elements (dimensions from `sizes`). */
export function shapeArb(
  minRank: number,
  maxRank: number,
  maxSize = 20_000,
  sizes: readonly number[] = ODD_SIZES,
): fc.Arbitrary<number[]> {
  return fc
    .array(dim(sizes), { minLength: minRank, maxLength: maxRank })
    .filter((s) => s.reduce((p, d) => p * d, 1) <= maxSize);
}

const f32 = Math.fround;

/** n float32 values in [-bound, bound]: no NaN or Inf, and no subnormals (GPUs may flush them to zero). */
export function floats(n: number, bound = 10, minMagnitude = 0): fc.Arbitrary<Float32Array> {
  return fc
    .float32Array({
      minLength: n,
      maxLength: n,
      min: f32(-bound),
      max: f32(bound),
      noNaN: true,
      noDefaultInfinity: true,
    })
    .map((a) =>
      a.map((v) => {
        const m = Math.abs(v);
        if (m < 1e-30) return minMagnitude > 0 ? minMagnitude : 0;
        return m < minMagnitude ? Math.sign(v) * minMagnitude : v;
      }),
    );
}

/** n int32 values in [lo, hi]. */
export function ints(n: number, lo = -20, hi = 20): fc.Arbitrary<Int32Array> {
  return fc.array(fc.integer({ min: lo, max: hi }), { minLength: n, maxLength: n }).map((a) => Int32Array.from(a));
}

export const sizeOfShape = (s: readonly number[]): number => s.reduce((p, d) => p * d, 1);
export { stridesOf };
