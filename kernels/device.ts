// Device setup: finds a WebGPU adapter through Dawn (npm `webgpu`), requests a device with the features
// and limits the kernels use, and registers the WebGPU backend with the engine; selectDevice() picks a
// backend for a run. Not the backend itself (backend.ts) nor any kernel.

import { existsSync, readdirSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { create } from 'webgpu';
import { registerBackend, setDefaultDevice, type Device } from '../engine/index.js';
import { WebGPUBackend, type AdapterSummary, type WebGPUBackendOptions } from './backend.js';

export interface InitWebGPUOptions extends Partial<WebGPUBackendOptions> {
  /**
   * Dawn's backend: 'vulkan' (the default on Linux, where lavapipe lives), 'metal', 'd3d12', 'd3d11',
   * 'opengl', ... Elsewhere Dawn picks. Env WEBGPU_BACKEND overrides the default.
   */
  backend?: string;
  powerPreference?: GPUPowerPreference;
  /**
   * Extra Dawn toggles to enable (e.g. 'allow_unsafe_apis', 'vulkan_enable_f16_on_nvidia'). Env
   * WEBGPU_TOGGLES (comma-separated) gives them when this is unset.
   */
  toggles?: string[];
}

/** Features the kernels can use when the adapter has them. */
const WANTED_FEATURES = [
  'shader-f16',
  'subgroups',
  'timestamp-query',
  // Exposed by Dawn only with the toggles allow_unsafe_apis (and use_vulkan_memory_model on Vulkan).
  'chromium-experimental-subgroup-matrix',
] as const;
/** Limits the kernels want as high as the adapter allows (WebGPU's defaults are small: 128 MiB bindings). */
const WANTED_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxStorageBuffersPerShaderStage',
] as const;

export const NO_ADAPTER_HINT =
  'install a GPU driver with Vulkan (or Metal / D3D12) support, or on Linux without a GPU run `bash ' +
  'scripts/setup-lavapipe.sh` (Mesa lavapipe, a Vulkan driver on the CPU)';

// Dawn's instance: while referenced, Node stays alive; destroyWebGPU() drops it.
let gpu: GPU | null = null;
let current: Promise<{ backend: WebGPUBackend; adapter: AdapterSummary }> | null = null;

/**
 * Whether the Vulkan loader can find a driver (an ICD manifest) on Linux: the files the VK_* variables
 * name, or any manifest in the loader's search directories. Without one, Dawn would print the loader's
 * native warnings and find no adapter; the caller says so in one line of its own instead.
 */
export function vulkanDriverFound(env: NodeJS.ProcessEnv = process.env): boolean {
  const named = [env.VK_DRIVER_FILES, env.VK_ICD_FILENAMES, env.VK_ADD_DRIVER_FILES].filter((v): v is string => !!v);
  if (named.length) return named.flatMap((v) => v.split(':')).some((f) => f !== '' && existsSync(f));
  const data = (env.XDG_DATA_DIRS || '/usr/local/share:/usr/share').split(':');
  const home = env.XDG_DATA_HOME || (env.HOME ? join(env.HOME, '.local/share') : '');
  const dirs = ['/etc/vulkan/icd.d', ...[home, ...data].filter(Boolean).map((d) => join(d, 'vulkan/icd.d'))];
  return dirs.some((d) => {
    try {
      return readdirSync(d).some((f) => f.endsWith('.json'));
    } catch {
      return false;
    }
  });
}

