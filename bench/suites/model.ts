// Suite `model`: the main job's decoder (PRESETS.default.model) on cpu and on webgpu when an adapter exists:
// training and sampling (KV cache, batch 8) tokens/s with FLOP per token, and causal attention over T on the
// CPU against tfjs-cpu; on cpu, PyTorch runs the same decoder as the peer (bench/peers/torch.ts) when a
// python3 with torch is found. Not the RL loop: that is the igpo suite.

import { matmulThreads, SPLIT_FLOP, threadsReady } from '../../engine/cpu/wasm-gemm.js';
import * as E from '../../engine/index.js';
import { PRESETS } from '../../igpo/presets.js';
import { GPT, type GPTConfig } from '../../model/gpt.js';
import { parseHFConfig } from '../../model/hf/config.js';
import { HFDecoder } from '../../model/hf/decoder.js';
import type { CausalLM } from '../../model/lm.js';
import { BatchDecoder } from '../../model/sample.js';
import { defaultTokenizer } from '../../model/tokenizer.js';
import { batchLoss, makeBatch, type Example } from '../../model/train.js';
import { checkAgree, compare, makeRow, timeJobs, type Row, type SuiteOptions } from '../harness.js';
import { forwardFlopsPerToken, syntheticFloats, syntheticIds, trainFlopsPerToken } from '../napkin.js';
import { tfjsCpu } from '../peers/tfjs-cpu.js';
import { torchRun, type TorchJob, type TorchResult } from '../peers/torch.js';
import { webgpuForBench } from '../webgpu.js';

export const name = 'model';

export async function run(opts: SuiteOptions): Promise<Row[]> {
  const tok = defaultTokenizer();
  const cfg: GPTConfig = { vocabSize: tok.vocabSize, ropeBase: 10000, normEps: 1e-5, ...PRESETS.default.model };
  opts.note(
    `model: PRESETS.default.model ${JSON.stringify(PRESETS.default.model)}, vocabulary ${tok.vocabSize}; weights ` +
      `random (seeded): speed does not depend on them.`,
  );
  opts.note(
    'FLOP per token: training 6N + 12·L·C·T, decoding 2N + 4·L·C·S (N parameters with the tied embedding ' +
      'once, L layers, C width, T the sequence, S the keys a new token attends to). ' +
      'Attention is counted on the full T x T ' +
      "square, as the CPU kernel's two matmuls compute it (only its softmax skips the causal future).",
  );
  opts.note(
    'No tfjs-layers peer: tfjs-layers has no RoPE, RMSNorm or KV cache, so the peer would be a second model written ' +
      'by us in custom layers, not a library measured as it ships; and on tfjs-backend-cpu its matmul is several ' +
      'times slower than ours (cpu suite), so it would repeat that finding at many times the run time.',
  );
  const rows: Row[] = [];
  // The worker of a two-thread matmul is started before timing, so no sample pays for its start.
  await threadsReady();
  const threads = matmulThreads();
  opts.note(
    `cpu: float32 matmuls of at least 2^${Math.log2(SPLIT_FLOP)} FLOP split over ${threads} ` +
      `thread${threads > 1 ? 's' : ''} (env IGPO_THREADS=1: one); every other op on one. ` +
      'The "1 thread" rows run with IGPO_THREADS=1, their PyTorch peer with 1 thread.',
  );
  rows.push(...(await modelCases('cpu', cfg, tok.pad, opts)));

  const gpu = await webgpuForBench();
  opts.note(gpu.line);
  if (gpu.ok) rows.push(...(await modelCases('webgpu', cfg, tok.pad, opts)));
  rows.push(...(await attentionGrowth(opts)));
  opts.note(
    `SmolLM-135M-shaped rows: model/hf/decoder.ts with SmolLM-135M's config.json shapes ` +
      `(${JSON.stringify(SMOLLM_135M_SHAPE)}), random weights (the shapes are what costs), float32.`,
  );
  rows.push(...(await smolCases('cpu', opts)));
  if (gpu.ok) rows.push(...(await smolCases('webgpu', opts)));
  return rows;
}

/** The shapes of HuggingFaceTB/SmolLM-135M's config.json (a Llama: 30 layers, GQA with 3 key/value heads, tied). */
const SMOLLM_135M_SHAPE = {
  model_type: 'llama',
  vocab_size: 49152,
  hidden_size: 576,
  intermediate_size: 1536,
  num_hidden_layers: 30,
  num_attention_heads: 9,
  num_key_value_heads: 3,
  max_position_embeddings: 2048,
  rope_theta: 10000,
  rms_norm_eps: 1e-5,
  tie_word_embeddings: true,
} as const;

