// The WebGPU backend's public surface: import from here. Importing does not touch the GPU;
// `await initWebGPU()` (or selectDevice) creates the device and registers the 'webgpu' backend.

export {
  initWebGPU,
  selectDevice,
  destroyWebGPU,
  describeAdapter,
  NO_ADAPTER_HINT,
  type InitWebGPUOptions,
} from './device.js';
export { WebGPUBackend, POISON_BITS, type AdapterSummary, type WebGPUBackendOptions } from './backend.js';
export { BufferPool, sizeClass, type GpuHandle, type MemoryReport } from './pool.js';
export { Dispatcher, Uniforms, coalesce, grid1d, type Program } from './program.js';
