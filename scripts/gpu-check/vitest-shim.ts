// What `import ... from 'vitest'` resolves to inside the GPU check's bundle (scripts/gpu-check.sh aliases
// it here): vitest's own runner, expect and spies (@vitest/runner, @vitest/expect with chai, @vitest/spy),
// without vitest's workers, config loading and vite, none of which a machine without Node can run.
// Covers what tests/kernels/ and @fast-check/vitest use; anything else is absent, and the bundle says so
// when it is built. Not used by `npm test`.

import * as chai from 'chai';
import { JestAsymmetricMatchers, JestChaiExpect, JestExtend } from '@vitest/expect';
import {
  afterAll,
  afterEach,
  beforeAll,
  beforeEach,
  createTaskCollector,
  describe,
  getCurrentSuite,
  getCurrentTest,
  getHooks,
  it,
  test,
} from '@vitest/runner';
import { fn, restoreAllMocks, spyOn } from '@vitest/spy';

chai.use(JestExtend);
chai.use(JestChaiExpect);
chai.use(JestAsymmetricMatchers);

/** vitest's expect: chai's, with the Jest-style matchers that vitest adds to it. */
export const expect = ((value: unknown, message?: string) =>
  chai.expect(value, message)) as unknown as Chai.ExpectStatic;

export const vi = { fn, spyOn, restoreAllMocks };

/** The static helpers of vitest's runner class that @fast-check/vitest calls. */
export class TestRunner {
  static createTaskCollector = createTaskCollector;
  static getCurrentSuite = getCurrentSuite;
  static getCurrentTest = getCurrentTest;
  static getSuiteHooks = getHooks;
}

export { afterAll, afterEach, beforeAll, beforeEach, describe, it, test };