/**
 * A SmolLM-135M-shaped model on one device: a training step (forward, loss, backward, clip, AdamW) on 2 x 64
 * tokens, and sampling with the KV cache (batch 4, 8 new tokens after 32), tokens/s with GFLOP/s beside.
 * A few samples each: a step takes seconds on a CPU or lavapipe.
 */
async function smolCases(device: E.Device, opts: SuiteOptions): Promise<Row[]> {
  const liveBefore = E.memory().liveTensors;
  const cfg = parseHFConfig(SMOLLM_135M_SHAPE, 'SmolLM-135M config');
  const model = HFDecoder.random(cfg, { device, generator: new E.Generator(0), blockSize: 256 });
  const params = model.numParams();
  const shape = { nLayer: cfg.numLayers, nEmbd: cfg.numHeads * cfg.headDim };
  const opt = new E.AdamW(model.parameters(), { lr: 1e-5, weightDecay: 0.01, betas: [0.9, 0.95] });
  const rows: Row[] = [];
  const budget = { time: 0, iterations: opts.quick ? 1 : 2 };
  try {
    const [B, T] = [2, 64];
    const examples: Example[] = Array.from({ length: B }, (_, b) => {
      const ids = syntheticIds(T + 1, cfg.vocabSize, 300 + b);
      return { ids, lossMask: ids.map((_, t) => t > 0) };
    });
    const step = async () => [await trainingStep(model, opt, examples, 0, device)];
    const flop = trainFlopsPerToken(shape, params, T);
    rows.push(
      await compare(
        {
          case: `SmolLM-135M shape: training step (${device})`,
          shape: `${B} x ${T} tokens`,
          unit: 'tokens/s',
          work: B * T,
          also: { unit: 'GFLOP/s', work: B * T * flop },
          ours: step,
          note: `${(flop / 1e6).toFixed(0)} MFLOP/token (6N, N = ${params}); AdamW on every parameter`,
          budget,
        },
        opts,
      ),
    );
    opt.zeroGrad();

    const [Bs, P, steps] = [4, 32, 8];
    const prompts = Array.from({ length: Bs }, (_, b) => syntheticIds(P, cfg.vocabSize, 400 + b));
    const { prefill, generate } = samplingJobs(model, prompts, 0, steps);
    await prefill();
    await generate();
    const t = await timeJobs(
      `SmolLM-135M sampling (${device})`,
      { ours: { fn: generate, async: true, beforeEach: prefill } },
      opts,
      budget,
    );
    const S = P + (steps + 1) / 2;
    const dflop = forwardFlopsPerToken(shape, params, S);
    rows.push(
      makeRow(
        {
          case: `SmolLM-135M shape: sampling, KV cache (${device})`,
          shape: `batch ${Bs}, ${steps} new tokens after ${P}`,
          unit: 'tokens/s',
          work: Bs * steps,
          also: { unit: 'GFLOP/s', work: Bs * steps * dflop },
          note:
            `${(dflop / 1e6).toFixed(0)} MFLOP/token; ${(t.ours.medianMs / steps).toFixed(0)} ms/step; ` +
            'prefill not timed',
        },
        t.ours,
        null,
      ),
    );
  } finally {
    opt.dispose();
    model.dispose();
  }
  const liveAfter = E.memory().liveTensors;
  if (liveAfter !== liveBefore)
    throw new Error(`model suite (SmolLM shape, ${device}) leaked tensors: ${liveBefore} -> ${liveAfter}`);
  return rows;
}

