// Model checkpoints: a round trip is exact (same parameters, same logits), and a file that does not
// match its config, or is damaged, is rejected with a message that names the file and the problem.

import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';
import { loadCheckpoint, saveCheckpoint } from '../model/checkpoint.js';
import { GPT, type GPTConfig } from '../model/gpt.js';
import { CHECKSUM_KEY, saveSafetensors, type SafeTensor } from '../model/safetensors.js';
import { defaultTokenizer } from '../model/tokenizer.js';
import { useTempDirs } from './helpers/tempdir.js';

const tempDir = useTempDirs();

const tok = defaultTokenizer();
const cfg: GPTConfig = {
  vocabSize: tok.vocabSize,
  blockSize: 16,
  nLayer: 1,
  nHead: 2,
  nEmbd: 8,
  ropeBase: 10000,
  normEps: 1e-5,
};

describe('checkpoint', () => {
  test('round trip is exact and keeps the tokenizer and metadata', async () => {
    const dir = tempDir('ckpt-');
    const path = join(dir, 'model.safetensors');
    const model = new GPT(cfg, { generator: new E.Generator(3) });
    await saveCheckpoint(path, model, { tokenizer: tok, metadata: { step: '7' } });
    const loaded = await loadCheckpoint(path);
    for (const [name, p] of model.params)
      expect(Array.from(loaded.model.p(name).dataSync())).toEqual(Array.from(p.dataSync()));
    const ids = E.randint(0, cfg.vocabSize, [2, 5]);
    expect(Array.from(loaded.model.forward(ids).logits.dataSync())).toEqual(
      Array.from(model.forward(ids).logits.dataSync()),
    );
    expect(loaded.tokenizer?.vocabSize).toBe(tok.vocabSize);
    expect(loaded.metadata.step).toBe('7');
  });

  test('a file that does not match its config, or is truncated, is rejected naming the file', async () => {
    const dir = tempDir('ckpt-');
    const path = join(dir, 'model.safetensors');
    const model = new GPT(cfg);
    await saveCheckpoint(path, model);
    const bytes = readFileSync(path);
    writeFileSync(join(dir, 'cut.safetensors'), bytes.subarray(0, bytes.length - 3));
    await expect(loadCheckpoint(join(dir, 'cut.safetensors'))).rejects.toThrow(/cut\.safetensors/);
    const bigger = { ...cfg, nEmbd: 12, nHead: 2 };
    const tensors = Object.fromEntries(
      [...model.params].map(([n, t]) => [n, { dtype: t.dtype, shape: [...t.shape], data: t.dataSync() }]),
    );
    await saveSafetensors(join(dir, 'wrong.safetensors'), tensors, {
      format: 'igpo-ts/gpt',
      config: JSON.stringify(bigger),
    });
    await expect(loadCheckpoint(join(dir, 'wrong.safetensors'))).rejects.toThrow(
      /wrong\.safetensors: parameter 'wte' has shape \[107, 8\], the config implies \[107, 12\]/,
    );
    delete tensors['h.0.fc'];
    await saveSafetensors(join(dir, 'missing.safetensors'), tensors, {
      format: 'igpo-ts/gpt',
      config: JSON.stringify(cfg),
    });
    await expect(loadCheckpoint(join(dir, 'missing.safetensors'))).rejects.toThrow(/parameter 'h\.0\.fc' is missing/);
    await saveSafetensors(join(dir, 'nometa.safetensors'), tensors);
    await expect(loadCheckpoint(join(dir, 'nometa.safetensors'))).rejects.toThrow(/no igpo-ts\/gpt config/);
  });

  /** The tensors of a valid model of `cfg`, as a file would hold them. */
  const tensorsOf = (c: GPTConfig = cfg): Record<string, SafeTensor> => {
    const model = new GPT(c, { generator: new E.Generator(1) });
    const out = Object.fromEntries(
      [...model.params].map(([n, t]) => [n, { dtype: t.dtype, shape: [...t.shape], data: t.dataSync() }]),
    );
    model.dispose();
    return out;
  };
  const write = async (
    name: string,
    config: unknown,
    opts: { tensors?: Record<string, SafeTensor>; tokenizer?: string } = {},
  ) => {
    const path = join(tempDir('ckpt-bad-'), name);
    const metadata: Record<string, string> = { format: 'igpo-ts/gpt', config: JSON.stringify(config) };
    if (opts.tokenizer !== undefined) metadata.tokenizer = opts.tokenizer;
    await saveSafetensors(path, opts.tensors ?? tensorsOf(), metadata);
    return path;
  };

  test('absurd, missing or mistyped config fields are refused before anything is built, naming the field', async () => {
    const { ropeBase: _r, ...noRope } = cfg;
    const cases: [string, unknown, RegExp][] = [
      ['nEmbd 2e4', { ...cfg, nEmbd: 2e4 }, /config: nEmbd: .*16384/],
      ['blockSize 2e7', { ...cfg, blockSize: 2e7 }, /config: blockSize: .*65536/],
      ['rotary tables', { ...cfg, blockSize: 65536, nEmbd: 512, nHead: 1 }, /config: blockSize: blockSize x head size/],
      ['nLayer 1e9', { ...cfg, nLayer: 1e9 }, /config: nLayer:/],
      ['vocabSize 1e8', { ...cfg, vocabSize: 1e8 }, /config: vocabSize:/],
      ['prevTokens 1e6', { ...cfg, prevTokens: 1e6 }, /config: prevTokens:/],
      ['prevTokens 3.5', { ...cfg, prevTokens: 3.5 }, /config: prevTokens: .*expected int/],
      ['prevTokens "3"', { ...cfg, prevTokens: '3' }, /config: prevTokens: .*number/],
      ['ropeBase missing', noRope, /config: ropeBase: .*number/],
      ['ropeBase 0', { ...cfg, ropeBase: 0 }, /config: ropeBase:/],
      ['ropeBase -1', { ...cfg, ropeBase: -1 }, /config: ropeBase:/],
      ['ropeBase "abc"', { ...cfg, ropeBase: 'abc' }, /config: ropeBase: .*number/],
      ['normEps -1', { ...cfg, normEps: -1 }, /config: normEps:/],
      ['normEps "x"', { ...cfg, normEps: 'x' }, /config: normEps: .*number/],
      ['odd head size', { ...cfg, nEmbd: 6, nHead: 2 }, /config: nHead: the head size .* must be even/],
      ['nHead not dividing', { ...cfg, nHead: 3 }, /config: nEmbd: nEmbd must be divisible by nHead/],
      ['unknown key', { ...cfg, dropout: 0.1 }, /config: .*dropout/],
      ['not an object', [1, 2], /config: \(top level\)/],
    ];
    for (const [what, config, why] of cases) {
      const path = await write('model.safetensors', config);
      await expect(loadCheckpoint(path), what).rejects.toThrow(
        new RegExp(`^checkpoint ${path}: __metadata__[.]${why.source}`),
      );
    }
    const metadata = { format: 'igpo-ts/gpt', config: '{"vocabSize": 107,' };
    const path = join(tempDir('ckpt-bad-'), 'notjson.safetensors');
    await saveSafetensors(path, tensorsOf(), metadata);
    await expect(loadCheckpoint(path)).rejects.toThrow(/notjson\.safetensors: __metadata__\.config is not JSON/);
  });

  test('tensors the config does not imply, or of mixed dtypes, are refused', async () => {
    const extra = { ...tensorsOf(), 'h.9.wq': { dtype: 'float32' as const, shape: [1], data: new Float32Array(1) } };
    await expect(loadCheckpoint(await write('extra.safetensors', cfg, { tensors: extra }))).rejects.toThrow(
      /extra\.safetensors: unexpected tensors: h\.9\.wq/,
    );
    const mixed = tensorsOf();
    mixed.lnf = { dtype: 'float64', shape: [8], data: new Float64Array(8).fill(1) };
    await expect(loadCheckpoint(await write('mixed.safetensors', cfg, { tensors: mixed }))).rejects.toThrow(
      /mixed\.safetensors: parameters must all be float32 or all float64, found float32, float64/,
    );
  });

  test('a tokenizer that is not JSON, or of another vocabulary than the model, is refused with the file', async () => {
    await expect(loadCheckpoint(await write('tok.safetensors', cfg, { tokenizer: '{"type":' }))).rejects.toThrow(
      /tok\.safetensors: __metadata__\.tokenizer: not JSON/,
    );
    const small = { ...cfg, vocabSize: 20 };
    await expect(
      loadCheckpoint(
        await write('vocab.safetensors', small, { tensors: tensorsOf(small), tokenizer: JSON.stringify(tok.toJSON()) }),
      ),
    ).rejects.toThrow(/vocab\.safetensors: __metadata__\.tokenizer has 107 tokens, the config's vocabSize is 20/);
    await expect(
      saveCheckpoint(join(tempDir('ckpt-'), 'm.safetensors'), new GPT(small), { tokenizer: tok }),
    ).rejects.toThrow(/the tokenizer has 107 tokens, the model's vocabSize is 20/);
  });

  test('NaN or Inf weights are refused naming the tensor, unless allowed', async () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      const tensors = tensorsOf();
      (tensors['h.0.wq'].data as Float32Array)[3] = bad;
      const path = await write('nan.safetensors', cfg, { tensors });
      await expect(loadCheckpoint(path)).rejects.toThrow(
        new RegExp(`nan\\.safetensors: parameter 'h\\.0\\.wq' holds a non-finite value \\(${bad} at element 3\\)`),
      );
      const { model } = await loadCheckpoint(path, { allowNonFinite: true });
      expect(model.p('h.0.wq').dataSync()[3]).toBe(bad);
      model.dispose();
    }
  });

  test('a flipped data byte is caught by the checksum; a file without one (from elsewhere) still loads', async () => {
    const dir = tempDir('ckpt-sum-');
    const path = join(dir, 'model.safetensors');
    const model = new GPT(cfg, { generator: new E.Generator(5) });
    await saveCheckpoint(path, model, { tokenizer: tok });
    const bytes = readFileSync(path);
    const flipped = Buffer.from(bytes);
    flipped[bytes.length - 5] ^= 0x10;
    writeFileSync(join(dir, 'flip.safetensors'), flipped);
    await expect(loadCheckpoint(join(dir, 'flip.safetensors'))).rejects.toThrow(
      /flip\.safetensors: checksum mismatch: the header or the data changed/,
    );
    // The same file as another writer would make it: no checksum in __metadata__.
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
    delete header.__metadata__[CHECKSUM_KEY];
    const json = Buffer.from(JSON.stringify(header).padEnd(n, ' '));
    const foreign = Buffer.concat([bytes.subarray(0, 8), json, bytes.subarray(8 + n)]);
    foreign.writeBigUInt64LE(BigInt(json.length), 0);
    writeFileSync(join(dir, 'foreign.safetensors'), foreign);
    const loaded = await loadCheckpoint(join(dir, 'foreign.safetensors'));
    expect(Array.from(loaded.model.p('wte').dataSync())).toEqual(Array.from(model.p('wte').dataSync()));
    expect(CHECKSUM_KEY in loaded.metadata).toBe(false);
  });

  test('a header nested 5,000 deep is refused naming the file, without a stack overflow', async () => {
    const path = join(tempDir('ckpt-deep-'), 'deep.safetensors');
    const text = `{"__metadata__":{"format":"igpo-ts/gpt","x":${'['.repeat(5000)}${']'.repeat(5000)}}}`;
    const out = Buffer.alloc(8 + text.length);
    out.writeBigUInt64LE(BigInt(text.length), 0);
    out.write(text, 8);
    writeFileSync(path, out);
    await expect(loadCheckpoint(path)).rejects.toThrow(/deep\.safetensors: header nests \d+ levels deep/);
  });

  test('a save removes the temporary files killed saves left, and keeps a live writer\u2019s', async () => {
    const dir = tempDir('ckpt-stale-');
    const dead = spawnSync(process.execPath, ['-e', '0']).pid!;
    const stale = join(dir, `.model.safetensors.${dead}.0123456789ab.tmp`);
    const live = join(dir, `.model.safetensors.${process.pid}.0123456789ab.tmp`);
    const other = join(dir, `.other.safetensors.${dead}.0123456789ab.tmp`);
    for (const f of [stale, live, other]) writeFileSync(f, 'half a file');
    await saveCheckpoint(join(dir, 'model.safetensors'), new GPT(cfg));
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(live)).toBe(true); // this process is alive: its save may be under way
    expect(existsSync(other)).toBe(true); // another file's temporaries wait for that file's next save
  });
});
