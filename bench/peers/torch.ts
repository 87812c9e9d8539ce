// The PyTorch peer of the model suite: the same decoder (scripts/decoder.py, the golden tests' model) with the
// same weights in float32 on the CPU, timed by bench/peers/torch_decoder.py in a child process with a given
// thread count (torch.set_num_threads). Used when a python3 with torch is found; otherwise `off` says why.

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { GPTConfig } from '../../model/gpt.js';
import { serialize } from '../../model/safetensors.js';
import type { Budget, Measured } from '../harness.js';
import { measuredOf } from '../harness.js';

const SCRIPT = fileURLToPath(new URL('./torch_decoder.py', import.meta.url));

/** A training step on fixed (B, T) ids and targets (-1: no loss), or sampling from (B, P) prompts. */
export type TorchJob =
  | {
      kind: 'train';
      B: number;
      T: number;
      ids: number[];
      targets: number[];
      adamw: { lr: number; betas: [number, number]; eps: number; weightDecay: number };
      clip: number;
    }
  | { kind: 'sample'; prompts: number[][]; steps: number; temperature: number; seed: number };

export interface TorchResult extends Measured {
  /** "torch 1.13.0, 2 threads". */
  name: string;
  /** A training job's loss on its first step, before any update. */
  loss?: number;
}

/** The interpreters tried, in order: env IGPO_PYTHON, then python3 on the PATH, then the system's. */
function candidates(): string[] {
  const env = process.env.IGPO_PYTHON;
  return [...new Set([...(env ? [env] : []), 'python3', '/usr/bin/python3'])];
}

let python: string | null | undefined;
let why = '';

/**
 * Runs one job with the given weights (name -> float32 data and shape) and thread count. Returns its
 * timing, or a string saying why there is no PyTorch peer (no python3, no torch, or the script failed).
 */
export function torchRun(
  cfg: GPTConfig,
  weights: Record<string, { shape: number[]; data: Float32Array }>,
  threads: number,
  job: TorchJob,
  budget: Required<Budget> & { warmup: number },
): TorchResult | string {
  if (python === null) return why;
  // A bundled build (scripts/gpu-check.sh --bundle) carries no Python files.
  if (!existsSync(SCRIPT)) return `no PyTorch peer: ${SCRIPT} is not here (a bundled build carries no Python)`;
  const dir = mkdtempSync(join(tmpdir(), 'igpo-torch-'));
  try {
    const file = join(dir, 'weights.safetensors');
    const tensors = Object.fromEntries(
      Object.entries(weights).map(([k, w]) => [k, { dtype: 'float32' as const, shape: w.shape, data: w.data }]),
    );
    writeFileSync(file, serialize(tensors));
    const input = JSON.stringify({
      weights: file,
      config: cfg,
      threads,
      job,
      budget: { timeMs: budget.time, iterations: budget.iterations, warmup: budget.warmup },
    });
    const reasons: string[] = [];
    for (const py of python ? [python] : candidates()) {
      const r = spawnSync(py, [SCRIPT], { input, encoding: 'utf8', maxBuffer: 1 << 26, timeout: 600_000 });
      if (r.error) {
        reasons.push(`${py}: ${(r.error as NodeJS.ErrnoException).code ?? r.error.message}`);
        continue;
      }
      if (r.status === 3) {
        reasons.push(`${py}: ${(JSON.parse(r.stdout) as { error: string }).error}`);
        continue;
      }
      if (r.status !== 0) {
        const tail = r.stderr.trim().split('\n').slice(-1)[0];
        throw new Error(`PyTorch peer: ${py} ${SCRIPT} exited with ${r.status}: ${tail}`);
      }
      python = py;
      const out = JSON.parse(r.stdout) as { samplesMs: number[]; loss?: number; torch: string; threads: number };
      return {
        ...measuredOf(out.samplesMs),
        name: `torch ${out.torch} (${out.threads} thread${out.threads > 1 ? 's' : ''})`,
        ...(out.loss !== undefined ? { loss: out.loss } : {}),
      };
    }
    python = null;
    why = `no PyTorch peer: no python3 with torch (${reasons.join('; ')}); set IGPO_PYTHON to one`;
    return why;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