/** Training and sampling on one device. */
async function modelCases(device: E.Device, cfg: GPTConfig, padId: number, opts: SuiteOptions): Promise<Row[]> {
  const liveBefore = E.memory().liveTensors;
  const threadCount = matmulThreads();
  const model = new GPT(cfg, { generator: new E.Generator(0), device });
  const params = model.numParams();
  const rows: Row[] = [];
  const opt = new E.AdamW(model.parameters(), { lr: 1e-4, weightDecay: 0.01, betas: [0.9, 0.95] });
  // A device that is not the CPU takes longer per call here (lavapipe): fewer samples.
  const slow = device !== 'cpu';
  try {
    // Training: the inner step of trainSupervised (makeBatch, batchLoss, backward, clip, AdamW), every
    // position a target, B rows of T tokens.
    const shapes: [number, number][] =
      opts.quick || slow
        ? [[4, 128]]
        : [
            [4, 128],
            [4, 256],
          ];
    for (const [B, T] of shapes) {
      const examples: Example[] = Array.from({ length: B }, (_, b) => {
        const ids = syntheticIds(T + 1, cfg.vocabSize, 100 + b);
        return { ids, lossMask: ids.map((_, t) => t > 0) };
      });
      let firstLoss: number | undefined;
      const step = async () => {
        const v = await trainingStep(model, opt, examples, padId, device);
        firstLoss ??= v;
        return [v];
      };
      const tokens = B * T;
      const flop = trainFlopsPerToken(cfg, params, T);
      // On cpu a second row at one thread, where the default uses two (same steps, same peer at one thread).
      const runs = device === 'cpu' && threadCount > 1 && T === shapes[0][1] ? [threadCount, 1] : [threadCount];
      for (const threads of runs) {
        const weights = device === 'cpu' ? snapshot(model) : null;
        firstLoss = undefined;
        const c = {
          case: `training step (${device}${threads < threadCount ? ', 1 thread' : ''})`,
          shape: `${B} x ${T} tokens`,
          unit: 'tokens/s' as const,
          work: tokens,
          also: { unit: 'GFLOP/s' as const, work: tokens * flop },
          ours: step,
          note: `${(flop / 1e6).toFixed(2)} MFLOP/token (6N = ${((6 * params) / 1e6).toFixed(2)} M, N = ${params})`,
          growth:
            shapes.length > 1 && threads === threadCount
              ? [{ series: `training step (${device}), B=4, over T`, size: T }]
              : undefined,
          budget: { time: 500, iterations: slow ? 2 : 3 },
        };
        let row = await onThreads(threads < threadCount ? 1 : null, () => compare(c, opts));
        if (weights) {
          const batch = makeBatch(examples, padId);
          const job: TorchJob = {
            kind: 'train',
            B,
            T,
            ids: Array.from(batch.ids.dataSync()),
            targets: Array.from(batch.targets.dataSync()),
            adamw: { lr: opt.lr, betas: [opt.beta1, opt.beta2], eps: opt.eps, weightDecay: opt.weightDecay },
            clip: 1,
          };
          E.dispose([batch.ids, batch.targets]);
          const peer = torchPeer(cfg, weights, threads, job, opts);
          if (typeof peer !== 'string') {
            // The same work on both sides: the first step's loss, on the same weights and batch, agrees.
            checkAgree(`${c.case} ${c.shape}: first-step loss of ours and ${peer.name}`, [firstLoss!], [peer.loss!]);
            row = makeRow(c, row.ours, peer);
          }
        }
        rows.push(row);
      }
    }
    opt.zeroGrad();

    // Sampling after a 64-token prompt, and after 384 (rollout contexts reach several hundred tokens, where
    // a cache that copied its keys every token paid for their number).
    for (const P of [64, 384]) rows.push(...(await sampling(model, device, padId, P, threadCount, opts)));
  } finally {
    opt.dispose();
    model.dispose();
  }
  const liveAfter = E.memory().liveTensors;
  if (liveAfter !== liveBefore)
    throw new Error(`model suite (${device}) leaked tensors: ${liveBefore} -> ${liveAfter}`);
  return rows;
}

/** The inner step of trainSupervised (makeBatch, batchLoss, backward, clip at 1, AdamW); returns the loss. */
async function trainingStep(
  model: CausalLM,
  opt: E.AdamW,
  examples: Example[],
  padId: number,
  device: E.Device,
): Promise<number> {
  const loss = E.tidy(() => {
    opt.zeroGrad();
    const l = batchLoss(model, makeBatch(examples, padId, device));
    l.backward();
    E.clipGradNorm(model.parameters(), 1);
    opt.step();
    return l;
  });
  const v = await loss.item();
  loss.dispose();
  return v;
}

/**
 * Sampling as the suites time it: `prefill` (untimed) builds a decoder on the prompts and waits for its
 * work; `generate` samples `steps` tokens per row at temperature 1 and frees the decoder.
 */
