// The engine as a library: `npm pack` (which builds dist/ with tsc), the tarball installed into a fresh
// project, and that project importing `igpo-ts/engine` and `igpo-ts/testing` from plain JavaScript with
// no tsx, and type-checking against the declarations.

import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { expect, test } from 'vitest';
import { useTempDirs } from './helpers/tempdir.js';

const tempDir = useTempDirs();
const run = promisify(execFile);
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

const SCRIPT = `
import { tensor, matmul } from 'igpo-ts/engine';
import { gradcheck } from 'igpo-ts/testing';

const y = matmul(tensor([[1, 2], [3, 4]]), tensor([[5], [6]]));
console.log(JSON.stringify(Array.from(await y.data())));
// softplus from the engine's ops; gradcheck throws if its backward were wrong.
const softplus = (x) => x.exp().add(1).log();
gradcheck(softplus, [{ shape: [2, 3], data: [-2, -1, -0.5, 0.5, 1, 2] }], { name: 'softplus' });
console.log('gradcheck ok');
`;

const TYPED = `
import { tensor, type Tensor } from 'igpo-ts/engine';
import { gradcheck, type GradInput } from 'igpo-ts/testing';

const x: Tensor = tensor([1, 2, 3]);
const input: GradInput = { shape: [3], data: [0.1, 0.2, 0.3] };
gradcheck((t: Tensor) => t.mul(t), [input], { name: 'square' });
const n: number = x.size;
export { n };
`;

test('npm pack, installed into a fresh project, runs from JavaScript and type-checks from TypeScript', async () => {
  const dir = tempDir('igpo-pack-');
  const { stdout: packed } = await run(npm, ['pack', '--json', '--pack-destination', dir], { maxBuffer: 1 << 26 });
  const tarball = join(dir, (JSON.parse(packed.slice(packed.indexOf('['))) as { filename: string }[])[0].filename);
  const project = join(dir, 'user');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'user', private: true, type: 'module' }));
  await run(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', '--ignore-scripts', tarball], {
    cwd: project,
    maxBuffer: 1 << 26,
  });
  writeFileSync(join(project, 'use.mjs'), SCRIPT);
  const { stdout } = await run(process.execPath, ['use.mjs'], { cwd: project });
  expect(stdout.trim().split('\n')).toEqual(['[17,39]', 'gradcheck ok']);

  writeFileSync(join(project, 'typed.ts'), TYPED);
  const tsc = resolve('node_modules/typescript/bin/tsc');
  const flags = ['--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext'];
  await run(process.execPath, [tsc, ...flags, '--target', 'es2022', 'typed.ts'], { cwd: project });
}, 600_000);
