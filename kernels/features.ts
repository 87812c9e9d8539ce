// What the device can do beyond WebGPU's baseline, for the kernels that choose a variant by it (matmul,
// attention). Not the device setup (device.ts), which requests the features.

/** Subgroup sharing needs the feature and subgroups of at least 8 lanes (lanes 0..7 hold a chunk each). */
export function canUseSubgroups(gpu: { readonly features: ReadonlySet<string>; readonly device: GPUDevice }): boolean {
  if (!gpu.features.has('subgroups')) return false;
  const info = (gpu.device as GPUDevice & { adapterInfo?: { subgroupMinSize?: number } }).adapterInfo;
  return (info?.subgroupMinSize ?? 0) >= 8;
}
