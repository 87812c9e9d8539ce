// The test files the GPU check runs: every file of tests/kernels/, each loaded by a static import so that
// a bundle carries it. tests/gpu-check.test.ts checks that this list matches the folder.

export const KERNEL_TEST_FILES: Record<string, () => Promise<unknown>> = {
  'tests/kernels/attention.test.ts': () => import('../../tests/kernels/attention.test.js'),
  'tests/kernels/bad-input.test.ts': () => import('../../tests/kernels/bad-input.test.js'),
  'tests/kernels/decode.test.ts': () => import('../../tests/kernels/decode.test.js'),
  'tests/kernels/device.test.ts': () => import('../../tests/kernels/device.test.js'),
  'tests/kernels/elementwise.test.ts': () => import('../../tests/kernels/elementwise.test.js'),
  'tests/kernels/fused.test.ts': () => import('../../tests/kernels/fused.test.js'),
  'tests/kernels/gather.test.ts': () => import('../../tests/kernels/gather.test.js'),
  'tests/kernels/inplace.test.ts': () => import('../../tests/kernels/inplace.test.js'),
  'tests/kernels/matmul-tiled.test.ts': () => import('../../tests/kernels/matmul-tiled.test.js'),
  'tests/kernels/matmul.test.ts': () => import('../../tests/kernels/matmul.test.js'),
  'tests/kernels/movement.test.ts': () => import('../../tests/kernels/movement.test.js'),
  'tests/kernels/pool.test.ts': () => import('../../tests/kernels/pool.test.js'),
  'tests/kernels/reduce.test.ts': () => import('../../tests/kernels/reduce.test.js'),
  'tests/kernels/testing.test.ts': () => import('../../tests/kernels/testing.test.js'),
};
