// Suite `cpu`: the engine's CPU backend against two TensorFlow.js backends, each case in one tinybench run:
// tfjs-backend-cpu (pure JavaScript on one thread, as ours) and tfjs-backend-wasm (WebAssembly SIMD on one
// thread, C++ kernels with XNNPACK). Matmul (square and model-shaped, GFLOP/s), elementwise add and a full sum,
// broadcast add and mul, log-softmax, RMSNorm and an AdamW step at the decoder's shapes (GB/s). Each call reads
// its result back with dataSync, so the work is done and every side pays for the read.

import type { Tensor as TfTensor } from '@tensorflow/tfjs-core';
import * as E from '../../engine/index.js';
import { comparePeers, type Case, type PeerJob, type Row, type SuiteOptions } from '../harness.js';
import { tfjsCpu } from '../peers/tfjs-cpu.js';
import { tfjsWasm, tfjsWasmOff } from '../peers/tfjs-wasm.js';

export const name = 'cpu';

/** Uniform in [-1, 1), seeded, so every run times the same inputs. */
function uniform(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0; // LCG (Numerical Recipes)
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

const dims = (s: readonly number[]) => `[${s.join(',')}]`;

/**
 * The peer's side of a job: run f in a tf.tidy and read its output back. The tidy returns nothing:
 * returned values are walked element by element looking for tensors, 1M floats in about 250 ms.
 */
function tfRead(tf: { tidy(fn: () => void): void }, f: () => TfTensor): ArrayLike<number> {
  let out: ArrayLike<number> = [];
  tf.tidy(() => {
    out = f().dataSync();
  });
  return out;
}

export async function run(opts: SuiteOptions): Promise<Row[]> {
  const { tf, name: cpuName } = await tfjsCpu();
  const off = tfjsWasmOff();
  const wasm = off ? null : await tfjsWasm();
  // One tfjs engine, two backends: a tensor lives on the backend active when it was made, so each peer's
  // inputs are made, and its calls timed, with its backend selected (peers/tfjs-wasm.ts says why).
  const peers = [{ name: cpuName, backend: 'cpu' }, ...(wasm ? [{ name: wasm.name, backend: 'wasm' }] : [])].map(
    (p) => ({ ...p, select: () => tf.setBackend(p.backend) }),
  );
  opts.note(
    wasm
      ? `Peers: ${cpuName} (JavaScript) and ${wasm.name} (${wasm.variant}; tfjs runs no wasm threads under Node), ` +
          `each on one thread as ours. Each case times ours and both peers in one tinybench run: ours is timed once, ` +
          `so its figures repeat on the case's ${wasm.name} row.`
      : `Peer: ${cpuName} (JavaScript, one thread as ours); ${off}.`,
  );
  const live = () => [E.memory().liveTensors, tf.memory().numTensors];
  const before = live();
  const rows: Row[] = [];
  // Inputs live for the whole suite on every side; each job makes and frees only its output.
  const ours: E.Tensor[] = [];
  const theirs: TfTensor[] = [];
  /** Our tensor and one per peer, in peers' order, from the same data. */
  const pair = async (shape: number[], seed: number) => {
    const data = uniform(
      shape.reduce((p, d) => p * d, 1),
      seed,
    );
    const e = E.tensor(data, shape);
    ours.push(e);
    const ts: TfTensor[] = [];
    for (const p of peers) {
      await p.select();
      ts.push(tf.tensor(data, shape, 'float32'));
    }
    theirs.push(...ts);
    return [e, ts] as const;
  };
  /** One job per peer, each given its own inputs. */
  const peerJobs = <A extends unknown[]>(inputs: A[], job: (...a: A) => TfTensor): PeerJob[] =>
    peers.map((p, i) => ({ name: p.name, select: p.select, fn: () => tfRead(tf, () => job(...inputs[i])) }));
  const zip2 = (xs: TfTensor[], ys: TfTensor[]) => xs.map((x, i) => [x, ys[i]] as [TfTensor, TfTensor]);

  try {
    // [case, a's shape, b's shape, transposeA]: op(a) @ b, batch dims leading.
    const matmuls: [string, number[], number[], boolean][] = [
      ['matmul 256^3', [256, 256], [256, 256], false],
      ['matmul 1024^3', [1024, 1024], [1024, 1024], false],
      ['linear forward', [64, 128], [128, 512], false],
      ['linear dW (a^T b)', [64, 128], [64, 512], true],
      ['attention scores, batched', [8, 128, 64], [8, 64, 128], false],
    ];
    let seed = 1;
    for (const [label, as, bs, transA] of matmuls) {
      const [ea, tas] = await pair(as, seed++);
      const [eb, tbs] = await pair(bs, seed++);
      const r = as.length;
      const [M, K] = transA ? [as[r - 1], as[r - 2]] : [as[r - 2], as[r - 1]];
      const N = bs[bs.length - 1];
      const batch = as.slice(0, -2).reduce((p, d) => p * d, 1);
      const c: Omit<Case, 'peer'> = {
        case: label,
        shape: `${dims(as)}${transA ? '^T' : ''}@${dims(bs)}`,
        unit: 'GFLOP/s',
        work: 2 * batch * M * N * K,
        ours: () => E.tidy(() => E.matmulT(ea, eb, transA, false).dataSync()),
      };
      rows.push(
        ...(await comparePeers(
          c,
          peerJobs(zip2(tas, tbs), (ta, tb) => tf.matMul(ta, tb, transA, false)),
          opts,
        )),
      );
    }

    // Memory-bound ops on 2^20 floats: bytes read plus bytes written, 4 per float32.
    const n = 1 << 20;
    const [ex, txs] = await pair([n], seed++);
    const [ey, tys] = await pair([n], seed++);
    rows.push(
      ...(await comparePeers(
        {
          case: 'add',
          shape: `${dims([n])}+${dims([n])}`,
          unit: 'GB/s',
          work: 3 * 4 * n,
          ours: () => E.tidy(() => E.add(ex, ey).dataSync()),
        },
        peerJobs(zip2(txs, tys), (tx, ty) => tf.add(tx, ty)),
        opts,
      )),
    );
    rows.push(
      ...(await comparePeers(
        {
          case: 'sum (full reduction)',
          shape: dims([n]),
          unit: 'GB/s',
          work: 4 * n,
          ours: () => E.tidy(() => E.sum(ex).dataSync()),
        },
        peerJobs(
          txs.map((t) => [t] as [TfTensor]),
          (tx) => tf.sum(tx),
        ),
        opts,
      )),
    );

    // The decoder's row ops at its shapes (PRESETS.default: batch 8, T 512, C 64, vocabulary 107): a bias
    // [C] and a per-row gate [B, T, 1] broadcast over [B, T, C], log-softmax over the vocabulary for a
    // batch row and for the whole batch, RMSNorm over C. GB/s counts each input read once and the output.
    const [B, T, C, V] = [8, 512, 64, 107];
    const [eh, ths] = await pair([B, T, C], seed++);
    const broadcasts: [string, number[], 'add' | 'mul'][] = [
      ['broadcast add (bias)', [C], 'add'],
      ['broadcast mul (row gate)', [B, T, 1], 'mul'],
    ];
    for (const [label, bs, op] of broadcasts) {
      const [eb, tbs] = await pair(bs, seed++);
      rows.push(
        ...(await comparePeers(
          {
            case: label,
            shape: `${dims([B, T, C])}${op === 'add' ? '+' : '*'}${dims(bs)}`,
            unit: 'GB/s',
            work: 4 * (2 * B * T * C + bs.reduce((p, d) => p * d, 1)),
            ours: () => E.tidy(() => E[op](eh, eb).dataSync()),
          },
          peerJobs(zip2(ths, tbs), (th, tb) => (op === 'add' ? tf.add(th, tb) : tf.mul(th, tb))),
          opts,
        )),
      );
    }
    for (const rowsN of [T, B * T]) {
      const [el, tls] = await pair([rowsN, V], seed++);
      rows.push(
        ...(await comparePeers(
          {
            case: 'log-softmax',
            shape: dims([rowsN, V]),
            unit: 'GB/s',
            work: 2 * 4 * rowsN * V,
            ours: () => E.tidy(() => E.logSoftmax(el).dataSync()),
          },
          peerJobs(
            tls.map((t) => [t] as [TfTensor]),
            (tl) => tf.logSoftmax(tl),
          ),
          opts,
        )),
      );
    }
    // tfjs has no RMSNorm kernel and no fused AdamW step: these rows are ours alone.
    const [ex2] = await pair([B * T, C], seed++);
    const [ew] = await pair([C], seed++);
    rows.push(
      ...(await comparePeers(
        {
          case: 'RMSNorm',
          shape: `${dims([B * T, C])}, weight ${dims([C])}`,
          unit: 'GB/s',
          work: 4 * (2 * B * T * C + C),
          ours: () => E.tidy(() => E.rmsNorm(ex2, ew).dataSync()),
        },
        [],
        opts,
      )),
    );
    // One AdamW step, in place on 2^18 parameters: reads param, grad, m and v, writes param, m and v.
    const np = 1 << 18;
    const param = E.tensor(uniform(np, seed++), [np], { requiresGrad: true });
    const grad = E.tensor(uniform(np, seed++), [np]);
    ours.push(param, grad);
    E.tidy(() => E.sum(E.mul(param, grad)).backward()); // param.grad = grad
    const adamw = new E.AdamW([param], { lr: 1e-3, weightDecay: 0.01 });
    try {
      rows.push(
        ...(await comparePeers(
          {
            case: 'AdamW step',
            shape: dims([np]),
            unit: 'GB/s',
            work: 7 * 4 * np,
            tol: null,
            ours: () => adamw.step(),
            note: 'in place: nothing to read back',
          },
          [],
          opts,
        )),
      );
    } finally {
      adamw.dispose();
      param.grad?.dispose();
    }
  } finally {
    for (const t of ours) t.dispose();
    for (const t of theirs) t.dispose();
  }
  // Each job must free what it makes, or memory pressure would grow over the samples.
  const after = live();
  if (after[0] !== before[0] || after[1] !== before[1]) {
    throw new Error(`cpu suite leaked tensors: engine ${before[0]} -> ${after[0]}, tfjs ${before[1]} -> ${after[1]}`);
  }
  return rows;
}
