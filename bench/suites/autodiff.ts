// Suite `autodiff`: the tape's cost per op: forward + backward of elementwise chains of 10 / 100 / 1000 ops on
// tiny tensors, and of 100 ops on growing tensors, against tfjs-core's tape (tf.grad, tf.variableGrads) on
// tfjs-backend-cpu and on tfjs-backend-wasm, both peers timed in one tinybench run with ours. Not the ops'
// compute speed: that is the cpu suite.

import type { Scalar as TfScalar, Tensor as TfTensor, Variable as TfVariable } from '@tensorflow/tfjs-core';
import * as E from '../../engine/index.js';
import { comparePeers, type Job, type PeerJob, type Row, type SuiteOptions } from '../harness.js';
import { syntheticFloats } from '../napkin.js';
import { tfjsCpu } from '../peers/tfjs-cpu.js';
import { registerTfjsGrads } from '../peers/tfjs-grads.js';
import { tfjsWasm, tfjsWasmOff } from '../peers/tfjs-wasm.js';

export const name = 'autodiff';

/** Op i of every chain: y * a, y + b, tanh(y), repeating. Both sides run exactly this sequence. */
const opKind = (i: number) => i % 3;

export async function run(opts: SuiteOptions): Promise<Row[]> {
  const { tf, name: cpuName } = await tfjsCpu();
  const off = tfjsWasmOff();
  const wasm = off ? null : await tfjsWasm();
  registerTfjsGrads(tf);
  // One tfjs engine, two backends: each peer's tensors are made, and its calls timed, with its backend
  // selected (peers/tfjs-wasm.ts says why). The wasm rows' growth series carry the backend in their name.
  const peers = [
    { name: cpuName, backend: 'cpu', series: '' },
    ...(wasm ? [{ name: wasm.name, backend: 'wasm', series: ' (beside tfjs-wasm)' }] : []),
  ].map((p) => ({ ...p, select: () => tf.setBackend(p.backend) }));
  opts.note(
    'ours: E.tidy around forward, loss.backward() and a read of the gradient; tfjs: tf.tidy around tf.grad(f)(x) (or ' +
      'tf.variableGrads) and dataSync. All on one JavaScript thread.',
  );
  opts.note(
    wasm
      ? `Peers: tfjs-core's tape on ${cpuName} (JavaScript kernels) and on ${wasm.name} (${wasm.variant}; tfjs runs ` +
          `no wasm threads under Node). Each case times ours and both peers in one tinybench run: ` +
          `ours is timed once, so its figures repeat on the case's ${wasm.name} row.`
      : `Peer: tfjs-core's tape on ${cpuName} (JavaScript kernels); ${off}.`,
  );
  opts.note(
    "ops/s counts the chain's ops, each forward and backward; the note gives microseconds per op (forward + " +
      "backward), the figure the target is about: ours no worse than tfjs-core's.",
  );
  const live = () => [E.memory().liveTensors, tf.memory().numTensors];
  const before = live();
  const ours: E.Tensor[] = [];
  const theirs: TfTensor[] = [];
  const rows: Row[] = [];

  /** x, a (near 1, so long chains neither blow up nor vanish too fast) and b: ours, and one set per peer. */
  const inputs = async (n: number, seed: number) => {
    const xd = syntheticFloats(n, seed, -0.5, 0.5);
    const ad = syntheticFloats(n, seed + 1, 0.98, 1.02);
    const bd = syntheticFloats(n, seed + 2, -0.02, 0.02);
    const e = { x: E.tensor(xd, [n]), a: E.tensor(ad, [n]), b: E.tensor(bd, [n]) };
    ours.push(e.x, e.a, e.b);
    const ts: { x: TfTensor; a: TfTensor; b: TfTensor }[] = [];
    for (const p of peers) {
      await p.select();
      const t = { x: tf.tensor(xd, [n]), a: tf.tensor(ad, [n]), b: tf.tensor(bd, [n]) };
      theirs.push(t.x, t.a, t.b);
      ts.push(t);
    }
    return { e, ts };
  };
  /** One job per peer, named `${peer}${suffix}`, built from that peer's inputs. */
  const peerJobs = <T>(perPeer: T[], suffix: string, job: (t: T) => Job): PeerJob[] =>
    peers.map((p, i) => ({ name: `${p.name}${suffix}`, select: p.select, fn: job(perPeer[i]) }));
  const chainE = (x: E.Tensor, a: E.Tensor, b: E.Tensor, N: number) => {
    let y = x;
    for (let i = 0; i < N; i++) y = opKind(i) === 0 ? y.mul(a) : opKind(i) === 1 ? y.add(b) : y.tanh();
    return y;
  };
  const chainT = (x: TfTensor, a: TfTensor, b: TfTensor, N: number) => {
    let y = x;
    for (let i = 0; i < N; i++) y = opKind(i) === 0 ? tf.mul(y, a) : opKind(i) === 1 ? tf.add(y, b) : tf.tanh(y);
    return y;
  };
  /** Reads and frees the gradients of leaves, in order, as one array. */
  const takeGrads = (leaves: E.Tensor[]) => {
    const out: number[] = [];
    for (const t of leaves) {
      out.push(...t.grad!.dataSync());
      t.grad!.dispose();
      t.grad = null;
    }
    return out;
  };
  const perOp = (N: number, r: Row) =>
    `${((1000 * r.ours.medianMs) / N).toFixed(2)} µs/op ours, ` +
    `${r.peer ? `${((1000 * r.peer.medianMs) / N).toFixed(2)} µs/op ${r.peer.name.replace(/ \(.*\)$/, '')}` : '—'}`;
  /** The growth series of a peer's row: the cpu peer's keeps the suite's original name. */
  const seriesOf = (r: Row, i: number, series: string, size: number) => ({
    ...r,
    growth: [{ series: series + peers[i].series, size }],
  });
  const withNote = (r: Row, note: string): Row => ({ ...r, note });

  try {
    // Graph size: chains of 10, 100, 1000 ops on [4], gradient with respect to x.
    let seed = 1;
    const sizes = opts.quick ? [10, 100] : [10, 100, 1000];
    for (const N of sizes) {
      const { e, ts } = await inputs(4, (seed += 3));
      e.x.requiresGrad_();
      const rs = await comparePeers(
        {
          case: 'chain fwd+bwd, d/dx',
          shape: `${N} ops on [4]`,
          unit: 'ops/s',
          work: N,
          ours: () =>
            E.tidy(() => {
              chainE(e.x, e.a, e.b, N).sum().backward();
              return takeGrads([e.x]);
            }),
          budget: { time: 500 },
        },
        peerJobs(ts, ' (tape)', (t) => {
          const grad = tf.grad((x: TfTensor) => tf.sum(chainT(x, t.a, t.b, N)));
          return () => tfRead(tf, () => grad(t.x));
        }),
        opts,
      );
      rows.push(...rs.map((r, i) => withNote(seriesOf(r, i, 'tape: chain fwd+bwd on [4], over ops', N), perOp(N, r))));
    }

    // The same 100-op chain without a tape on either side: the dispatch cost alone.
    {
      const N = 100;
      const { e, ts } = await inputs(4, (seed += 3));
      const rs = await comparePeers(
        {
          case: 'chain forward, no tape',
          shape: `${N} ops on [4]`,
          unit: 'ops/s',
          work: N,
          ours: () => E.noGrad(() => E.tidy(() => chainE(e.x, e.a, e.b, N).dataSync())),
          budget: { time: 500 },
        },
        peerJobs(ts, '', (t) => () => tfRead(tf, () => chainT(t.x, t.a, t.b, N))),
        opts,
      );
      rows.push(...rs.map((r) => withNote(r, perOp(N, r))));
    }

    // Two parameters instead of the input: tf.variableGrads against leaves that require grad.
    {
      const N = 100;
      const { e, ts } = await inputs(4, (seed += 3));
      e.a.requiresGrad_();
      e.b.requiresGrad_();
      // Each peer's variables, made on its backend (a variable shares its initial value's data).
      const vars: { x: TfTensor; a: TfVariable; b: TfVariable }[] = [];
      for (const [i, p] of peers.entries()) {
        await p.select();
        const a = tf.variable(ts[i].a, true, `autodiff_a_${seed}_${p.backend}`);
        const b = tf.variable(ts[i].b, true, `autodiff_b_${seed}_${p.backend}`);
        theirs.push(a, b);
        vars.push({ x: ts[i].x, a, b });
      }
      const rs = await comparePeers(
        {
          case: 'chain fwd+bwd, d/d(a, b)',
          shape: `${N} ops on [4], 2 parameters`,
          unit: 'ops/s',
          work: N,
          ours: () =>
            E.tidy(() => {
              chainE(e.x, e.a, e.b, N).sum().backward();
              return takeGrads([e.a, e.b]);
            }),
          budget: { time: 500 },
        },
        peerJobs(vars, ' (variableGrads)', ({ x, a, b }) => () => {
          let out: number[] = [];
          tf.tidy(() => {
            const { grads } = tf.variableGrads(() => tf.sum(chainT(x, a, b, N)) as TfScalar, [a, b]);
            out = [...grads[a.name].dataSync(), ...grads[b.name].dataSync()];
          });
          return out;
        }),
        opts,
      );
      rows.push(...rs.map((r) => withNote(r, perOp(N, r))));
    }

    // Tensor size at 100 ops: where per-op bookkeeping stops mattering and elementwise compute takes over.
    for (const n of opts.quick ? [4, 4096] : [4, 256, 4096, 65536]) {
      const N = 100;
      const { e, ts } = await inputs(n, (seed += 3));
      e.x.requiresGrad_();
      const rs = await comparePeers(
        {
          case: 'chain fwd+bwd, d/dx',
          shape: `${N} ops on [${n}]`,
          // Per op forward and backward: about 2 reads and a write forward, 3 reads and a write backward.
          unit: 'GB/s',
          work: N * 9 * 4 * n,
          also: { unit: 'ops/s', work: N },
          ours: () =>
            E.tidy(() => {
              chainE(e.x, e.a, e.b, N).sum().backward();
              return takeGrads([e.x]);
            }),
          budget: { time: 500 },
        },
        peerJobs(ts, ' (tape)', (t) => {
          const grad = tf.grad((x: TfTensor) => tf.sum(chainT(x, t.a, t.b, N)));
          return () => tfRead(tf, () => grad(t.x));
        }),
        opts,
      );
      rows.push(
        ...rs.map((r, i) =>
          withNote(
            seriesOf(r, i, 'tape: 100-op chain fwd+bwd, over elements', n),
            perOp(N, r) + '; GB/s assumes 9 floats moved per element per op (fwd + bwd)',
          ),
        ),
      );
    }
  } finally {
    for (const t of ours) {
      t.grad?.dispose();
      t.dispose();
    }
    for (const t of theirs) t.dispose();
  }
  const after = live();
  if (after[0] !== before[0] || after[1] !== before[1]) {
    throw new Error(
      `autodiff suite leaked tensors: engine ${before[0]} -> ${after[0]}, tfjs ${before[1]} -> ${after[1]}`,
    );
  }
  return rows;
}

/** The peer's side of a job: run f in a tf.tidy and read its output back (as in the cpu suite). */
function tfRead(tf: { tidy(fn: () => void): void }, f: () => TfTensor): ArrayLike<number> {
  let out: ArrayLike<number> = [];
  tf.tidy(() => {
    out = f().dataSync();
  });
  return out;
}
