// A seeded random number generator (xoshiro128**, seeded through splitmix32) and the tensor factories
// that draw from it. Every random draw in the project goes through a Generator, so a seed reproduces a run.

import { arrayFor } from './dtype.js';
import { checkShape, sizeOf } from './shape.js';
import { tensor, type Tensor, type TensorOptions } from './tensor.js';

/** A Generator's state: xoshiro128**'s four words and the normal draw kept for the next call. */
export interface GeneratorState {
  s: number[];
  spare: number | null;
}

export class Generator {
  private s = new Uint32Array(4);
  private spare: number | null = null;

  constructor(seed = 0) {
    this.seed(seed);
  }

  /** Resets the state from a seed (any finite number; its integer part is used). */
  seed(seed: number): this {
    let x = Math.trunc(seed) >>> 0;
    for (let i = 0; i < 4; i++) {
      // splitmix32
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    this.spare = null;
    return this;
  }

  /** A uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  }

  /** Uniform in [0, 1) with 53 random bits. */
  random(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.random() * n);
  }

  /** Standard normal (Box-Muller, both values used). */
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u = 0;
    while (u === 0) u = this.random();
    const v = this.random();
    const r = Math.sqrt(-2 * Math.log(u));
    this.spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  }

  /** The generator's whole state, to save with a run and resume exactly (setState). */
  getState(): GeneratorState {
    return { s: Array.from(this.s), spare: this.spare };
  }

  /** Restores a state from getState. */
  setState(state: GeneratorState): this {
    if (
      !Array.isArray(state?.s) ||
      state.s.length !== 4 ||
      !state.s.every((x) => Number.isInteger(x) && x >= 0 && x < 2 ** 32)
    ) {
      throw new Error(`Generator.setState: expected { s: four uint32s, spare }, got ${JSON.stringify(state)}`);
    }
    if (state.spare !== null && !Number.isFinite(state.spare))
      throw new Error(`Generator.setState: spare must be a ` + `number or null, got ${state.spare}`);
    this.s.set(state.s);
    this.spare = state.spare;
    return this;
  }

  /** Fisher-Yates shuffle of a copy. */
  shuffle<T>(items: readonly T[]): T[] {
    const a = [...items];
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

let defaultGenerator = new Generator(0);

/** Seeds the default generator, like torch.manual_seed. */
export function manualSeed(seed: number): void {
  defaultGenerator = new Generator(seed);
}

export function getGenerator(): Generator {
  return defaultGenerator;
}

export interface RandomOptions extends TensorOptions {
  generator?: Generator;
}

function draw(op: string, shape: readonly number[], opts: RandomOptions, f: (g: Generator) => number): Tensor {
  const s = checkShape(op, shape);
  const dtype = opts.dtype ?? 'float32';
  const g = opts.generator ?? defaultGenerator;
  const data = arrayFor(dtype, sizeOf(s));
  for (let i = 0; i < data.length; i++) data[i] = f(g);
  return tensor(data, s, { dtype, device: opts.device, requiresGrad: opts.requiresGrad });
}

/** Normal(mean, std) samples. */
export function randn(shape: readonly number[], opts: RandomOptions & { mean?: number; std?: number } = {}): Tensor {
  const { mean = 0, std = 1 } = opts;
  return draw('randn', shape, opts, (g) => mean + std * g.normal());
}

/** Uniform [low, high) samples. */
export function rand(shape: readonly number[], opts: RandomOptions & { low?: number; high?: number } = {}): Tensor {
  const { low = 0, high = 1 } = opts;
  return draw('rand', shape, opts, (g) => low + (high - low) * g.random());
}

/** Integers uniform in [low, high), int32 by default. */
export function randint(low: number, high: number, shape: readonly number[], opts: RandomOptions = {}): Tensor {
  if (!(high > low)) throw new Error(`randint: need high > low, got [${low}, ${high})`);
  return draw('randint', shape, { dtype: 'int32', ...opts }, (g) => low + g.int(high - low));
}
