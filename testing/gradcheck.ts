// Gradient checks in float64 on the CPU, as PyTorch's torch.autograd.gradcheck: central differences of
// <f(x), c> for a random cotangent c against the engine's backward(c), element by element (gradcheck) or
// along a random direction (directionalCheck). Any test runner; they throw with what differs.

import * as E from '../engine/index.js';

/** One float input of the function under test: its shape and values (row-major). */
export interface GradInput {
  readonly shape: readonly number[];
  readonly data: ArrayLike<number>;
}

/** The function under test; it receives one float64 tensor per input and returns a float64 tensor. */
export type GradFn = (...xs: E.Tensor[]) => E.Tensor;

export interface GradcheckOptions {
  /** Named in failure messages. */
  name: string;
  /** Seeds the cotangent (and the direction); pass a fast-check integer so a failure replays. */
  seed?: number;
  eps?: number;
  atol?: number;
  rtol?: number;
}

// PyTorch gradcheck's defaults, in float64.
const EPS = 1e-6;
const ATOL = 1e-5;
const RTOL = 1e-3;

/** mulberry32: a tiny seeded PRNG, independent of the engine's own Generator. Uniform in [-1, 1). */
function uniform(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  };
}

function draw(rand: () => number, n: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = rand();
  return out;
}

function dot(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i] * b[i];
  return s;
}

const fmt = (shape: readonly number[]) => `[${shape.join(', ')}]`;

/** The row-major multi-index of flat index i in shape. */
function unravel(i: number, shape: readonly number[]): number[] {
  const idx = new Array<number>(shape.length).fill(0);
  for (let k = shape.length - 1; k >= 0; k--) {
    idx[k] = i % shape[k];
    i = Math.floor(i / shape[k]);
  }
  return idx;
}

function leaves(inputs: readonly GradInput[], values: readonly ArrayLike<number>[], requiresGrad: boolean): E.Tensor[] {
  return inputs.map((x, i) =>
    E.tensor(Float64Array.from(values[i]), x.shape, { dtype: 'float64', device: 'cpu', requiresGrad }),
  );
}

function checkOutput(name: string, y: E.Tensor): void {
  if (y.dtype !== 'float64') throw new Error(`gradcheck ${name}: the function returned ${y.dtype}, expected float64`);
  const v = y.dataSync();
  for (let i = 0; i < v.length; i++) {
    if (!Number.isFinite(v[i]))
      throw new Error(
        `gradcheck ${name}: output element ${i} ${fmt(unravel(i, y.shape))} of ${fmt(y.shape)} is ${v[i]}; keep ` +
          `inputs in the op's domain`,
      );
  }
}

/** <fn(values), c> with fresh leaves that do not require grad and no tape. */
function objective(
  name: string,
  fn: GradFn,
  inputs: readonly GradInput[],
  values: readonly ArrayLike<number>[],
  c: Float64Array,
): number {
  return E.tidy(() =>
    E.noGrad(() => {
      const y = fn(...leaves(inputs, values, false));
      checkOutput(name, y);
      if (y.size !== c.length)
        throw new Error(`gradcheck ${name}: output size changed between evaluations (${y.size} vs ${c.length})`);
      return dot(y.dataSync(), c);
    }),
  );
}

interface Analytic {
  /** <fn(x), c> at the unperturbed inputs. */
  value: number;
  c: Float64Array;
  outShape: readonly number[];
  /** d<fn(x), c>/dx_i from backward(c); zeros where the engine left .grad null. */
  grads: Float64Array[];
}

/** One forward with fresh requiresGrad leaves, then backward(c) for a random cotangent c. */
function analytic(name: string, fn: GradFn, inputs: readonly GradInput[], rand: () => number): Analytic {
  return E.tidy(() => {
    const xs = leaves(
      inputs,
      inputs.map((x) => x.data),
      true,
    );
    const y = fn(...xs);
    checkOutput(name, y);
    const c = draw(rand, y.size);
    const value = dot(y.dataSync(), c);
    // An output that does not require grad has no path to any input: every gradient is zero.
    if (y.requiresGrad) y.backward(E.tensor(c, y.shape, { dtype: 'float64', device: 'cpu' }));
    const grads = xs.map((x, i) => {
      const g = x.grad;
      if (g === null) return new Float64Array(x.size);
      if (g.dtype !== 'float64' || g.shape.length !== x.ndim || g.shape.some((d, k) => d !== x.shape[k])) {
        throw new Error(
          `gradcheck ${name}: gradient of input ${i} is ${fmt(g.shape)} ${g.dtype}, input is ${fmt(x.shape)} float64`,
        );
      }
      const v = Float64Array.from(g.dataSync());
      g.dispose(); // .grad is kept beyond tidy
      x.grad = null;
      for (let j = 0; j < v.length; j++) {
        if (!Number.isFinite(v[j]))
          throw new Error(
            `gradcheck ${name}: analytic gradient of input ${i} ${fmt(x.shape)} is ${v[j]} at element ${j} ` +
              `${fmt(unravel(j, x.shape))}`,
          );
      }
      return v;
    });
    return { value, c, outShape: [...y.shape], grads };
  });
}

