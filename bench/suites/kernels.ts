// Suite `kernels`: our WebGPU kernels against tfjs-backend-webgpu 4.22 on the same Dawn adapter: matmul
// (square, model-shaped, a skinny decode shape), the streaming ceilings (a copy-like unary and an add),
// log-softmax, target log-prob (forward, and forward + backward), LayerNorm and RMSNorm forward, an AdamW
// step, and causal attention forward and forward + backward over T = 128 to 2048 (a growth series). Not the
// CPU suite (cpu.ts) and not model-level timings.
//
// Both sides run through their public ops (E.* and tf.*), so whatever fused kernel our backend registers
// (kernels/logsoftmax.ts, kernels/attention/, ...) is what gets timed; each row's note says which ran, and
// the peer runs the composite a tfjs user would write. Every timed call ends by reading back one element of
// its output (a 1-element slice), which waits for all the GPU work queued before it; the full outputs are
// compared once before timing.

import type { Tensor as TfTensor } from '@tensorflow/tfjs-core';
import * as E from '../../engine/index.js';
import type { WebGPUBackend } from '../../kernels/index.js';
import { planMatmul } from '../../kernels/matmul.js';
import { chooseMatmulKernel } from '../../kernels/matmul-family.js';
import { canUseSubgroupMatrix } from '../../kernels/matmul-sgmatrix.js';
import { canUseTiled } from '../../kernels/matmul-tiled.js';
import { checkAgree, compare, measuredOf, type Budget, type Case, type Row, type SuiteOptions } from '../harness.js';
import { syntheticFloats } from '../napkin.js';
import { tfjsWebGPU } from '../peers/tfjs-webgpu.js';
import { webgpuForBench } from '../webgpu.js';

export const name = 'kernels';

const dims = (s: readonly number[]) => `[${s.join(',')}]`;
/** A sample queues calls until it lasts about this long (at most MAX_CALLS), then reads back once. */
const SAMPLE_MS = 50;
const MAX_CALLS = 64;
/** Timed calls behind each row's GPU-time median (1 where a call takes over a second). */
const GPU_SAMPLES = 3;

/** Which matmul kernel runs a shape on this backend, and its layout, for the row's note. */
function matmulNote(backend: WebGPUBackend, M: number, N: number, K: number): string {
  const forced = backend.options.matmulKernel;
  const family = forced === 'auto' ? chooseMatmulKernel(backend, M, N, K, 1) : forced;
  if (family !== 'blocked')
    return `ours: ${family} (kernels/matmul-${family === 'subgroup-matrix' ? 'sgmatrix' : 'tiled'}.ts)`;
  const plan = planMatmul(backend, M, N, K, 1);
  return (
    `ours: blocked ${plan.kind}${plan.subgroups ? ' + subgroups' : ''}, ${plan.tm} rows x ${4 * plan.nv} ` +
    `columns per thread, ${plan.wg} threads${plan.splitK > 1 ? `, split-K ${plan.splitK}` : ''}`
  );
}

