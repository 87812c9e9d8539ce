// The llm.c-style golden tests: one fixed tiny model and batch; logits, loss and every parameter gradient,
// and the losses of the first five AdamW steps. First against an outside reference, the same decoder in
// PyTorch (scripts/golden.py wrote tests/golden/pytorch.json), on every backend; then the backends against
// CPU float64 on a model of this project's own initialisation.

import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';
import { GPT, type GPTConfig } from '../model/gpt.js';
import { describeWebGPU } from './helpers/webgpu.js';

const cfg: GPTConfig = { vocabSize: 23, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 16, ropeBase: 10000, normEps: 1e-5 };
const B = 3;
const T = 9;

interface Golden {
  logits: Float64Array;
  loss: number;
  grads: Map<string, Float64Array>;
  stepLosses: number[];
}

/** The fixed weights (drawn once in float32, so every backend starts from the same values) and batch. */
const init = new GPT(cfg, { generator: new E.Generator(1234) });
const weights = new Map([...init.params].map(([n, p]) => [n, Float64Array.from(p.dataSync())]));
const gen = new E.Generator(99);
const ids = Int32Array.from({ length: B * T }, () => gen.int(cfg.vocabSize));
// some positions masked
const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 7 === 3 ? -1 : gen.int(cfg.vocabSize)));

async function run(device: E.Device, dtype: 'float32' | 'float64'): Promise<Golden> {
  const model = new GPT(cfg, { device, dtype });
  for (const [name, p] of model.params) {
    const w = E.tensor(dtype === 'float64' ? weights.get(name)! : Float32Array.from(weights.get(name)!), [...p.shape], {
      device,
    });
    p.assign(w);
    w.dispose();
  }
  const x = E.tensor(ids, [B, T], { device });
  const y = E.tensor(targets, [B, T], { device });
  return measure(model, x, y, { lr: 1e-2, weightDecay: 0.1 });
}

/** Logits, loss and every gradient on (x, y), then the losses of five AdamW steps; frees the model. */
async function measure(model: GPT, x: E.Tensor, y: E.Tensor, adamw: E.AdamWOptions): Promise<Golden> {
  const f64 = async (t: E.Tensor) => Float64Array.from(await t.data());
  const { logits } = model.forward(x);
  const loss = E.crossEntropy(logits, y);
  loss.backward();
  const out: Golden = { logits: await f64(logits), loss: await loss.item(), grads: new Map(), stepLosses: [] };
  for (const [name, p] of model.params) out.grads.set(name, await f64(p.grad!));
  const opt = new E.AdamW(model.parameters(), adamw);
  for (let step = 0; step < 5; step++) {
    opt.zeroGrad();
    const l = E.tidy(() => {
      const l = E.crossEntropy(model.forward(x).logits, y);
      l.backward();
      opt.step();
      return l;
    });
    out.stepLosses.push(await l.item());
  }
  opt.dispose();
  model.dispose();
  return out;
}

/** ||got - want|| / ||want||. */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let d = 0;
  let n = 0;
  for (let i = 0; i < want.length; i++) {
    d += (got[i] - want[i]) ** 2;
    n += want[i] ** 2;
  }
  return Math.sqrt(d) / Math.max(Math.sqrt(n), 1e-30);
}

function agree(got: Golden, want: Golden, tol: { logits: number; grads: number; steps: number }): void {
  expect(relErr(got.logits, want.logits)).toBeLessThan(tol.logits);
  expect(Math.abs(got.loss - want.loss) / want.loss).toBeLessThan(tol.logits);
  for (const [name, g] of want.grads) {
    const e = relErr(got.grads.get(name)!, g);
    expect(e, `gradient of ${name}: relative error ${e}`).toBeLessThan(tol.grads);
  }
  got.stepLosses.forEach((l, i) =>
    expect(Math.abs(l - want.stepLosses[i]) / want.stepLosses[i], `AdamW step ${i + 1} loss`).toBeLessThan(tol.steps),
  );
}

// ---------------------------------------------------------------------------------------------------
// Against PyTorch.