const close = (a: number, n: number, atol: number, rtol: number) => Math.abs(a - n) <= atol + rtol * Math.abs(n);

/**
 * Checks every element of every input's gradient: the analytic d<fn(x), c>/dx against the central
 * difference (<fn(x + eps e_j), c> - <fn(x - eps e_j), c>) / 2 eps, with c a random cotangent.
 * Throws naming the op, input index, element and both values; lists up to 5 mismatches.
 */
export function gradcheck(fn: GradFn, inputs: readonly GradInput[], opts: GradcheckOptions): void {
  const { name, seed = 0, eps = EPS, atol = ATOL, rtol = RTOL } = opts;
  const a = analytic(name, fn, inputs, uniform(seed));
  const values = inputs.map((x) => Float64Array.from(x.data));
  const bad: string[] = [];
  let nBad = 0;
  inputs.forEach((x, i) => {
    const v = values[i];
    for (let j = 0; j < v.length; j++) {
      const orig = v[j];
      v[j] = orig + eps;
      const fp = objective(name, fn, inputs, values, a.c);
      v[j] = orig - eps;
      const fm = objective(name, fn, inputs, values, a.c);
      v[j] = orig;
      const numeric = (fp - fm) / (2 * eps);
      const got = a.grads[i][j];
      if (!close(got, numeric, atol, rtol)) {
        nBad++;
        if (bad.length < 5) {
          bad.push(
            `input ${i} ${fmt(x.shape)} element ${j} ${fmt(unravel(j, x.shape))} (x = ${orig}): analytic ${got} vs ` +
              `numeric ${numeric} (diff ${Math.abs(got - numeric).toExponential(3)})`,
          );
        }
      }
    }
  });
  if (nBad > 0) {
    throw new Error(
      `gradcheck ${name}: ${nBad} gradient element(s) differ (output ${fmt(a.outShape)}, inputs ` +
        `${inputs.map((x) => fmt(x.shape)).join(' ')}, ` +
        `cotangent seed ${seed}, eps ${eps}, atol ${atol}, rtol ${rtol}):\n  ${bad.join('\n  ')}`,
    );
  }
}

/**
 * For ops too big to check elementwise: a random direction t_i per input and a random cotangent c;
 * compares the central difference of <fn(x + h t), c> along t with sum_i <t_i, grad_i>. On a
 * mismatch, repeats the comparison per input to name the input(s) whose gradient is wrong.
 */
export function directionalCheck(fn: GradFn, inputs: readonly GradInput[], opts: GradcheckOptions): void {
  const { name, seed = 0, eps = EPS, atol = ATOL, rtol = RTOL } = opts;
  const rand = uniform(seed);
  const a = analytic(name, fn, inputs, rand);
  const dirs = inputs.map((x) => draw(rand, x.data.length));
  const along = (which: number | null): number => {
    const moved = (s: number) =>
      inputs.map((x, i) =>
        which === null || which === i ? Float64Array.from(x.data, (v, j) => v + s * eps * dirs[i][j]) : x.data,
      );
    return (objective(name, fn, inputs, moved(1), a.c) - objective(name, fn, inputs, moved(-1), a.c)) / (2 * eps);
  };
  const numeric = along(null);
  const got = inputs.reduce((s, _, i) => s + dot(dirs[i], a.grads[i]), 0);
  if (close(got, numeric, atol, rtol)) return;
  const per = inputs.map((x, i) => {
    const n = along(i);
    const g = dot(dirs[i], a.grads[i]);
    return (
      `input ${i} ${fmt(x.shape)}: analytic <t, grad> ${g} vs numeric ` +
      `${n}${close(g, n, atol, rtol) ? '' : '  <-- differs'}`
    );
  });
  throw new Error(
    `directionalCheck ${name}: analytic <t, grad> ${got} vs numeric directional derivative ${numeric} (output ` +
      `${fmt(a.outShape)}, seed ${seed}, eps ${eps}, atol ${atol}, rtol ${rtol}):\n  ${per.join('\n  ')}`,
  );
}
