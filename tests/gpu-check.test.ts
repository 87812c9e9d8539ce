// The GPU check's list of kernel test files (scripts/gpu-check/tests.ts) names every file of tests/kernels/
// and nothing else, so that a new kernel test runs on the GPU machine too. The check itself runs through
// scripts/gpu-check.sh (bench/README.md), not here.

import { readdirSync } from 'node:fs';
import { expect, it } from 'vitest';
import { KERNEL_TEST_FILES } from '../scripts/gpu-check/tests.js';

it('lists exactly the test files of tests/kernels/', () => {
  const onDisk = readdirSync('tests/kernels')
    .filter((f) => f.endsWith('.test.ts'))
    .map((f) => `tests/kernels/${f}`)
    .sort();
  expect(Object.keys(KERNEL_TEST_FILES).sort()).toEqual(onDisk);
});
