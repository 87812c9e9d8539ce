// The WebGPU backend's plumbing: buffer pool size classes and reuse, poisoning, the memory report under
// tidy(), batched submits, dispatch folding, and errors that surface (validation, device loss) instead of
// hanging or returning wrong data. Kernels' numerics are in the other files of this folder.

import { create } from 'webgpu';
import { expect, it } from 'vitest';
import * as E from '../../engine/index.js';
import {
  POISON_BITS,
  sizeClass,
  Uniforms,
  WebGPUBackend,
  grid1d,
  type GpuHandle,
  type Program,
} from '../../kernels/index.js';
import { describeWebGPU, take, view } from '../helpers/webgpu.js';

it('size classes: powers of two up to 1 MiB, then steps of at most 12.5%', () => {
  expect(sizeClass(0)).toBe(256);
  expect(sizeClass(4)).toBe(256);
  expect(sizeClass(257)).toBe(512);
  expect(sizeClass(1 << 20)).toBe(1 << 20);
  let prev = 0;
  for (let bytes = 1; bytes < 1e9; bytes = Math.ceil(bytes * 1.37)) {
    const c = sizeClass(bytes);
    expect(c).toBeGreaterThanOrEqual(bytes);
    expect(c).toBeGreaterThanOrEqual(prev);
    if (bytes > 1 << 20) expect(c / bytes).toBeLessThan(1.125);
    prev = c;
  }
});

it('grid1d folds more than 65535 workgroups into y and covers every thread', () => {
  expect(grid1d(1000, 256)).toEqual([4, 1, 1]);
  expect(grid1d(65535 * 256, 256)).toEqual([65535, 1, 1]);
  const [x, y] = grid1d(65535 * 256 + 1, 256);
  expect([x, y]).toEqual([65535, 2]);
  expect(grid1d(70_000)).toEqual([65535, 2, 1]);
  expect(() => grid1d(65536 * 65536)).toThrow(/more than 65535\^2/);
});

/** A trivial program: out[i] = x[i] + 1 (u32), or whatever WGSL body is given. */
function program(name: string, body = 'out[gid.x] = x[gid.x] + 1u;', n = 4): Program {
  const u = new Uniforms([['n', 'u32']]);
  return {
    name,
    cacheKey: `test|${name}`,
    workgroupSize: [1, 1, 1],
    dispatch: [n, 1, 1],
    wgsl: () => `${u.wgsl}
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@compute @workgroup_size(1) fn main(@builtin(global_invocation_id) gid: vec3<u32>) { ${body} }`,
  };
}

