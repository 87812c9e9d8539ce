// The hostile-input campaign (scripts/hostile.ts) in its quick form: a sample of the truncations and bit
// flips, every crafted file and bad engine call, and a few killed runs and saves. It must find nothing:
// no crash, hang, memory blow-up or silent load, and no run directory left mixed.

import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { useTempDirs } from './helpers/tempdir.js';

const tempDir = useTempDirs();

test('the quick campaign: every hostile file and bad call refused, killed runs and saves leave no mix', () => {
  const json = join(tempDir('hostile-'), 'hostile.json');
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'scripts/hostile.ts', '--quick', '--kills', '3', '--save-kills', '3', '--json', json],
    { encoding: 'utf8', env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' } },
  );
  expect(r.stdout, r.stderr).toMatch(/\| crafted files \| \d+ \| \d+ \| \d+ \| 0 \| 0 \| 0 \| 0 \|/);
  expect(r.stdout).toMatch(/of them killed 3 .*mixed directories: 0;/);
  expect(r.stdout).toMatch(/killed saves: 3; torn files: 0/);
  expect(r.status, r.stdout).toBe(0);
  const report = JSON.parse(readFileSync(json, 'utf8')) as { results: { outcome: string }[] };
  expect(report.results.filter((x) => !['loaded', 'skipped'].includes(x.outcome))).toEqual([]);
}, 300_000);
