# The project's decoder (model/gpt.ts) written again in PyTorch: pre-norm RMSNorm blocks, rotary position
# embeddings, causal attention, a GELU MLP, a tied head, the previous-token embeddings, and a KV cache for
# decoding. One copy for both users: scripts/golden.py (float64, the golden tests' reference) and
# bench/peers/torch_decoder.py (float32, the model bench's peer). Parameters are a dict named as
# model/gpt.ts names them; the dtype is theirs. Not an nn.Module and not a trainer.
import math

import torch
import torch.nn.functional as F


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rope(x, past, base):
    """Rotary embedding from position past on, half-split: (x1, x2) -> (x1 cos - x2 sin, x1 sin + x2 cos)."""
    T, hs = x.shape[-2], x.shape[-1]
    half = hs // 2
    # The tables in float64, then the model's dtype, as model/gpt.ts builds them.
    pos = torch.arange(past, past + T, dtype=torch.float64)[:, None]
    freq = base ** (-torch.arange(half, dtype=torch.float64) / half)
    cos, sin = torch.cos(pos * freq).to(x.dtype), torch.sin(pos * freq).to(x.dtype)  # (T, half)
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)


def forward(p, cfg, ids, cache=None, history=None):
    """
    ids (B, T) -> logits (B, T, V), and the cache extended by these tokens: a list of (k, v) per layer, each
    (B, nh, S, hs). Pass cache=[] to start one (a prefill); None keeps none (training). history (B, n): the n
    tokens before ids for a model with prevTokens n, zeros (token 0 before the first) when None.
    """
    B, T = ids.shape
    C, L, NH = cfg['nEmbd'], cfg['nLayer'], cfg['nHead']
    HS = C // NH
    eps, base = cfg['normEps'], cfg['ropeBase']
    past = cache[0][0].shape[2] if cache else 0
    x = p['wte'][ids]  # (B, T, C)
    n = cfg.get('prevTokens', 0)
    if n > 0:
        if history is None:
            history = torch.zeros(B, n, dtype=torch.long)
        context = torch.cat([history, ids], 1)  # (B, n + T)
        for j in range(1, n + 1):
            x = x + p[f'wtePrev.{j}'][context[:, n - j:n - j + T]]
    # Queries see every cached key and the new keys up to their own.
    mask = torch.full((T, past + T), float('-inf'), dtype=x.dtype).triu(past + 1)
    out_cache = [] if cache is not None else None
    for l in range(L):
        h = rms_norm(x, p[f'h.{l}.ln1'], eps)
        heads = lambda w: (h @ p[f'h.{l}.{w}']).view(B, T, NH, HS).transpose(1, 2)  # (B, nh, T, hs)
        q, k, v = rope(heads('wq'), past, base), rope(heads('wk'), past, base), heads('wv')
        if cache:
            k = torch.cat([cache[l][0], k], 2)  # (B, nh, past + T, hs)
            v = torch.cat([cache[l][1], v], 2)
        if out_cache is not None:
            out_cache.append((k, v))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(HS) + mask, -1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = x + y @ p[f'h.{l}.wo']
        m = rms_norm(x, p[f'h.{l}.ln2'], eps)
        x = x + F.gelu(m @ p[f'h.{l}.fc'], approximate='tanh') @ p[f'h.{l}.proj']
    x = rms_norm(x, p['lnf'], eps)
    logits = x @ p['wte'].T  # tied head
    return logits if out_cache is None else (logits, out_cache)
