// The WebGPU peer: TensorFlow.js with tfjs-backend-webgpu, driven through Dawn (npm `webgpu`, the same
// dawn.node and the same adapter our kernels use), set up once, with the gradients the kernels suite
// differentiates. Not our code, and not a fork of theirs: their backend runs as published.
//
// tfjs-backend-webgpu registers itself on import only when `navigator.gpu` exists, so the globals are
// installed first and the package is imported afterwards. Dawn's options mirror kernels/device.ts (env
// WEBGPU_BACKEND, default vulkan on Linux; toggles from env WEBGPU_TOGGLES) so both sides get one adapter.

import os from 'node:os';
import type * as tfc from '@tensorflow/tfjs-core';
import { create, globals } from 'webgpu';

let ready: Promise<{ tf: typeof tfc; name: string }> | null = null;

/** tfjs-core with the 'webgpu' backend active on Dawn's adapter, and the peer's name for reports. */
export function tfjsWebGPU(): Promise<{ tf: typeof tfc; name: string }> {
  ready ??= setUp();
  return ready;
}

async function setUp(): Promise<{ tf: typeof tfc; name: string }> {
  process.env.XDG_RUNTIME_DIR ??= os.tmpdir();
  const backend = process.env.WEBGPU_BACKEND ?? (process.platform === 'linux' ? 'vulkan' : undefined);
  const toggles = (process.env.WEBGPU_TOGGLES ?? '')
    .split(',')
    .map((t) => t.trim())
    .filter(Boolean);
  const dawnOptions = [
    ...(backend ? [`backend=${backend}`] : []),
    ...(toggles.length ? [`enable-dawn-features=${toggles.join(',')}`] : []),
  ];
  Object.assign(globalThis, globals);
  const nav = (globalThis as { navigator?: object }).navigator ?? {};
  Object.defineProperty(globalThis, 'navigator', {
    value: { ...nav, gpu: create(dawnOptions) },
    configurable: true,
    writable: true,
  });

  const tf = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs-backend-webgpu');
  await registerGrads(tf);
  // Production mode only silences tfjs's warnings.
  tf.enableProdMode();
  if (!(await tf.setBackend('webgpu')))
    throw new Error("tfjs: backend 'webgpu' failed to initialise (no adapter through Dawn?)");
  await tf.ready();
  return { tf, name: `tfjs-webgpu ${tf.version_core}` };
}

/**
 * tfjs-core's Node bundle registers no gradients; the attention composite needs these (its own configs,
 * imported one file each, as bench/peers/tfjs-grads.ts explains). A second registration would warn.
 */
async function registerGrads(tf: typeof tfc): Promise<void> {
  const configs = await Promise.all([
    import('@tensorflow/tfjs-core/dist/gradients/BatchMatMul_grad.js').then((m) => m.batchMatMulGradConfig),
    import('@tensorflow/tfjs-core/dist/gradients/Softmax_grad.js').then((m) => m.softmaxGradConfig),
    import('@tensorflow/tfjs-core/dist/gradients/Add_grad.js').then((m) => m.addGradConfig),
    import('@tensorflow/tfjs-core/dist/gradients/Multiply_grad.js').then((m) => m.multiplyGradConfig),
  ]);
  for (const cfg of configs) if (!tf.getGradient(cfg.kernelName)) tf.registerGradient(cfg);
}