function samplingJobs(model: CausalLM, prompts: number[][], padId: number, steps: number) {
  let dec: BatchDecoder | null = null;
  const prefill = async (): Promise<void> => {
    dec = new BatchDecoder(model, prompts, padId);
    const probe = E.zeros([1], { device: model.device });
    await probe.data(); // a read waits for the prefill's work queued before it
    probe.dispose();
  };
  const generate = async () => {
    const g = await dec!.generate({ maxTokens: steps, temperature: 1, generator: new E.Generator(7) });
    dec!.dispose();
    dec = null;
    return g.tokens.flat();
  };
  return { prefill, generate };
}

/** f() with env IGPO_THREADS set to `threads` (null: as it is), restored after. */
async function onThreads<T>(threads: number | null, f: () => Promise<T>): Promise<T> {
  const env = process.env.IGPO_THREADS;
  if (threads !== null) process.env.IGPO_THREADS = String(threads);
  try {
    return await f();
  } finally {
    if (env === undefined) delete process.env.IGPO_THREADS;
    else process.env.IGPO_THREADS = env;
  }
}

/** Every parameter's data and shape, as they are now (the peer starts from the same weights). */
function snapshot(model: GPT): Record<string, { shape: number[]; data: Float32Array }> {
  const out: Record<string, { shape: number[]; data: Float32Array }> = {};
  for (const [name, p] of model.params) out[name] = { shape: [...p.shape], data: Float32Array.from(p.dataSync()) };
  return out;
}

/** The sampling case's job for the peer: temperature 1, the prompts as ours. */
function sampleJob(prompts: number[][], steps: number): TorchJob {
  return { kind: 'sample', prompts, steps, temperature: 1, seed: 7 };
}

let torchNoted = false;

/**
 * The PyTorch peer's timing of a job with `threads` threads (the budget of ours: a warm-up call, then 500 ms
 * and 3 calls at least), or null when there is none: the suite's notes say why, once.
 */
function torchPeer(
  cfg: GPTConfig,
  weights: Record<string, { shape: number[]; data: Float32Array }>,
  threads: number,
  job: TorchJob,
  opts: SuiteOptions,
): TorchResult | string {
  opts.log(`  PyTorch peer: ${job.kind}, ${threads} thread${threads > 1 ? 's' : ''}`);
  const r = torchRun(cfg, weights, threads, job, {
    time: opts.quick ? 50 : 500,
    iterations: 3,
    warmup: 1,
  });
  if (!torchNoted) {
    torchNoted = true;
    opts.note(
      typeof r === 'string'
        ? r
        : `PyTorch peer on cpu rows: ${r.name}, scripts/decoder.py (the golden tests' model) in float32 with the ` +
            'same weights and batch, timed by bench/peers/torch_decoder.py (perf_counter, median after a warm-up); ' +
            'its first training step must give the loss ours gives.',
    );
  }
  return r;
}

/**
 * Sampling: batch 8, a P-token prompt, then `steps` tokens each (no stop token, temperature 1). The
 * prompt's prefill runs before each sample and is not timed. On cpu with two threads, a second row at one
 * (the peer too): PyTorch's two threads on a busy machine say more about the machine than about the work.
 */
async function sampling(
  model: GPT,
  device: E.Device,
  padId: number,
  P: number,
  threadCount: number,
  opts: SuiteOptions,
): Promise<Row[]> {
  const cfg = model.cfg;
  const params = model.numParams();
  const slow = device !== 'cpu';
  const B = 8;
  const steps = opts.quick ? 16 : 32;
  const prompts = Array.from({ length: B }, (_, b) => syntheticIds(P, cfg.vocabSize, 200 + b));
  const { prefill, generate } = samplingJobs(model, prompts, padId, steps);
  await prefill();
  await generate();
  const weights = device === 'cpu' ? snapshot(model) : null;
  const rows: Row[] = [];
  for (const threads of device === 'cpu' && threadCount > 1 ? [threadCount, 1] : [threadCount]) {
    const one = threads < threadCount;
    opts.log(`  sampling (${device}${one ? ', 1 thread' : ''}) batch ${B}, ${steps} tokens after ${P}`);
    const t = await onThreads(one ? 1 : null, () =>
      timeJobs(
        `sampling (${device}${one ? ', 1 thread' : ''}) after ${P}`,
        { ours: { fn: generate, async: true, beforeEach: prefill } },
        opts,
        { time: 500, iterations: slow ? 2 : 3 },
      ),
    );
    const r = weights ? torchPeer(cfg, weights, threads, sampleJob(prompts, steps), opts) : null;
    const S = P + (steps + 1) / 2; // keys seen by the average new token
    const flop = forwardFlopsPerToken(cfg, params, S);
    rows.push(
      makeRow(
        {
          case: `sampling, KV cache (${device}${one ? ', 1 thread' : ''})`,
          shape: `batch ${B}, ${steps} new tokens after ${P}`,
          unit: 'tokens/s',
          work: B * steps,
          also: { unit: 'GFLOP/s', work: B * steps * flop },
          note:
            `${(flop / 1e6).toFixed(2)} MFLOP/token at ${S} keys; one forward of [${B}, 1] and one read of the ` +
            `logits per step (${(t.ours.medianMs / steps).toFixed(1)} ms/step); prefill not timed`,
        },
        t.ours,
        typeof r === 'string' ? null : r,
      ),
    );
  }
  return rows;
}