interface TorchGolden {
  config: GPTConfig;
  batch: { B: number; T: number; ids: number[]; targets: number[] };
  adamw: { lr: number; betas: [number, number]; eps: number; weightDecay: number };
  weights: Record<string, { shape: number[]; values: number[] }>;
  logits: number[];
  loss: number;
  grads: Record<string, number[]>;
  stepLosses: number[];
}

const torchGolden = JSON.parse(readFileSync(new URL('./golden/pytorch.json', import.meta.url), 'utf8')) as TorchGolden;

/** The PyTorch file's model, batch and five AdamW steps, on one backend. */
async function runTorchCase(device: E.Device, dtype: 'float32' | 'float64'): Promise<Golden> {
  const g = torchGolden;
  const model = new GPT(g.config, { device, dtype });
  expect([...model.params.keys()].sort()).toEqual(Object.keys(g.weights).sort());
  for (const [name, p] of model.params) {
    const w = g.weights[name];
    const t = E.tensor(dtype === 'float64' ? Float64Array.from(w.values) : Float32Array.from(w.values), w.shape, {
      device,
    });
    p.assign(t);
    t.dispose();
  }
  const { B, T } = g.batch;
  const x = E.tensor(Int32Array.from(g.batch.ids), [B, T], { device });
  const y = E.tensor(Int32Array.from(g.batch.targets), [B, T], { device });
  const { lr, betas, eps, weightDecay } = g.adamw;
  return measure(model, x, y, { lr, betas, eps, weightDecay });
}

const torchWant: Golden = {
  logits: Float64Array.from(torchGolden.logits),
  loss: torchGolden.loss,
  grads: new Map(Object.entries(torchGolden.grads).map(([k, v]) => [k, Float64Array.from(v)])),
  stepLosses: torchGolden.stepLosses,
};

describe('golden: the decoder against PyTorch (tests/golden/pytorch.json)', () => {
  test('CPU float64 agrees with PyTorch float64 to 1e-10 (logits, loss, gradients, five AdamW steps)', async () => {
    agree(await runTorchCase('cpu', 'float64'), torchWant, { logits: 1e-10, grads: 1e-9, steps: 1e-9 });
  });

  test('CPU float32 agrees with PyTorch (logits and loss 1e-5, gradients 1e-4, step losses 1e-4)', async () => {
    agree(await runTorchCase('cpu', 'float32'), torchWant, { logits: 1e-5, grads: 1e-4, steps: 1e-4 });
  });
});

describeWebGPU('golden on WebGPU against PyTorch', () => {
  test('WebGPU float32 agrees with PyTorch (logits and loss 1e-4, gradients 1e-3, step losses 1e-3)', async () => {
    agree(await runTorchCase('webgpu', 'float32'), torchWant, { logits: 1e-4, grads: 1e-3, steps: 1e-3 });
  });
});

// ---------------------------------------------------------------------------------------------------
// The backends against CPU float64.

let reference: Golden | undefined;
const ref = async () => (reference ??= await run('cpu', 'float64'));

describe('golden: the tiny model on every backend', () => {
  test('the float64 reference is sane: loss near log(V) at init, and AdamW lowers it', async () => {
    const r = await ref();
    expect(r.loss).toBeGreaterThan(Math.log(cfg.vocabSize) - 1);
    expect(r.loss).toBeLessThan(Math.log(cfg.vocabSize) + 1);
    expect(r.stepLosses[4]).toBeLessThan(r.stepLosses[0]);
    for (const g of r.grads.values()) expect(g.some((v) => v !== 0)).toBe(true);
  });

  test('CPU float32 agrees with CPU float64 (logits and loss 1e-5, gradients 1e-4, step losses 1e-4)', async () => {
    agree(await run('cpu', 'float32'), await ref(), { logits: 1e-5, grads: 1e-4, steps: 1e-4 });
  });
});

describeWebGPU('golden on WebGPU', () => {
  test('WebGPU float32 agrees with CPU float64 (logits and loss 1e-4, gradients 1e-3, step losses 1e-3)', async () => {
    agree(await run('webgpu', 'float32'), await ref(), { logits: 1e-4, grads: 1e-3, steps: 1e-3 });
  });
});
