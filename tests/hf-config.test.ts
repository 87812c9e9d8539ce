// model/hf/config.ts: Llama and Qwen2 config.json files are read in the decoder's terms, and anything the
// decoder does not implement is refused with the file and the field named.

import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { hfConfigJson, hfParameterLayout, parseHFConfig, readHFConfig } from '../model/hf/config.js';

// SmolLM-135M's shape (its config.json on the Hugging Face hub).
const smol = {
  model_type: 'llama',
  vocab_size: 49152,
  hidden_size: 576,
  intermediate_size: 1536,
  num_hidden_layers: 30,
  num_attention_heads: 9,
  num_key_value_heads: 3,
  rope_theta: 10000,
  rms_norm_eps: 1e-5,
  max_position_embeddings: 2048,
  tie_word_embeddings: true,
  hidden_act: 'silu',
  rope_scaling: null,
  bos_token_id: 0,
  eos_token_id: 0,
  torch_dtype: 'bfloat16',
};

describe('HF config', () => {
  it('reads a Llama config with grouped-query attention and a tied head', () => {
    const c = parseHFConfig(smol);
    expect(c).toMatchObject({
      modelType: 'llama',
      numKVHeads: 3,
      headDim: 64,
      tieWordEmbeddings: true,
      qkvBias: false,
    });
    const layout = hfParameterLayout(c);
    expect(layout.find(([n]) => n === 'lm_head.weight')).toBeUndefined();
    expect(layout.find(([n]) => n === 'model.layers.0.self_attn.k_proj.weight')?.[1]).toEqual([192, 576]);
    const params = layout.reduce((s, [, shape]) => s + shape.reduce((a, b) => a * b, 1), 0);
    expect(params).toBe(134_515_008); // SmolLM-135M's parameter count, its embedding counted once
  });

  it('gives Qwen2 q/k/v biases and reads a list of eos ids', () => {
    const c = parseHFConfig({ ...smol, model_type: 'qwen2', tie_word_embeddings: false, eos_token_id: [7, 8] });
    expect(c.qkvBias).toBe(true);
    expect(c.eosTokenId).toBe(7);
    const names = hfParameterLayout(c).map(([n]) => n);
    expect(names).toContain('model.layers.29.self_attn.v_proj.bias');
    expect(names).toContain('lm_head.weight');
  });

  it('round-trips through the config.json it writes', () => {
    const c = parseHFConfig({ ...smol, model_type: 'qwen2' });
    expect(parseHFConfig(hfConfigJson(c))).toEqual(c);
  });

  it.each([
    [{ model_type: 'gpt2' }, 'model_type'],
    [{ rope_scaling: { type: 'linear', factor: 2 } }, 'rope_scaling'],
    [{ hidden_act: 'gelu' }, 'hidden_act'],
    [{ num_key_value_heads: 4 }, 'num_key_value_heads'],
    [{ hidden_size: 577 }, 'hidden_size'],
    [{ vocab_size: -1 }, 'vocab_size'],
  ])('refuses %j by naming %s', (patch, field) => {
    expect(() => parseHFConfig({ ...smol, ...patch }, 'dir/config.json')).toThrow(
      new RegExp(`^dir/config\\.json: ${field}: `),
    );
  });

  it('names the file when it is missing or not JSON', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'hfcfg-'));
    await expect(readHFConfig(dir)).rejects.toThrow(/config\.json: cannot read \(ENOENT\)/);
    await writeFile(join(dir, 'config.json'), '{"model_type": ');
    await expect(readHFConfig(dir)).rejects.toThrow(/config\.json: not JSON/);
    await writeFile(join(dir, 'config.json'), JSON.stringify(smol));
    expect((await readHFConfig(dir)).numLayers).toBe(30);
  });
});