/**
 * Causal attention forward on the CPU, B*H = 8 heads of size 64, over T: the fused kernel against the
 * tfjs-cpu composition (matMul, mask, softmax, matMul) while that stays under a few seconds a call.
 */
async function attentionGrowth(opts: SuiteOptions): Promise<Row[]> {
  const { tf, name: peerName } = await tfjsCpu();
  const BH = 8;
  const hs = 64;
  const Ts = opts.quick ? [128, 256, 512] : [128, 256, 512, 1024, 2048];
  const peerUpTo = 512;
  opts.note(
    `attention: E.scaledDotProductAttention forward, q, k, v [1, ${BH}, T, ${hs}] on cpu; the peer (tfjs-cpu: ` +
      `matMul, band mask, softmax, matMul) runs up to T = ${peerUpTo}, beyond which one of its calls takes several ` +
      `seconds. FLOP = 4·(B·H)·T²·hs, the full square both sides’ matmuls compute.`,
  );
  const rows: Row[] = [];
  const before = [E.memory().liveTensors, tf.memory().numTensors];
  for (const T of Ts) {
    const n = BH * T * hs;
    const [qd, kd, vd] = [1, 2, 3].map((s) => syntheticFloats(n, 1000 * T + s));
    const shape = [1, BH, T, hs];
    const [q, k, v] = [qd, kd, vd].map((d) => E.tensor(d, shape));
    const withPeer = T <= peerUpTo;
    const tq = withPeer ? [qd, kd, vd].map((d) => tf.tensor(d, shape)) : [];
    const mask = withPeer ? tf.tensor(bandMask(T), [T, T]) : null;
    try {
      rows.push(
        await compare(
          {
            case: 'causal attention forward (cpu)',
            shape: `[1,${BH},${T},${hs}]`,
            unit: 'GFLOP/s',
            work: 4 * BH * T * T * hs,
            ours: () => E.tidy(() => E.scaledDotProductAttention(q, k, v).dataSync()),
            peer: withPeer
              ? {
                  name: `${peerName} (composite)`,
                  fn: () => {
                    let out: ArrayLike<number> = [];
                    tf.tidy(() => {
                      const s = tf.add(tf.mul(tf.matMul(tq[0], tq[1], false, true), 1 / Math.sqrt(hs)), mask!);
                      out = tf.matMul(tf.softmax(s), tq[2]).dataSync();
                    });
                    return out;
                  },
                }
              : undefined,
            growth: [{ series: `causal attention forward (cpu), B*H=${BH}, hs=${hs}, over T`, size: T }],
            budget: { time: 500, iterations: T >= 1024 ? 3 : 5 },
          },
          opts,
        ),
      );
    } finally {
      E.dispose([q, k, v]);
      for (const t of tq) t.dispose();
      mask?.dispose();
    }
  }
  const after = [E.memory().liveTensors, tf.memory().numTensors];
  if (after[0] !== before[0] || after[1] !== before[1])
    throw new Error(
      `model suite (attention) leaked tensors: engine ${before[0]} -> ${after[0]}, tfjs ${before[1]} -> ${after[1]}`,
    );
  return rows;
}

/** 0 on and below the diagonal, -1e9 above it: the causal mask added to the scores. */
function bandMask(T: number): Float32Array {
  const m = new Float32Array(T * T);
  for (let i = 0; i < T; i++) m.fill(-1e9, i * T + i + 1, (i + 1) * T);
  return m;
}