function envFlag(name: string): boolean {
  const v = process.env[name];
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

/**
 * Creates the WebGPU backend once and registers it as 'webgpu'; later calls return the same one (runtime
 * options such as debug and poisonAllocations are applied to it; backend and toggles only count the first
 * time). Debug mode is on when opts.debug or env WEBGPU_DEBUG=1. Throws, with a way to get an adapter,
 * when there is none.
 */
export async function initWebGPU(
  opts: InitWebGPUOptions = {},
): Promise<{ backend: WebGPUBackend; adapter: AdapterSummary }> {
  if (!current) {
    current = createBackend(opts);
    current.catch(() => (current = null)); // a later call may try again
    return current;
  }
  const r = await current;
  const runtime: Partial<WebGPUBackendOptions> = {};
  if (opts.debug !== undefined) runtime.debug = opts.debug;
  if (opts.poisonAllocations !== undefined) runtime.poisonAllocations = opts.poisonAllocations;
  if (opts.batchSize !== undefined) runtime.batchSize = opts.batchSize;
  r.backend.configure(runtime);
  return r;
}

async function createBackend(opts: InitWebGPUOptions): Promise<{ backend: WebGPUBackend; adapter: AdapterSummary }> {
  // Dawn's Vulkan loader wants a runtime directory; CI containers often have none.
  process.env.XDG_RUNTIME_DIR ??= os.tmpdir();
  const backendName =
    opts.backend ?? process.env.WEBGPU_BACKEND ?? (process.platform === 'linux' ? 'vulkan' : undefined);
  const dawnOptions: string[] = [];
  if (backendName) dawnOptions.push(`backend=${backendName}`);
  const toggles =
    opts.toggles ??
    (process.env.WEBGPU_TOGGLES ?? '')
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
  if (toggles.length) dawnOptions.push(`enable-dawn-features=${toggles.join(',')}`);
  if (backendName === 'vulkan' && process.platform === 'linux' && !vulkanDriverFound()) {
    throw new Error(`webgpu: no Vulkan driver found (no ICD manifest in the loader's directories); ${NO_ADAPTER_HINT}`);
  }
  let adapter: GPUAdapter | null;
  try {
    gpu ??= create(dawnOptions);
    adapter = await gpu.requestAdapter({ powerPreference: opts.powerPreference });
  } catch (e) {
    gpu = null;
    throw new Error(
      `webgpu: no WebGPU adapter (Dawn backend '${backendName ?? 'default'}': ` +
        `${(e as Error).message.split('\n')[0]}); ${NO_ADAPTER_HINT}`,
      { cause: e },
    );
  }
  if (!adapter) {
    gpu = null;
    throw new Error(`webgpu: no WebGPU adapter found (Dawn backend '${backendName ?? 'default'}'); ${NO_ADAPTER_HINT}`);
  }
  const requiredFeatures = WANTED_FEATURES.filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const requiredLimits: Record<string, number> = {};
  for (const name of WANTED_LIMITS) requiredLimits[name] = adapter.limits[name];
  const device = await adapter.requestDevice({ requiredFeatures, requiredLimits, label: 'igpo-ts' });
  const info = adapter.info;
  const limits: Record<string, number> = {};
  for (const name of [
    ...WANTED_LIMITS,
    'maxComputeWorkgroupsPerDimension',
    'maxComputeInvocationsPerWorkgroup',
    'minUniformBufferOffsetAlignment',
  ] as const) {
    limits[name] = device.limits[name];
  }
  const summary: AdapterSummary = {
    vendor: info.vendor,
    architecture: info.architecture,
    device: info.device,
    description: info.description,
    backend: backendName ?? 'default',
    features: [...requiredFeatures],
    limits,
  };
  const debug = opts.debug ?? envFlag('WEBGPU_DEBUG');
  const backend = new WebGPUBackend(device, summary, { ...opts, debug });
  registerBackend(backend);
  return { backend, adapter: summary };
}

/** One line naming the adapter, for logs. */
export function describeAdapter(a: AdapterSummary): string {
  const name = a.description || a.device || 'unknown adapter';
  return (
    `webgpu: ${name} (${a.vendor || '?'}/${a.architecture || '?'}, ${a.backend}); features: ` +
    `${a.features.join(', ') || 'none'}`
  );
}

/**
 * Destroys the device and drops Dawn's instance (so Node can exit). The engine keeps the backend
 * registered, but every op on it throws; initWebGPU() makes a new one.
 */
export async function destroyWebGPU(): Promise<void> {
  const c = current;
  current = null;
  if (c) {
    try {
      const { backend } = await c;
      // Drain the queue first: destroying the device while lavapipe still ran submitted work crashed Node at
      // exit here, most times (a pthread mutex assertion, "The futex facility returned an unexpected error code").
      backend.dispatcher.flush();
      await backend.device.queue.onSubmittedWorkDone();
      backend.destroy();
    } catch {
      // it never started, or the device is already lost
    }
  }
  gpu = null;
}

/**
 * Chooses the device for a run and makes it the default: 'cpu', 'webgpu' (throws without an adapter), or
 * 'auto' (webgpu when an adapter exists, else cpu, saying so in one line).
 */
export async function selectDevice(choice: 'auto' | Device, opts: InitWebGPUOptions = {}): Promise<Device> {
  if (choice === 'cpu') {
    setDefaultDevice('cpu');
    return 'cpu';
  }
  try {
    await initWebGPU(opts);
  } catch (e) {
    if (choice === 'webgpu') throw e;
    console.warn(`device auto: ${(e as Error).message.split('\n')[0]}; using the cpu backend`);
    setDefaultDevice('cpu');
    return 'cpu';
  }
  setDefaultDevice('webgpu');
  return 'webgpu';
}
