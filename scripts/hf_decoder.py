# Hugging Face's Llama and Qwen2 forward written again in PyTorch from the maths, as the oracle of
# model/hf/decoder.ts: RMSNorm, rotary embeddings (rope_theta, rotate_half), grouped-query attention with
# repeated key/value heads, SwiGLU, q/k/v biases where the config has them, a tied or separate lm_head.
# Reads a model directory (config.json, model.safetensors in F32 or F64) and ids from argv; prints
# {"logits": [[...], ...]} (one row per position) in float64. Not transformers, and not a trainer.
import json
import math
import os
import sys

import torch

from safetensors_io import load_safetensors

def rms_norm(x, w, eps):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], -1)


def forward(p, c, ids):
    """ids (T,) -> logits (T, V), batch of one, no cache."""
    T = ids.shape[0]
    nh, nkv = c['num_attention_heads'], c.get('num_key_value_heads', c['num_attention_heads'])
    d = c.get('head_dim') or c['hidden_size'] // nh
    eps, theta = c.get('rms_norm_eps', 1e-6), c.get('rope_theta', 10000.0)
    bias = c['model_type'] == 'qwen2' or c.get('attention_bias', False)
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    freqs = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None, :]  # (T, d/2)
    emb = torch.cat([freqs, freqs], -1)
    cos, sin = emb.cos(), emb.sin()  # (T, d)
    mask = torch.full((T, T), float('-inf'), dtype=torch.float64).triu(1)
    x = p['model.embed_tokens.weight'][ids]  # (T, C)
    for l in range(c['num_hidden_layers']):
        pre = f'model.layers.{l}.'
        h = rms_norm(x, p[pre + 'input_layernorm.weight'], eps)

        def proj(name, n):
            y = h @ p[pre + f'self_attn.{name}.weight'].T
            if bias:
                y = y + p[pre + f'self_attn.{name}.bias']
            return y.view(T, n, d).transpose(0, 1)  # (n, T, d)

        q, k, v = proj('q_proj', nh), proj('k_proj', nkv), proj('v_proj', nkv)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(nh // nkv, 0)  # each key head serves nh / nkv query heads in a row
        v = v.repeat_interleave(nh // nkv, 0)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d) + mask, -1)
        y = (att @ v).transpose(0, 1).reshape(T, nh * d)
        x = x + y @ p[pre + 'self_attn.o_proj.weight'].T
        h = rms_norm(x, p[pre + 'post_attention_layernorm.weight'], eps)
        gate = h @ p[pre + 'mlp.gate_proj.weight'].T
        up = h @ p[pre + 'mlp.up_proj.weight'].T
        x = x + (torch.nn.functional.silu(gate) * up) @ p[pre + 'mlp.down_proj.weight'].T
    x = rms_norm(x, p['model.norm.weight'], eps)
    head = p['model.embed_tokens.weight'] if c.get('tie_word_embeddings', False) else p['lm_head.weight']
    return x @ head.T


def main():
    model_dir, ids = sys.argv[1], [int(i) for i in sys.argv[2].split(',')]
    with open(os.path.join(model_dir, 'config.json')) as f:
        c = json.load(f)
    p = {k: v.double() for k, v in load_safetensors(os.path.join(model_dir, 'model.safetensors')).items()}
    with torch.no_grad():
        logits = forward(p, c, torch.tensor(ids))
    json.dump({'logits': logits.tolist()}, sys.stdout)


if __name__ == '__main__':
    main()
