// Checks an op on a device against the CPU backend, the reference, the way the project tests its own WGSL
// kernels: random inputs at odd sizes (1, 3, 17, 33, 65, 127 ...), every output buffer of the device
// poisoned before the op runs so an element no kernel wrote shows as NaN, NaN and Inf compared exactly.

import * as E from '../engine/index.js';
import { Generator } from '../engine/random.js';

/** The sizes a kernel's edge cases hide in: below, at and just past the usual tile and workgroup sizes. */
export const ODD_SIZES: readonly number[] = [1, 3, 17, 33, 65, 127];

export interface KernelCheckOptions {
  /** Named in failure messages. */
  name: string;
  /** The device under test; 'webgpu' needs an adapter (kernels' initWebGPU). */
  device: E.Device;
  /** Per case, the shapes of the op's float32 inputs. */
  shapes: readonly (readonly (readonly number[])[])[];
  /** Inputs are uniform in [-range, range]; 2 by default. */
  range?: number;
  /** Relative error allowed over the finite elements, as ||got - want|| / ||want||; 1e-5 by default. */
  rtol?: number;
  seed?: number;
}

/**
 * Runs `op` on inputs of each case's shapes on `opts.device` and on the CPU, and throws naming the op, the
 * case and the first element that differs: NaN where the CPU has none (an unwritten, poisoned element or
 * a kernel's own NaN), an infinity of the wrong sign, a shape, or too large an error over the rest.
 */
export async function checkAgainstCpu(op: (...xs: E.Tensor[]) => E.Tensor, opts: KernelCheckOptions): Promise<void> {
  const { name, device, range = 2, rtol = 1e-5 } = opts;
  const gen = new Generator(opts.seed ?? 0);
  const restore = await poison(device, true);
  try {
    for (const shapes of opts.shapes) {
      const data = shapes.map((s) => Float32Array.from({ length: E.sizeOf(s) }, () => (gen.random() * 2 - 1) * range));
      const run = async (d: E.Device) => {
        const y = E.tidy(() => op(...data.map((x, i) => E.tensor(x, shapes[i], { device: d }))));
        const out = { shape: [...y.shape], values: await y.data() };
        y.dispose();
        return out;
      };
      const [got, want] = [await run(device), await run('cpu')];
      const where = `${name} on ${device}, inputs ${shapes.map((s) => E.fmt(s)).join(' ')}`;
      if (!E.sameShape(got.shape, want.shape))
        throw new Error(`${where}: shape ${E.fmt(got.shape)}, the CPU's ${E.fmt(want.shape)}`);
      let num = 0;
      let den = 0;
      for (let i = 0; i < want.values.length; i++) {
        const [g, w] = [got.values[i], want.values[i]];
        if (Number.isNaN(w) || !Number.isFinite(w) || Number.isNaN(g) || !Number.isFinite(g)) {
          if (!Object.is(g, w) && !(Number.isNaN(g) && Number.isNaN(w)))
            throw new Error(
              `${where}: element ${i} is ${g}, the CPU's ` +
                `${w}${Number.isNaN(g) ? ' (unwritten or a NaN of its own)' : ''}`,
            );
          continue;
        }
        num += (g - w) ** 2;
        den += w * w;
      }
      const err = den > 0 ? Math.sqrt(num / den) : Math.sqrt(num);
      if (!(err <= rtol)) throw new Error(`${where}: relative error ${err.toExponential(3)} > ${rtol}`);
    }
  } finally {
    await restore();
  }
}

/** Turns output poisoning on for a WebGPU backend (the CPU backend has none); returns how to undo it. */
async function poison(device: E.Device, on: boolean): Promise<() => Promise<void>> {
  if (device !== 'webgpu') return async () => {};
  const { initWebGPU } = await import('../kernels/index.js');
  const { backend } = await initWebGPU();
  const before = backend.options.poisonAllocations;
  backend.configure({ poisonAllocations: on });
  return async () => backend.configure({ poisonAllocations: before });
}
