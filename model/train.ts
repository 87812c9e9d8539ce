// Supervised training of the decoder: masked next-token cross-entropy through the fused target-log-prob
// op, AdamW, global-norm clipping, linear warm-up then cosine decay, and a progress bar on a terminal.

import cliProgress from 'cli-progress';
import * as E from '../engine/index.js';
import type { Tensor } from '../engine/index.js';
import type { CausalLM } from './lm.js';

/** One training sequence; lossMask[t] says whether token t is a target (predicted from tokens < t). */
export interface Example {
  ids: readonly number[];
  lossMask: readonly boolean[];
}

export interface Schedule {
  lr: number;
  minLr: number;
  warmupSteps: number;
  steps: number;
}

/** Linear warm-up from 0 to lr over warmupSteps, then cosine decay to minLr at `steps`. */
export function lrAt(step: number, s: Schedule): number {
  if (step < s.warmupSteps) return (s.lr * (step + 1)) / s.warmupSteps;
  const progress = Math.min(1, (step - s.warmupSteps) / Math.max(1, s.steps - s.warmupSteps));
  return s.minLr + 0.5 * (s.lr - s.minLr) * (1 + Math.cos(Math.PI * progress));
}

/**
 * Right-pads examples into inputs (B, T-1) and targets (B, T-1) int32, where target -1 marks a position
 * that is padding or outside the loss mask. Right padding needs no attention mask: causality hides it.
 */
export function makeBatch(
  examples: readonly Example[],
  padId: number,
  device?: E.Device,
): { ids: Tensor; targets: Tensor; count: number } {
  const T = Math.max(...examples.map((e) => e.ids.length));
  if (T < 2) throw new Error('makeBatch: every example needs at least two tokens');
  const B = examples.length;
  const ids = new Int32Array(B * (T - 1)).fill(padId);
  const targets = new Int32Array(B * (T - 1)).fill(-1);
  let count = 0;
  examples.forEach((e, b) => {
    if (e.lossMask.length !== e.ids.length)
      throw new Error(`makeBatch: example ${b} has ${e.ids.length} ids but ${e.lossMask.length} mask entries`);
    for (let t = 0; t + 1 < e.ids.length; t++) {
      ids[b * (T - 1) + t] = e.ids[t];
      if (e.lossMask[t + 1]) {
        targets[b * (T - 1) + t] = e.ids[t + 1];
        count++;
      }
    }
  });
  return { ids: E.tensor(ids, [B, T - 1], { device }), targets: E.tensor(targets, [B, T - 1], { device }), count };
}

/**
 * Batches of examples of similar length, so that little of each batch is padding: draws `pool` batches'
 * worth of examples from `next`, sorts them by length, cuts them into batches and hands those out in an
 * order shuffled by `gen`. Every example drawn is used exactly once.
 */
export function lengthBuckets(next: () => Example, batchSize: number, gen: E.Generator, pool = 8): () => Example[] {
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw new Error(`lengthBuckets: batchSize must be a positive integer, got ${batchSize}`);
  if (!Number.isInteger(pool) || pool < 1)
    throw new Error(`lengthBuckets: pool must be a positive integer, got ${pool}`);
  let queue: Example[][] = [];
  return () => {
    if (queue.length === 0) {
      const drawn = Array.from({ length: pool * batchSize }, next).sort((a, b) => a.ids.length - b.ids.length);
      queue = Array.from({ length: pool }, (_, i) => drawn.slice(i * batchSize, (i + 1) * batchSize));
      for (let i = queue.length - 1; i > 0; i--) {
        const j = gen.int(i + 1);
        [queue[i], queue[j]] = [queue[j], queue[i]];
      }
    }
    return queue.pop()!;
  };
}

/** Mean cross-entropy over the targeted positions of a batch. */
export function batchLoss(model: CausalLM, batch: { ids: Tensor; targets: Tensor }): Tensor {
  const { logits } = model.forward(batch.ids);
  return E.crossEntropy(logits, batch.targets);
}

export interface SupervisedOptions extends Schedule {
  batchSize: number;
  weightDecay: number;
  /** Global gradient-norm clip (TRL's max_grad_norm). */
  maxGradNorm: number;
  padId: number;
  /** Show a progress bar (only drawn on a terminal). */
  progress?: boolean;
  /** Called after every step with its loss. */
  onStep?: (step: number, loss: number, lr: number) => void;
}

/**
 * Trains on batches drawn by `nextBatch(step)`. Returns the loss of every step. The optimizer is
 * returned too so a caller can continue or dispose it.
 */
export async function trainSupervised(
  model: CausalLM,
  nextBatch: (step: number) => Example[],
  opts: SupervisedOptions,
): Promise<{ losses: number[]; optimizer: E.AdamW }> {
  const params = model.parameters();
  const opt = new E.AdamW(params, { lr: opts.lr, weightDecay: opts.weightDecay, betas: [0.9, 0.95] });
  const bar = opts.progress
    ? new cliProgress.SingleBar(
        { format: 'warm-up |{bar}| {value}/{total} steps  loss {loss}  lr {lr}', hideCursor: true },
        cliProgress.Presets.shades_classic,
      )
    : null;
  bar?.start(opts.steps, 0, { loss: '-', lr: '-' });
  const losses: number[] = [];
  try {
    for (let step = 0; step < opts.steps; step++) {
      opt.lr = lrAt(step, opts);
      const lossT = E.tidy(() => {
        opt.zeroGrad();
        const loss = batchLoss(model, makeBatch(nextBatch(step), opts.padId, model.device));
        loss.backward();
        E.clipGradNorm(params, opts.maxGradNorm);
        opt.step();
        return loss;
      });
      const loss = await lossT.item();
      lossT.dispose();
      losses.push(loss);
      opts.onStep?.(step, loss, opt.lr);
      bar?.update(step + 1, { loss: loss.toFixed(4), lr: opt.lr.toExponential(2) });
    }
  } finally {
    bar?.stop();
    opt.zeroGrad();
  }
  return { losses, optimizer: opt };
}
