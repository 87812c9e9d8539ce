// Device selection: selectDevice('auto' | 'cpu' | 'webgpu') and the no-adapter error. Dawn is told to use
// a backend that does not exist, so the fallback is tested on any machine. Not the kernels' tests.

import { afterEach, expect, it, vi } from 'vitest';
import * as E from '../../engine/index.js';
import { initWebGPU, selectDevice } from '../../kernels/index.js';
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
