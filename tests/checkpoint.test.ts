// Model checkpoints: a round trip is exact (same parameters, same logits), and a file that does not
// match its config, or is damaged, is rejected with a message that names the file and the problem.

import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';
import { loadCheckpoint, saveCheckpoint } from '../model/checkpoint.js';
import { GPT, type GPTConfig } from '../model/gpt.js';
import { saveSafetensors } from '../model/safetensors.js';
import { defaultTokenizer } from '../model/tokenizer.js';
import { useTempDirs } from './helpers/tempdir.js';

const tempDir = useTempDirs();

const cfg: GPTConfig = { vocabSize: 20, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 8, ropeBase: 10000, normEps: 1e-5 };

describe('checkpoint', () => {
  test('round trip is exact and keeps the tokenizer and metadata', async () => {
    const dir = tempDir('ckpt-');
    const path = join(dir, 'model.safetensors');
    const model = new GPT(cfg, { generator: new E.Generator(3) });
    const tok = defaultTokenizer();
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
      /wrong\.safetensors: parameter 'wte' has shape \[20, 8\], the config implies \[20, 12\]/,
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
});
