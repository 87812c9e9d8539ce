// igpo-ts/testing's kernel check, on the WebGPU backend: it passes an op whose kernels agree with the CPU
// at odd sizes, and catches an op that differs a little, one that makes a NaN, and a wrong shape.

import { expect, it } from 'vitest';
import { checkAgainstCpu, ODD_SIZES } from '../../testing/index.js';
import { describeWebGPU } from '../helpers/webgpu.js';

describeWebGPU('checkAgainstCpu', () => {
  const shapes = ODD_SIZES.map((n) => [[n, 3] as const, [n, 3] as const]);

  it('passes kernels that agree with the CPU, at every odd size', async () => {
    await checkAgainstCpu((a, b) => a.mul(b).add(1).relu(), { name: 'fma-relu', device: 'webgpu', shapes });
    await checkAgainstCpu((a) => a.softmax(-1), {
      name: 'softmax',
      device: 'webgpu',
      shapes: ODD_SIZES.map((n) => [[3, n]]),
    });
  });

  it('names the op, the inputs and what differs', async () => {
    const off = (a: import('../../engine/index.js').Tensor) => (a.device === 'webgpu' ? a.add(1e-3) : a);
    await expect(checkAgainstCpu(off, { name: 'off', device: 'webgpu', shapes: [[[17, 3]]] })).rejects.toThrow(
      /off on webgpu, inputs \[17, 3\]: relative error \S+ > /,
    );
    const nan = (a: import('../../engine/index.js').Tensor) => (a.device === 'webgpu' ? a.log() : a.abs().log());
    await expect(checkAgainstCpu(nan, { name: 'nan', device: 'webgpu', shapes: [[[33]]] })).rejects.toThrow(
      /nan on webgpu, inputs \[33\]: element \d+ is NaN, the CPU's -?[\d.]+/,
    );
    const shape = (a: import('../../engine/index.js').Tensor) => (a.device === 'webgpu' ? a.sum(0) : a.sum(1));
    await expect(checkAgainstCpu(shape, { name: 'sum', device: 'webgpu', shapes: [[[3, 5]]] })).rejects.toThrow(
      /sum on webgpu, inputs \[3, 5\]: shape \[5\], the CPU's \[3\]/,
    );
  });
});
