// `igpo-ts/testing`: the tools the project tests itself with, for testing your own ops and kernels:
// gradient checks in float64 (gradcheck, directionalCheck), fast-check arbitraries for shapes and tensors,
// and a check of a device's results against the CPU backend on odd sizes with poisoned outputs.

export { gradcheck, directionalCheck, type GradFn, type GradInput, type GradcheckOptions } from './gradcheck.js';
export * from './arbitraries.js';
export { checkAgainstCpu, ODD_SIZES, type KernelCheckOptions } from './kernels.js';
