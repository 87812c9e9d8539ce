#!/usr/bin/env python3
# The model bench's PyTorch peer (bench/peers/torch.ts runs it): the project's decoder in PyTorch
# (scripts/decoder.py, the golden tests' model) on the CPU in float32, with the suite's weights, timing one
# job the way the suite times ours: a training step (forward, loss, backward, clip, AdamW) or sampling with
# a KV cache (prefill not timed). Times are time.perf_counter over repeated calls after a warm-up.
# Reads a JSON request on stdin, writes a JSON answer on stdout; not a trainer and not a sampler to use.
import json
import os
import statistics
import sys
import time

try:
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print(json.dumps({'error': f'no PyTorch ({e})'}))
    sys.exit(3)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'scripts'))
from decoder import forward  # noqa: E402
from safetensors_io import load_safetensors  # noqa: E402

def timed(fn, budget, before=None):
    """Milliseconds of each call of fn after `warmup` calls, until both the time and the count are met."""
    for _ in range(budget['warmup']):
        if before:
            before()
        fn()
    samples = []
    total = 0.0
    while len(samples) < budget['iterations'] or total < budget['timeMs']:
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        ms = (time.perf_counter() - t0) * 1000
        samples.append(ms)
        total += ms
    return samples


def train(p, cfg, job, budget):
    B, T = job['B'], job['T']
    ids = torch.tensor(job['ids'], dtype=torch.long).view(B, T)
    targets = torch.tensor(job['targets'], dtype=torch.long).view(B, T)
    params = [t.requires_grad_() for t in p.values()]
    a = job['adamw']
    opt = torch.optim.AdamW(params, lr=a['lr'], betas=tuple(a['betas']), eps=a['eps'], weight_decay=a['weightDecay'])

    def step():
        opt.zero_grad()
        logits = forward(p, cfg, ids)
        loss = F.cross_entropy(logits.view(-1, cfg['vocabSize']), targets.view(-1), ignore_index=-1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, job['clip'])
        opt.step()
        return loss.item()

    first = step()  # on the weights as given, for the suite to check against its own first loss
    return {'loss': first, 'samplesMs': timed(step, budget)}


def sample(p, cfg, job, budget):
    prompts = torch.tensor(job['prompts'], dtype=torch.long)  # (B, P), every row the same length
    n = cfg.get('prevTokens', 0)
    state = {}
    torch.manual_seed(job['seed'])

    def prefill():
        with torch.no_grad():
            logits, cache = forward(p, cfg, prompts, cache=[])
        state.update(logits=logits[:, -1], cache=cache, seqs=prompts)

    def generate():
        # One forward of [B, 1] per new token on the cache, and the next token drawn from its logits.
        with torch.no_grad():
            logits, cache, seqs = state['logits'], state['cache'], state['seqs']
            for _ in range(job['steps']):
                tok = torch.multinomial(torch.softmax(logits / job['temperature'], -1), 1)  # (B, 1)
                history = seqs[:, -n:] if n > 0 else None
                seqs = torch.cat([seqs, tok], 1)
                out, cache = forward(p, cfg, tok, cache=cache, history=history)
                logits = out[:, -1]
        return seqs

    return {'samplesMs': timed(generate, budget, before=prefill)}


def main():
    req = json.load(sys.stdin)
    torch.set_num_threads(req['threads'])
    p = load_safetensors(req['weights'])
    job = req['job']
    run = {'train': train, 'sample': sample}[job['kind']]
    out = run(p, req['config'], job, req['budget'])
    out['medianMs'] = statistics.median(out['samplesMs'])
    out['torch'] = torch.__version__
    out['threads'] = torch.get_num_threads()
    print(json.dumps(out))


if __name__ == '__main__':
    main()
