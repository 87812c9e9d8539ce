#!/usr/bin/env python3
# The outside reference for tests/golden.test.ts, as llm.c checks itself against PyTorch: the project's
# decoder (model/gpt.ts) written again in PyTorch (scripts/decoder.py), float64, from a fixed seed; one
# batch's logits, loss and every parameter's gradient, and the losses of five AdamW steps, into
# tests/golden/pytorch.json.
# Run it with Debian's PyTorch (apt install python3-torch; 1.13): /usr/bin/python3 scripts/golden.py
# Only regenerating the file needs Python; the test reads the committed file.
import json
import sys

import torch
import torch.nn.functional as F

from decoder import forward

torch.manual_seed(20261201)
torch.set_default_dtype(torch.float64)

CFG = dict(vocabSize=23, blockSize=16, nLayer=2, nHead=2, nEmbd=16, ropeBase=10000.0, normEps=1e-5, prevTokens=2)
B, T = 3, 9
V, C, L = CFG['vocabSize'], CFG['nEmbd'], CFG['nLayer']


def parameters():
    """Every parameter of model/gpt.ts's layout, in its order: N(0, 0.3) weights, norms around 1."""
    p = {'wte': torch.randn(V, C) * 0.3}
    for j in range(1, CFG['prevTokens'] + 1):
        p[f'wtePrev.{j}'] = torch.randn(V, C) * 0.3
    for l in range(L):
        p[f'h.{l}.ln1'] = 1 + 0.1 * torch.randn(C)
        for w in ('wq', 'wk', 'wv', 'wo'):
            p[f'h.{l}.{w}'] = torch.randn(C, C) * 0.3
        p[f'h.{l}.ln2'] = 1 + 0.1 * torch.randn(C)
        p[f'h.{l}.fc'] = torch.randn(C, 4 * C) * 0.3
        p[f'h.{l}.proj'] = torch.randn(4 * C, C) * 0.3
    p['lnf'] = 1 + 0.1 * torch.randn(C)
    return {k: v.requires_grad_() for k, v in p.items()}


def loss_of(p, ids, targets):
    logits = forward(p, CFG, ids)
    return logits, F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-1)


def main():
    p = parameters()
    weights = {k: v.detach().clone() for k, v in p.items()}
    ids = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    targets.view(-1)[torch.arange(B * T) % 7 == 3] = -1  # some positions masked
    logits, loss = loss_of(p, ids, targets)
    loss.backward()
    grads = {k: v.grad.detach().clone() for k, v in p.items()}
    opt = torch.optim.AdamW(list(p.values()), lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)
    step_losses = []
    for _ in range(5):
        opt.zero_grad()
        _, l = loss_of(p, ids, targets)
        l.backward()
        opt.step()
        step_losses.append(l.item())
    flat = lambda t: [float(x) for x in t.reshape(-1).tolist()]
    out = {
        'about': f'scripts/golden.py with torch {torch.__version__}, float64: the decoder of model/gpt.ts',
        'config': CFG,
        'batch': {'B': B, 'T': T, 'ids': flat(ids), 'targets': flat(targets)},
        'adamw': {'lr': 1e-2, 'betas': [0.9, 0.999], 'eps': 1e-8, 'weightDecay': 0.1},
        'weights': {k: {'shape': list(v.shape), 'values': flat(v)} for k, v in weights.items()},
        'logits': flat(logits.detach()),
        'loss': loss.item(),
        'grads': {k: flat(v) for k, v in grads.items()},
        'stepLosses': step_losses,
    }
    path = sys.argv[1] if len(sys.argv) > 1 else 'tests/golden/pytorch.json'
    with open(path, 'w') as f:
        json.dump(out, f, separators=(',', ':'))
        f.write('\n')
    print(f'wrote {path}: loss {loss.item():.6f}, step losses {[round(x, 6) for x in step_losses]}')


if __name__ == '__main__':
    main()
