// Device selection: selectDevice('auto' | 'cpu' | 'webgpu') and the no-adapter error. Dawn is told to use
// a backend that does not exist, so the fallback is tested on any machine. Not the kernels' tests.

import { afterEach, expect, it, vi } from 'vitest';
import * as E from '../../engine/index.js';
import { initWebGPU, selectDevice, type WebGPUBackend } from '../../kernels/index.js';
import { describeWebGPU } from '../helpers/webgpu.js';

afterEach(() => {
  vi.restoreAllMocks();
  E.setDefaultDevice('cpu');
});

it("'auto' without an adapter falls back to the cpu and says so in one line", async () => {
  const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
  expect(await selectDevice('auto', { backend: 'no-such-backend' })).toBe('cpu');
  expect(warn).toHaveBeenCalledTimes(1);
  const line = String(warn.mock.calls[0][0]);
  expect(line).not.toContain('\n');
  expect(line).toMatch(/no WebGPU adapter.*setup-lavapipe\.sh.*using the cpu backend/);
  expect(E.getDefaultDevice()).toBe('cpu');
});

it("'webgpu' without an adapter throws, saying how to get one", async () => {
  await expect(selectDevice('webgpu', { backend: 'no-such-backend' })).rejects.toThrow(
    /no WebGPU adapter.*GPU driver.*bash scripts\/setup-lavapipe\.sh/,
  );
  await expect(initWebGPU({ backend: 'no-such-backend' })).rejects.toThrow(/no WebGPU adapter/);
});

it("'cpu' needs no adapter", async () => {
  expect(await selectDevice('cpu')).toBe('cpu');
});

describeWebGPU('with an adapter', () => {
  it("'auto' picks webgpu and makes it the default device", async () => {
    const warn = vi.spyOn(console, 'warn');
    expect(await selectDevice('auto')).toBe('webgpu');
    expect(warn).not.toHaveBeenCalled();
    const t = E.tensor([1, 2, 3]);
    expect(t.device).toBe('webgpu');
    const y = E.exp(t);
    expect([...(await y.data())].map((v) => v.toFixed(4))).toEqual(['2.7183', '7.3891', '20.0855']);
    E.dispose([t, y]);
  });
});

describeWebGPU('GPU time from timestamp queries', () => {
  it('gpuTime counts the passes f queues (null without timestamp-query), and more work takes longer', async () => {
    await initWebGPU();
    const backend = E.getBackend('webgpu') as WebGPUBackend;
    const a = E.tensor(new Float32Array(256 * 256).fill(0.5), [256, 256], { device: 'webgpu' });
    const work = async (n: number) => {
      for (let i = 0; i < n; i++) {
        const y = E.matmul(a, a);
        // A read inside f: the batch is submitted, and the next matmul opens a new batch and pass.
        if (i === 0) expect((await y.data())[0]).toBeCloseTo(64, 3);
        y.dispose();
      }
      return n;
    };
    await work(1); // compiles the pipeline outside the timed calls
    const one = await backend.gpuTime(() => work(1));
    const many = await backend.gpuTime(() => work(16));
    expect(many.result).toBe(16);
    if (!backend.features.has('timestamp-query')) {
      expect([one.gpuMs, many.gpuMs]).toEqual([null, null]);
      return;
    }
    expect(one.gpuMs).toBeGreaterThan(0);
    expect(many.gpuMs!).toBeGreaterThan(2 * one.gpuMs!);
    // Timing stops after f: later work is not counted, and an error in f stops it too.
    await expect(
      backend.gpuTime(async () => {
        throw new Error('in f');
      }),
    ).rejects.toThrow('in f');
    a.dispose();
  });
});
