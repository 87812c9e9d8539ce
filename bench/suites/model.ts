// Suite `model`: the main job's decoder (PRESETS.default.model) on cpu and on webgpu when an adapter exists:
// training and sampling (KV cache, batch 8) tokens/s with FLOP per token, and causal attention over T on the
// CPU against tfjs-cpu. Not the RL loop: that is the igpo suite.

import * as E from '../../engine/index.js';
import { PRESETS } from '../../igpo/presets.js';
import { GPT, type GPTConfig } from '../../model/gpt.js';
import { BatchDecoder } from '../../model/sample.js';
import { defaultTokenizer } from '../../model/tokenizer.js';
import { batchLoss, makeBatch, type Example } from '../../model/train.js';
import { compare, makeRow, timeJobs, type Row, type SuiteOptions } from '../harness.js';
import { forwardFlopsPerToken, syntheticFloats, syntheticIds, trainFlopsPerToken } from '../napkin.js';
import { tfjsCpu } from '../peers/tfjs-cpu.js';
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
  rows.push(...(await modelCases('cpu', cfg, tok.pad, opts)));

  const gpu = await webgpuForBench();
  opts.note(gpu.line);
  if (gpu.ok) rows.push(...(await modelCases('webgpu', cfg, tok.pad, opts)));
  rows.push(...(await attentionGrowth(opts)));
  return rows;
}

/** Training and sampling on one device. */
async function modelCases(device: E.Device, cfg: GPTConfig, padId: number, opts: SuiteOptions): Promise<Row[]> {
  const liveBefore = E.memory().liveTensors;
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
      const step = async () => {
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
        return [v];
      };
      const tokens = B * T;
      const flop = trainFlopsPerToken(cfg, params, T);
      rows.push(
        await compare(
          {
            case: `training step (${device})`,
            shape: `${B} x ${T} tokens`,
            unit: 'tokens/s',
            work: tokens,
            also: { unit: 'GFLOP/s', work: tokens * flop },
            ours: step,
            note: `${(flop / 1e6).toFixed(2)} MFLOP/token (6N = ${((6 * params) / 1e6).toFixed(2)} M, N = ${params})`,
            growth: shapes.length > 1 ? [{ series: `training step (${device}), B=4, over T`, size: T }] : undefined,
            budget: { time: 500, iterations: slow ? 2 : 3 },
          },
          opts,
        ),
      );
    }
    opt.zeroGrad();

    // Sampling after a 64-token prompt, and after 384 (rollout contexts reach several hundred tokens, where
    // a cache that copied its keys every token paid for their number).
    for (const P of [64, 384]) rows.push(await sampling(model, device, padId, P, opts));
  } finally {
    opt.dispose();
    model.dispose();
  }
  const liveAfter = E.memory().liveTensors;
  if (liveAfter !== liveBefore)
    throw new Error(`model suite (${device}) leaked tensors: ${liveBefore} -> ${liveAfter}`);
  return rows;
}

/**
 * Sampling: batch 8, a P-token prompt, then `steps` tokens each (no stop token, temperature 1). The
 * prompt's prefill runs before each sample and is not timed.
 */
async function sampling(model: GPT, device: E.Device, padId: number, P: number, opts: SuiteOptions): Promise<Row> {
  const cfg = model.cfg;
  const params = model.numParams();
  const slow = device !== 'cpu';
  const B = 8;
  const steps = opts.quick ? 16 : 32;
  const prompts = Array.from({ length: B }, (_, b) => syntheticIds(P, cfg.vocabSize, 200 + b));
  let dec: BatchDecoder | null = null;
  const prefill = async (): Promise<void> => {
    dec = new BatchDecoder(model, prompts, padId);
    const probe = E.zeros([1], { device });
    await probe.data(); // a read waits for the prefill's work queued before it
    probe.dispose();
  };
  const generate = async () => {
    const g = await dec!.generate({ maxTokens: steps, temperature: 1, generator: new E.Generator(7) });
    dec!.dispose();
    dec = null;
    return g.tokens.flat();
  };
  await prefill();
  await generate();
  opts.log(`  sampling (${device}) batch ${B}, ${steps} tokens after ${P}`);
  const t = await timeJobs(
    `sampling (${device}) after ${P}`,
    { ours: { fn: generate, async: true, beforeEach: prefill } },
    opts,
    { time: 500, iterations: slow ? 2 : 3 },
  );
  const S = P + (steps + 1) / 2; // keys seen by the average new token
  const flop = forwardFlopsPerToken(cfg, params, S);
  return makeRow(
    {
      case: `sampling, KV cache (${device})`,
      shape: `batch ${B}, ${steps} new tokens after ${P}`,
      unit: 'tokens/s',
      work: B * steps,
      also: { unit: 'GFLOP/s', work: B * steps * flop },
      note:
        `${(flop / 1e6).toFixed(2)} MFLOP/token at ${S} keys; one forward of [${B}, 1] and one read of the ` +
        `logits per step (${(t.ours.medianMs / steps).toFixed(1)} ms/step); prefill not timed`,
    },
    t.ours,
    null,
  );
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
