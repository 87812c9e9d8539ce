// Optimizers (SGD with momentum, AdamW with decoupled weight decay) and global-norm gradient clipping.
// Updates happen off the tape; AdamW uses the backend's fused step when it has one.

import * as ops from './ops.js';
import { fusedKernel } from './fused.js';
import { dispose, full, keep, noGrad, tensor, tidy, zerosLike, type Tensor } from './tensor.js';

function checkParams(op: string, params: readonly Tensor[]): void {
  if (params.length === 0) throw new Error(`${op}: no parameters given`);
  params.forEach((p, i) => {
    if (!p.requiresGrad || p.gradFn)
      throw new Error(`${op}: parameter ${i} ${p} must be a leaf tensor with requiresGrad set`);
  });
}

export interface Optimizer {
  step(): void;
  zeroGrad(): void;
  lr: number;
}

/** Disposes and clears every parameter's .grad. */
function clearGrads(params: readonly Tensor[]): void {
  for (const p of params) {
    p.grad?.dispose();
    p.grad = null;
  }
}

export interface SGDOptions {
  lr: number;
  momentum?: number;
  weightDecay?: number;
}

/** SGD with optional momentum (PyTorch's form: buf = momentum * buf + g; p -= lr * buf). */
export class SGD implements Optimizer {
  lr: number;
  readonly momentum: number;
  readonly weightDecay: number;
  private bufs = new Map<Tensor, Tensor>();

  constructor(
    readonly params: readonly Tensor[],
    opts: SGDOptions,
  ) {
    checkParams('SGD', params);
    this.lr = opts.lr;
    this.momentum = opts.momentum ?? 0;
    this.weightDecay = opts.weightDecay ?? 0;
  }

  step(): void {
    noGrad(() =>
      tidy(() => {
        for (const p of this.params) {
          if (!p.grad) continue;
          let g = this.weightDecay ? ops.add(p.grad, ops.mul(p, this.weightDecay)) : p.grad;
          if (this.momentum) {
            const prev = this.bufs.get(p);
            const buf = keep(prev ? ops.add(ops.mul(prev, this.momentum), g) : ops.mul(g, 1));
            prev?.dispose();
            this.bufs.set(p, buf);
            g = buf;
          }
          p.assign(ops.sub(p, ops.mul(g, this.lr)));
        }
      }),
    );
  }

  zeroGrad(): void {
    clearGrads(this.params);
  }
}

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/** AdamW (Loshchilov & Hutter 2019): Adam with weight decay applied to the parameter, not the gradient. */
export class AdamW implements Optimizer {
  lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  stepCount = 0;
  private state = new Map<Tensor, { m: Tensor; v: Tensor }>();

  constructor(
    readonly params: readonly Tensor[],
    opts: AdamWOptions = {},
  ) {
    checkParams('AdamW', params);
    this.lr = opts.lr ?? 1e-3;
    [this.beta1, this.beta2] = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0.01;
  }

  step(): void {
    this.stepCount++;
    const hp = {
      lr: this.lr,
      beta1: this.beta1,
      beta2: this.beta2,
      eps: this.eps,
      weightDecay: this.weightDecay,
      step: this.stepCount,
    };
    const bc1 = 1 - this.beta1 ** hp.step;
    const bc2 = 1 - this.beta2 ** hp.step;
    noGrad(() =>
      tidy(() => {
        for (const p of this.params) {
          if (!p.grad) continue;
          let s = this.state.get(p);
          if (!s) {
            s = { m: keep(zerosLike(p)), v: keep(zerosLike(p)) };
            this.state.set(p, s);
          }
          const fusedStep = fusedKernel(p, 'adamw');
          if (fusedStep) {
            fusedStep(p, p.grad, s.m, s.v, hp);
            continue;
          }
          const g = p.grad;
          const m = ops.add(ops.mul(s.m, this.beta1), ops.mul(g, 1 - this.beta1));
          const v = ops.add(ops.mul(s.v, this.beta2), ops.mul(ops.mul(g, g), 1 - this.beta2));
          const update = ops.div(ops.div(m, bc1), ops.add(ops.sqrt(ops.div(v, bc2)), this.eps));
          p.assign(ops.sub(ops.mul(p, 1 - this.lr * this.weightDecay), ops.mul(update, this.lr)));
          s.m.assign(m);
          s.v.assign(v);
        }
      }),
    );
  }

  zeroGrad(): void {
    clearGrads(this.params);
  }

  /** Frees the moment buffers. */
  dispose(): void {
    for (const s of this.state.values()) dispose([s.m, s.v]);
    this.state.clear();
  }

  /**
   * The optimizer's state, to save with a run and resume it exactly (loadState): the step count, the
   * learning rate, and each parameter's moments in `params` order (null for one never stepped).
   */
  async saveState(): Promise<AdamWState> {
    const moments = [];
    for (const p of this.params) {
      const s = this.state.get(p);
      moments.push(s ? { m: await s.m.data(), v: await s.v.data() } : null);
    }
    return { stepCount: this.stepCount, lr: this.lr, moments };
  }

  /** Restores a state from saveState, checked against this optimizer's parameters. */
  loadState(state: AdamWState): void {
    if (state.moments.length !== this.params.length) {
      throw new Error(
        `AdamW.loadState: the state has ${state.moments.length} parameters' moments, the optimizer ` +
          `${this.params.length}`,
      );
    }
    this.dispose();
    this.stepCount = state.stepCount;
    this.lr = state.lr;
    state.moments.forEach((mv, i) => {
      if (!mv) return;
      const p = this.params[i];
      if (mv.m.length !== p.size || mv.v.length !== p.size) {
        throw new Error(
          `AdamW.loadState: parameter ${i} has ${p.size} values, its moments ${mv.m.length} and ` + `${mv.v.length}`,
        );
      }
      const values = (a: ArrayLike<number>) => (p.dtype === 'float64' ? Float64Array.from(a) : Float32Array.from(a));
      const make = (a: ArrayLike<number>) => keep(tensor(values(a), p.shape, { device: p.device, dtype: p.dtype }));
      this.state.set(p, { m: make(mv.m), v: make(mv.v) });
    });
  }
}

/** An AdamW's state (AdamW.saveState). */
export interface AdamWState {
  stepCount: number;
  lr: number;
  moments: ({ m: ArrayLike<number>; v: ArrayLike<number> } | null)[];
}

/**
 * Scales all gradients so their global L2 norm is at most maxNorm (torch.nn.utils.clip_grad_norm_).
 * Returns the norm before clipping as a tensor, so nothing waits for the device.
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): Tensor {
  const withGrad = params.filter((p) => p.grad);
  if (withGrad.length === 0) throw new Error('clipGradNorm: no parameter has a gradient');
  return noGrad(() =>
    tidy(() => {
      const sq = withGrad.map((p) => ops.sum(ops.mul(p.grad!, p.grad!)));
      const total = ops.sqrt(sq.reduce((a, b) => ops.add(a, b)));
      const scale = ops.minimum(
        ops.div(full([], maxNorm, { dtype: total.dtype, device: total.device }), ops.add(total, 1e-6)),
        1,
      );
      for (const p of withGrad) {
        const g = keep(ops.mul(p.grad!, ops.cast(scale, p.grad!.dtype)));
        p.grad!.dispose();
        p.grad = g;
      }
      return total;
    }),
  );
}