export async function run(opts: SuiteOptions): Promise<Row[]> {
  const gpu = await webgpuForBench();
  opts.note(gpu.line);
  if (!gpu.ok) return [];
  const backend = E.getBackend('webgpu') as WebGPUBackend;
  const { tf, name: peer } = await tfjsWebGPU();
  // tfjs-core's Node bundle registers no gradients; the peer registers the attention composite's, and the
  // target log-prob composite needs these two more (tfjs-core's own configs, as bench/peers/tfjs-webgpu.ts does).
  for (const cfg of [
    (await import('@tensorflow/tfjs-core/dist/gradients/LogSoftmax_grad.js')).logSoftmaxGradConfig,
    (await import('@tensorflow/tfjs-core/dist/gradients/Sum_grad.js')).sumGradConfig,
  ]) {
    if (!tf.getGradient(cfg.kernelName)) tf.registerGradient(cfg);
  }
  opts.note(`peer: ${peer} (tfjs-backend-webgpu) through its own Dawn instance and device, on the same adapter`);
  const live = () => [E.memory().liveTensors, tf.memory().numTensors];
  const before = live();
  const rows: Row[] = [];
  // Inputs live for the whole suite on both sides; each job makes and frees only its own tensors.
  const ours: E.Tensor[] = [];
  const theirs: TfTensor[] = [];
  let seed = 1;
  const pair = (shape: number[], lo = -1, hi = 1) => {
    const data = syntheticFloats(
      shape.reduce((p, d) => p * d, 1),
      seed++,
      lo,
      hi,
    );
    const e = E.tensor(data, shape, { device: 'webgpu' });
    const t = tf.tensor(data, shape, 'float32');
    ours.push(e);
    theirs.push(t);
    return [e, t] as const;
  };
  const first = (t: { shape: readonly number[] }) => t.shape.map(() => 0);
  const one = (t: { shape: readonly number[] }) => t.shape.map(() => 1);

  /** One call of ours (inside a tidy), read back: one element of its output, which waits for all queued work. */
  const readOurs = async (y: E.Tensor) => {
    const s = E.tidy(() => E.slice(y, first(y), one(y)));
    if (s !== y) y.dispose(); // a slice of all of y may be y itself
    const v = await s.data();
    s.dispose();
    return v;
  };
  const readPeer = async (y: TfTensor) => {
    const s = tf.tidy(() => tf.slice(y, first(y), one(y)));
    if (s !== y) y.dispose();
    const v = await s.data();
    s.dispose();
    return v;
  };
  /** A timed job: `calls` calls queued, each output freed as soon as it is queued, and one readback. */
  const oursJob =
    (f: () => E.Tensor, calls = 1) =>
    async () => {
      for (let i = 1; i < calls; i++) E.tidy(f).dispose();
      return readOurs(E.tidy(f));
    };
  const peerJob =
    (f: () => TfTensor, calls = 1) =>
    async () => {
      for (let i = 1; i < calls; i++) tf.tidy(f).dispose();
      return readPeer(tf.tidy(f));
    };
  /** Full outputs of both sides, compared once before timing. */
  const agree = async (label: string, o: () => E.Tensor | E.Tensor[], p: () => TfTensor | TfTensor[], tol = 1e-4) => {
    const os = ([] as E.Tensor[]).concat(E.tidy(o));
    const ps = ([] as TfTensor[]).concat(tf.tidy(p));
    for (let i = 0; i < os.length; i++)
      checkAgree(
        `${label}: ours and ${peer}${os.length > 1 ? ` (output ${i})` : ''}`,
        await os[i].data(),
        await ps[i].data(),
        tol,
      );
    E.dispose(os);
    tf.dispose(ps);
  };
  /**
   * Calls per sample for a job: enough that a sample lasts SAMPLE_MS, so that on a fast GPU a sample times
   * kernels rather than one readback's latency; 1 where one call already takes that long (lavapipe).
   */
  const callsFor = async (job: () => Promise<unknown>) => {
    let ms = Infinity;
    for (let i = 0; i < 2; i++) {
      const t0 = performance.now();
      await job();
      ms = Math.min(ms, performance.now() - t0);
      if (ms >= SAMPLE_MS) break;
    }
    return Math.max(1, Math.min(MAX_CALLS, Math.ceil(SAMPLE_MS / Math.max(ms, 1e-3))));
  };
  /** Median GPU time of one call on each side, from timestamp queries; null where a side has none. */
  const gpuTimes = async (o: () => E.Tensor, oc: number, p: (() => TfTensor) | null, pc: number, slow: boolean) => {
    const samples = slow || opts.quick ? 1 : GPU_SAMPLES;
    const ourMs: number[] = [];
    const peerMs: number[] = [];
    for (let i = 0; i < samples; i++) {
      const { gpuMs } = await backend.gpuTime(oursJob(o, oc));
      if (gpuMs !== null) ourMs.push(gpuMs / oc);
      if (p) {
        // tfjs-backend-webgpu times each program in its own pass while tf.time runs (timestamp queries).
        const t = await tf.time(() => {
          for (let j = 0; j < pc; j++) tf.tidy(p).dispose();
        });
        if (typeof t.kernelMs === 'number' && t.kernelMs > 0) peerMs.push(t.kernelMs / pc);
      }
    }
    const med = (xs: number[]) => (xs.length ? measuredOf(xs).medianMs : null);
    return { ours: med(ourMs), peer: med(peerMs) };
  };
  /**
   * A timed row: ours against the peer (none where `p` is null) in one tinybench run, several calls per
   * readback where a call is short, and the GPU time per call beside the wall time.
   */
  const timed = async (
    c: Omit<Case, 'ours' | 'peer' | 'tol' | 'calls' | 'budget'>,
    o: () => E.Tensor,
    p: (() => TfTensor) | null,
    budget?: Budget,
  ) => {
    const oc = await callsFor(oursJob(o));
    const pc = p ? await callsFor(peerJob(p)) : 1;
    const peerSide = p ? { name: peer, fn: peerJob(p, pc), calls: pc } : undefined;
    const row = await compare({ ...c, ours: oursJob(o, oc), calls: oc, peer: peerSide, tol: null, budget }, opts);
    row.gpuMs = await gpuTimes(o, oc, p, pc, row.ours.medianMs > 1000);
    rows.push(row);
    return row;
  };

  try {
    // Matmul: [case, M, N, K]. With --sizes gpu, 4096^3 and 8192^3 too (each operand and the output 64 and
    // 256 MiB), where the adapter's maxStorageBufferBindingSize allows them.
    const maxBinding = backend.device.limits.maxStorageBufferBindingSize;
    const matmuls: [string, number, number, number, Budget?][] = [
      ['matmul 1024^3', 1024, 1024, 1024, { iterations: 6 }],
      ['matmul 256^3', 256, 256, 256],
      ['matmul, model shape (x @ W)', 4096, 64, 64],
      ['matmul, skinny decode shape', 8, 256, 64],
    ];
    if (opts.sizes === 'gpu')
      for (const n of [4096, 8192]) {
        if (4 * n * n <= maxBinding) matmuls.push([`matmul ${n}^3`, n, n, n, { time: 500, iterations: 3 }]);
        else
          opts.note(
            `matmul ${n}^3 skipped: a ${n} x ${n} float32 operand (${(4 * n * n) / 2 ** 20} MiB) exceeds this ` +
              `adapter's maxStorageBufferBindingSize (${maxBinding / 2 ** 20} MiB)`,
          );
      }
    for (const [label, M, N, K, budget] of matmuls) {
      const [ea, ta] = pair([M, K]);
      const [eb, tb] = pair([K, N]);
      const shape = `${dims([M, K])}@${dims([K, N])}`;
      await agree(
        `${label} ${shape}`,
        () => E.matmul(ea, eb),
        () => tf.matMul(ta, tb),
      );
      await timed(
        { case: label, shape, unit: 'GFLOP/s', work: 2 * M * N * K, note: matmulNote(backend, M, N, K) },
        () => E.matmul(ea, eb),
        () => tf.matMul(ta, tb),
        budget,
      );
      // At the GPU sizes, every other family this adapter can run, forced, beside the one 'auto' picks.
      if (opts.sizes === 'gpu' && M >= 4096 && N >= 4096) {
        const auto = chooseMatmulKernel(backend, M, N, K, 1);
        for (const family of ['blocked', 'tiled', 'f16', 'subgroup-matrix'] as const) {
          if (family === auto || (family === 'subgroup-matrix' && !canUseSubgroupMatrix(backend))) continue;
          if (family !== 'blocked' && family !== 'subgroup-matrix' && !canUseTiled(backend, family === 'f16')) continue;
          backend.configure({ matmulKernel: family });
          try {
            // f16 inputs: the products of values rounded to 11 bits, summed in f32.
            const tol = family === 'f16' || family === 'subgroup-matrix' ? 1e-2 : 1e-4;
            await agree(
              `${label} (${family}) ${shape}`,
              () => E.matmul(ea, eb),
              () => tf.matMul(ta, tb),
              tol,
            );
            await timed(
              {
                case: `${label}, ${family} forced`,
                shape,
                unit: 'GFLOP/s',
                work: 2 * M * N * K,
                note: `${matmulNote(backend, M, N, K)} (option matmulKernel '${family}'; 'auto' picks '${auto}')`,
              },
              () => E.matmul(ea, eb),
              null,
              budget,
            );
          } finally {
            backend.configure({ matmulKernel: 'auto' });
          }
        }
      }
    }

    // Streaming kernels: the bandwidth ceiling. A copy-like unary (one read, one write) and an add (two
    // reads, one write); the ceiling is the better of the two.
    const streaming: number[] = [];
    // 32 MiB per operand; with --sizes gpu 256 MiB, or the most the adapter binds.
    for (const n of opts.sizes === 'gpu'
      ? [8 << 20, Math.min(64 << 20, Math.floor(maxBinding / 4 / 1024) * 1024)]
      : [8 << 20]) {
      if (n < 64 << 20 && n !== 8 << 20)
        opts.note(
          `streams at ${(4 * n) / 2 ** 20} MiB per operand, not 256: this adapter's maxStorageBufferBindingSize is ` +
            `${maxBinding / 2 ** 20} MiB`,
        );
      const [ex, tx] = pair([n]);
      const [ey, ty] = pair([n]);
      await agree(
        'neg',
        () => E.neg(ex),
        () => tf.neg(tx),
      );
      await timed(
        {
          case: 'neg (streaming copy)',
          shape: dims([n]),
          unit: 'GB/s',
          work: 8 * n,
          note: 'one read and one write per element: a copy with a sign flip',
        },
        () => E.neg(ex),
        () => tf.neg(tx),
      );
      streaming.push(rows[rows.length - 1].ours.rate);
      await agree(
        'add',
        () => E.add(ex, ey),
        () => tf.add(tx, ty),
      );
      await timed(
        {
          case: 'add (streaming)',
          shape: `${dims([n])}+${dims([n])}`,
          unit: 'GB/s',
          work: 12 * n,
          note: 'two reads and one write per element',
        },
        () => E.add(ex, ey),
        () => tf.add(tx, ty),
      );
      streaming.push(rows[rows.length - 1].ours.rate);
    }

    // Log-softmax over the last axis: one read and one write of the logits, 4 bytes each, at least.
    const [R, V] = [1024, 8192];
    const [ex, tx] = pair([R, V], -8, 8);
    {
      await agree(
        'logSoftmax',
        () => E.logSoftmax(ex),
        () => tf.logSoftmax(tx),
      );
      const fused = E.fusedKernel(ex, 'logSoftmax')
        ? 'our fused kernel (kernels/logsoftmax.ts)'
        : 'our composed form (no fused kernel registered)';
      await timed(
        {
          case: 'log-softmax',
          shape: dims([R, V]),
          unit: 'GB/s',
          work: 8 * R * V,
          note: `${fused}; GB/s counts one read and one write`,
        },
        () => E.logSoftmax(ex),
        () => tf.logSoftmax(tx),
      );
      const ceiling = Math.max(...streaming);
      const ls = rows[rows.length - 1];
      opts.note(
        `streaming ceiling: ${ceiling.toFixed(2)} GB/s (the better of our neg and add rows); our log-softmax moves ` +
          `${ls.ours.rate.toFixed(2)} GB/s, ` +
          `${((100 * ls.ours.rate) / ceiling).toFixed(0)}% of it (two passes over each row, the second from the ` +
          `cache, plus one exp per element)`,
      );
    }

    // Target log-prob: log p(target) per row without the V-wide output. Theirs: the one-hot form a tfjs user
    // writes (tf.losses.softmaxCrossEntropy takes one-hot labels), sum(logSoftmax(x) * onehot, -1).
    {
      const targets = Int32Array.from({ length: R }, (_, r) => (r * 2654435761) % V);
      const et = E.tensor(targets, [R], { device: 'webgpu' });
      const onehot = tf.tidy(() => tf.oneHot(tf.tensor1d(targets, 'int32'), V, 1, 0, 'float32'));
      const [edout, tdout] = pair([R]);
      ours.push(et);
      theirs.push(onehot);
      const tfLp = (x: TfTensor) => tf.sum(tf.mul(tf.logSoftmax(x), onehot), -1);
      const tfLpGrad = tf.grad((x: TfTensor) => tf.sum(tf.mul(tfLp(x), tdout)));
      const which = E.fusedKernel(ex, 'targetLogProb')
        ? 'our fused kernels (kernels/targetlogprob.ts)'
        : 'our composed form';
      await agree(
        'targetLogProb',
        () => E.targetLogProb(ex, et),
        () => tfLp(tx),
      );
      await timed(
        {
          case: 'target log-prob forward',
          shape: `${dims([R, V])}, targets ${dims([R])}`,
          unit: 'GB/s',
          work: 4 * R * V,
          note: `${which}; GB/s counts one read of the logits`,
        },
        () => E.targetLogProb(ex, et),
        () => tfLp(tx),
      );
      const oursGrad = (): E.Tensor =>
        E.tidy(() => {
          ex.requiresGrad_(true);
          try {
            E.targetLogProb(ex, et).backward(edout);
            const g = ex.grad!;
            ex.grad = null;
            return g;
          } finally {
            ex.requiresGrad_(false);
          }
        });
      await agree('targetLogProb backward', oursGrad, () => tfLpGrad(tx), 1e-4);
      await timed(
        {
          case: 'target log-prob forward+backward',
          shape: `${dims([R, V])}, targets ${dims([R])}`,
          unit: 'GB/s',
          work: 12 * R * V,
          note: `${which}, through E's tape; GB/s counts the forward's read and the backward's read and write`,
        },
        oursGrad,
        () => tfLpGrad(tx),
      );
    }

    // LayerNorm and RMSNorm forward over rows of C: one read and one write per element.
    {
      const [N, C] = [4096, 1024];
      const [ex2, tx2] = pair([N, C], -3, 3);
      const [ew, tw] = pair([C]);
      const [eb, tb] = pair([C]);
      const eps = 1e-5;
      const tfLayerNorm = (x: TfTensor) => {
        const { mean, variance } = tf.moments(x, -1, true);
        return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps))), tw), tb);
      };
      const tfRmsNorm = (x: TfTensor) => tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), eps))), tw);
      const which = (k: 'layerNorm' | 'rmsNorm') =>
        E.fusedKernel(ex2, k) ? 'our fused kernel (kernels/norms.ts)' : 'our composed form';
      await agree(
        'layerNorm',
        () => E.layerNorm(ex2, ew, eb, eps),
        () => tfLayerNorm(tx2),
      );
      await timed(
        {
          case: 'LayerNorm forward',
          shape: dims([N, C]),
          unit: 'GB/s',
          work: 8 * N * C,
          note: `${which('layerNorm')}; theirs: moments, normalise, scale, shift; GB/s counts one read and one write`,
        },
        () => E.layerNorm(ex2, ew, eb, eps),
        () => tfLayerNorm(tx2),
      );
      await agree(
        'rmsNorm',
        () => E.rmsNorm(ex2, ew, eps),
        () => tfRmsNorm(tx2),
      );
      await timed(
        {
          case: 'RMSNorm forward',
          shape: dims([N, C]),
          unit: 'GB/s',
          work: 8 * N * C,
          note: `${which('rmsNorm')}; theirs: mean of squares, rsqrt, scale; GB/s counts one read and one write`,
        },
        () => E.rmsNorm(ex2, ew, eps),
        () => tfRmsNorm(tx2),
      );
    }

    // One AdamW step over 2^20 parameters, in place. Theirs: the same update composed from tf ops on
    // variables (tfjs has Adam but no decoupled weight decay).
    {
      const n = 1 << 20;
      const hp = { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 };
      const init = syntheticFloats(n, seed++, -1, 1);
      const grad = syntheticFloats(n, seed++, -0.1, 0.1);
      const setUp = () => {
        const p = E.tensor(init, [n], { device: 'webgpu', requiresGrad: true });
        p.grad = E.tensor(grad, [n], { device: 'webgpu' });
        const opt = new E.AdamW([p], {
          lr: hp.lr,
          betas: [hp.beta1, hp.beta2],
          eps: hp.eps,
          weightDecay: hp.weightDecay,
        });
        return {
          p,
          opt,
          free: () => {
            opt.dispose();
            E.dispose([p.grad, p]);
          },
        };
      };
      const tg = tf.tensor1d(grad);
      const tfSetUp = () => {
        // tidy frees the initial values (a variable holds its own reference to the data).
        const [p, m, v] = tf.tidy(() => [
          tf.variable(tf.tensor1d(init)),
          tf.variable(tf.zeros([n])),
          tf.variable(tf.zeros([n])),
        ]);
        let step = 0;
        const stepFn = () => {
          step++;
          const [bc1, bc2] = [1 - hp.beta1 ** step, 1 - hp.beta2 ** step];
          tf.tidy(() => {
            const m2 = tf.add(tf.mul(m, hp.beta1), tf.mul(tg, 1 - hp.beta1));
            const v2 = tf.add(tf.mul(v, hp.beta2), tf.mul(tf.square(tg), 1 - hp.beta2));
            const update = tf.div(tf.div(m2, bc1), tf.add(tf.sqrt(tf.div(v2, bc2)), hp.eps));
            p.assign(tf.sub(tf.mul(p, 1 - hp.lr * hp.weightDecay), tf.mul(update, hp.lr)));
            m.assign(m2);
            v.assign(v2);
          });
        };
        return { p, stepFn, free: () => tf.dispose([p, m, v]) };
      };
      // One step from the same state on both sides must agree before timing.
      {
        const a = setUp();
        const b = tfSetUp();
        a.opt.step();
        b.stepFn();
        checkAgree(`AdamW step: ours and ${peer}`, await a.p.data(), await b.p.data(), 1e-5);
        a.free();
        b.free();
      }
      const a = setUp();
      const b = tfSetUp();
      try {
        await timed(
          {
            case: 'AdamW step',
            shape: `${dims([n])} parameters`,
            unit: 'GB/s',
            work: 28 * n,
            note:
              `ours: ${E.fusedKernel(a.p, 'adamw') ? 'the fused kernel (kernels/adamw.ts)' : 'the composed form'} ` +
              'through E.AdamW; GB/s counts reads of p, g, m, v and writes of p, m, v',
          },
          () => {
            a.opt.step();
            return E.slice(a.p, [0], [1]);
          },
          () => {
            b.stepFn();
            return tf.slice(b.p, [0], [1]);
          },
        );
      } finally {
        a.free();
        b.free();
        tg.dispose();
      }
    }

    // Causal attention, hs = 64: B*H = 8 over T, and with --sizes gpu B*H = 32 at T = 2048. Theirs is the
    // composite (matmul, scale, mask, softmax, matmul) and tf.grads; ours is E.scaledDotProductAttention
    // (fused where the backend has kernels).
    const hs = 64;
    const PEER_FORWARD_MAX_T = 1024;
    const PEER_BACKWARD_MAX_T = 512;
    const hardware = backend.adapter.architecture !== 'software';
    opts.note(
      `attention: on a software adapter the peer is skipped above T = ${PEER_FORWARD_MAX_T} (forward) and T = ` +
        `${PEER_BACKWARD_MAX_T} (forward+backward), where its composite takes seconds per call (it materialises ` +
        'the T x T scores), and on any adapter where the scores exceed maxStorageBufferBindingSize; ours keeps ' +
        'O(T * hs) memory per head',
    );
    const attentionCases: [number, number][] = (opts.quick ? [256] : [128, 256, 512, 1024, 2048]).map((T) => [8, T]);
    if (opts.sizes === 'gpu') attentionCases.push([32, 2048]);
    for (const [BH, T] of attentionCases) {
      const shape = [BH, T, hs];
      const [eq, tq] = pair(shape);
      const [ek, tk] = pair(shape);
      const [ev, tv] = pair(shape);
      const [edy, tdy] = pair(shape);
      const scale = 1 / Math.sqrt(hs);
      const scoresFit = 4 * BH * T * T <= maxBinding;
      const withPeer = scoresFit && (hardware || T <= PEER_FORWARD_MAX_T);
      const withPeerB = scoresFit && (hardware || T <= PEER_BACKWARD_MAX_T);
      let mask: TfTensor | null = null;
      if (withPeer) {
        const maskData = new Float32Array(T * T);
        for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) maskData[i * T + j] = -Infinity;
        mask = tf.tensor(maskData, [T, T]);
        theirs.push(mask);
      }
      const tfAttention = (q: TfTensor, k: TfTensor, v: TfTensor) =>
        tf.matMul(tf.softmax(tf.add(tf.mul(tf.matMul(q, k, false, true), scale), mask!)), v);
      const tfGrads = tf.grads((q: TfTensor, k: TfTensor, v: TfTensor) => tfAttention(q, k, v));
      const which = (fwd: boolean) => {
        const f = E.fusedKernel(eq, 'attention');
        const b = E.fusedKernel(eq, 'attentionBackward');
        const backward = fwd ? '' : b ? ' + fused backward' : ' + composed backward';
        return `ours: ${f ? 'fused forward' : 'composed forward'}${backward}`;
      };
      const flops = 4 * BH * T * T * hs; // q k^T and p v over the full T x T square
      const shapeLabel = `q, k, v ${dims(shape)}, causal`;
      const budget: Budget | undefined =
        T >= 1024 ? { time: 500, iterations: 3 } : T >= 512 ? { time: 500, iterations: 5 } : undefined;
      // The series over T is B*H = 8; the GPU-size row stands alone.
      const inSeries = BH === 8;
      if (withPeer)
        await agree(
          `attention forward B*H=${BH} T=${T}`,
          () => E.scaledDotProductAttention(eq, ek, ev),
          () => tfAttention(tq, tk, tv),
        );
      await timed(
        {
          case: 'attention forward',
          shape: shapeLabel,
          unit: 'GFLOP/s',
          work: flops,
          note: `${which(true)}; FLOPs of 2 matmuls on the full square (causal needs half)`,
          growth: inSeries
            ? [{ series: `attention forward (webgpu), B*H=${BH}, hs=${hs}, over T`, size: T }]
            : undefined,
        },
        () => E.scaledDotProductAttention(eq, ek, ev),
        withPeer ? () => tfAttention(tq, tk, tv) : null,
        budget,
      );

      // Forward and backward. The gradients are kept tensors (backward keeps .grad), so they outlive tidy();
      // the timed output is dv, whose kernel is queued last, and dq and dk are freed at once.
      const oursGrads = (): E.Tensor[] =>
        E.tidy(() => {
          for (const t of [eq, ek, ev]) t.requiresGrad_(true);
          try {
            E.scaledDotProductAttention(eq, ek, ev).backward(edy);
            const g = [eq.grad!, ek.grad!, ev.grad!];
            for (const t of [eq, ek, ev]) t.grad = null;
            return g;
          } finally {
            for (const t of [eq, ek, ev]) t.requiresGrad_(false);
          }
        });
      if (withPeerB)
        await agree(`attention backward B*H=${BH} T=${T}`, oursGrads, () => tfGrads([tq, tk, tv], tdy), 1e-3);
      await timed(
        {
          case: 'attention forward+backward',
          shape: shapeLabel,
          unit: 'GFLOP/s',
          work: 3 * flops,
          note: `${which(false)}; FLOPs of the 6 matmuls on the full square`,
          growth: inSeries
            ? [{ series: `attention forward+backward (webgpu), B*H=${BH}, hs=${hs}, over T`, size: T }]
            : undefined,
        },
        () => {
          const g = oursGrads();
          E.dispose([g[0], g[1]]);
          return g[2];
        },
        withPeerB ? () => tfGrads([tq, tk, tv], tdy)[2] : null,
        budget,
      );
    }

    // Ceilings, for reading the rows above.
    const matmulRates = rows.filter((r) => r.case.startsWith('matmul')).map((r) => r.ours.rate);
    const attention = rows.filter((r) => r.case.startsWith('attention')).map((r) => r.ours.rate);
    opts.note(
      `ceilings in this run: best matmul ${Math.max(...matmulRates).toFixed(1)} GFLOP/s (ours), streaming ` +
        `${Math.max(...streaming).toFixed(2)} GB/s (ours); ` +
        `attention reaches up to ${Math.max(...attention).toFixed(1)} GFLOP/s counted on the full square (half of it ` +
        `on the causal triangle)`,
    );
  } finally {
    for (const t of ours) t.dispose();
    for (const t of theirs) t.dispose();
  }
  // Each job must free what it makes, or memory pressure would grow over the samples.
  const after = live();
  if (after[0] !== before[0] || after[1] !== before[1]) {
    throw new Error(
      `kernels suite leaked tensors: engine ${before[0]} -> ${after[0]}, tfjs ${before[1]} -> ${after[1]}`,
    );
  }
  return rows;
}