describeWebGPU('WebGPU backend plumbing', (env) => {
  it('poisoned allocations hold NaN bits until a kernel writes them', async () => {
    const { gpu } = env;
    const h = gpu.alloc(37, 'int32', 'test');
    const got = await take(gpu, h, [37], 'int32');
    expect([...got].every((v) => v === POISON_BITS)).toBe(true);
  });

  it('released buffers are reused by the next request of their size class', () => {
    const { gpu } = env;
    gpu.flush();
    const before = gpu.memory();
    const a = gpu.alloc(1000, 'float32', 'test');
    expect(gpu.memory().bytesLive).toBe(before.bytesLive + 4096);
    gpu.free(a);
    expect(gpu.memory().bytesPooled).toBeGreaterThanOrEqual(4096);
    const b = gpu.alloc(900, 'float32', 'test');
    expect(b.buffer).toBe(a.buffer);
    gpu.free(b);
    expect(gpu.memory().bytesLive).toBe(before.bytesLive);
    expect(() => gpu.free(b)).toThrow(/freed twice/);
  });

  it('a buffer freed while queued work still reads it can be re-uploaded at once', async () => {
    const { gpu } = env;
    const a = view(gpu, Float32Array.of(1, 2, 3), [3]);
    const y = gpu.unary('neg', a); // encoded, not yet submitted
    gpu.free(a.handle);
    const b = view(gpu, Float32Array.of(7, 8, 9), [3]); // the same pooled buffer, written by the queue
    expect((b.handle as GpuHandle).buffer).toBe((a.handle as GpuHandle).buffer);
    expect([...(await take(gpu, y, [3], 'float32', [b]))]).toEqual([-1, -2, -3]);
  });

  it('a training-like loop inside tidy() keeps bytesLive flat from step to step', async () => {
    const { gpu } = env;
    const w = E.tensor(
      Float32Array.from({ length: 33 * 17 }, (_, i) => Math.sin(i)),
      [33, 17],
      { device: 'webgpu', requiresGrad: true },
    );
    const x = E.tensor(
      Float32Array.from({ length: 5 * 33 }, (_, i) => Math.cos(i)),
      [5, 33],
      { device: 'webgpu' },
    );
    const live: number[] = [];
    const tensors: number[] = [];
    for (let step = 0; step < 6; step++) {
      const loss = E.tidy(() => {
        const h = E.gelu(E.matmul(x, w)); // (5, 17)
        const l = E.sum(E.mul(h, h));
        l.backward();
        E.tidy(() => w.assign(E.sub(w, E.mul(w.grad!, 1e-3)).detach()));
        w.grad!.dispose();
        w.grad = null;
        return l;
      });
      expect(Number.isFinite(await loss.item())).toBe(true);
      loss.dispose();
      live.push(gpu.memory().bytesLive);
      tensors.push(E.memory().liveTensors);
    }
    expect(new Set(live.slice(1)).size, `bytesLive per step: ${live}`).toBe(1);
    expect(new Set(tensors.slice(1)).size, `live tensors per step: ${tensors}`).toBe(1);
    E.dispose([w, x]);
  });

  it('ops are submitted in batches, not one submit per op', async () => {
    const { gpu } = env;
    const x = view(gpu, new Float32Array(100).fill(1), [100]);
    await gpu.read(x);
    const { dispatches, submits } = gpu.dispatcher.stats;
    let h = x.handle;
    for (let i = 0; i < 20; i++) {
      const next = gpu.unary('exp', { ...x, handle: h });
      if (h !== x.handle) gpu.free(h);
      h = next;
    }
    await take(gpu, h, [100], 'float32', [x]);
    expect(gpu.dispatcher.stats.dispatches - dispatches).toBeGreaterThanOrEqual(20);
    expect(gpu.dispatcher.stats.submits - submits).toBeLessThanOrEqual(2);
  });

  it('a shader that does not compile surfaces at the next read, naming the program', async () => {
    const { gpu } = env;
    const x = view(gpu, new Int32Array(4), [4]);
    const out = gpu.alloc(4, 'int32', 'test');
    gpu.dispatch(program('broken', 'out[gid.x] = x[gid.x] + ;'), [x.handle as GpuHandle], [out], new Uint32Array(4));
    await expect(gpu.read({ ...x, handle: out })).rejects.toThrow(/program 'broken'.*failed to build/s);
    expect(() => gpu.unary('neg', x)).toThrow(/program 'broken'/); // sticky until cleared
    gpu.dispatcher.clearError();
    gpu.free(out);
    gpu.free(x.handle);
  });

  it('a validation error in a batch surfaces at read; debug mode names the dispatch', async () => {
    const { gpu } = env;
    const x = view(gpu, new Int32Array(4), [4]);
    const h = x.handle as GpuHandle;
    // One buffer bound read-only and read-write in one dispatch: invalid.
    gpu.dispatch(program('aliased'), [h], [h], new Uint32Array(4));
    await expect(gpu.read(x)).rejects.toThrow(/validation error in a batch of .*aliased.*WEBGPU_DEBUG=1/s);
    gpu.dispatcher.clearError();
    gpu.configure({ debug: true });
    try {
      const ok = gpu.unary('neg', x);
      gpu.dispatch(program('aliased'), [h], [h], new Uint32Array(4));
      await expect(gpu.read(x)).rejects.toThrow(/validation error in program 'aliased'/);
      gpu.free(ok);
    } finally {
      gpu.dispatcher.clearError();
      gpu.configure({ debug: false });
    }
    await gpu.read(x); // the backend works again
    gpu.free(h);
  });

  it('a lost device fails reads and ops instead of hanging', async () => {
    const { gpu } = env;
    // Its own Dawn instance and device; the instance must stay referenced while the device lives.
    const instance = create([`backend=${gpu.adapter.backend}`]);
    const adapter = await instance.requestAdapter();
    const device = await adapter!.requestDevice();
    const other = new WebGPUBackend(device, gpu.adapter);
    const x = view(other, Float32Array.of(1, 2, 3), [3]);
    expect([...(await other.read(x))]).toEqual([1, 2, 3]);
    const y = other.unary('exp', x);
    device.destroy(); // as a driver reset would
    const timeout = new Promise((_, reject) => setTimeout(() => reject(new Error('read hung')), 10_000));
    await expect(Promise.race([other.read({ ...x, handle: y }), timeout])).rejects.toThrow(
      /webgpu|destroyed|lost|abort/i,
    );
    await new Promise((r) => setTimeout(r, 50));
    expect(() => other.unary('exp', x)).toThrow(/device (lost|was destroyed)/);
    expect(instance).toBeDefined();
  });
});
