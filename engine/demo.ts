// `npm run demo`: a two-layer MLP learns the two-spirals problem on the engine, with
// AdamW, global-norm clipping and tidy() scopes. The main job is IGPO training (npm start).

import * as E from './index.js';

const g = new E.Generator(0);
const N = 256;
const xs = new Float32Array(2 * N);
const ys = new Int32Array(N);
for (let i = 0; i < N; i++) {
  const cls = i % 2;
  const r = (i / N) * 3 + 0.2;
  const angle = r * 2.5 + cls * Math.PI;
  xs[2 * i] = r * Math.cos(angle) + 0.05 * g.normal();
  xs[2 * i + 1] = r * Math.sin(angle) + 0.05 * g.normal();
  ys[i] = cls;
}
const x = E.tensor(xs, [N, 2]);
const y = E.tensor(ys, [N]);

const H = 64;
const w1 = E.randn([2, H], { generator: g, std: 0.5, requiresGrad: true });
const b1 = E.zeros([H], { requiresGrad: true });
const w2 = E.randn([H, 2], { generator: g, std: 0.1, requiresGrad: true });
const b2 = E.zeros([2], { requiresGrad: true });
const params = [w1, b1, w2, b2];
const opt = new E.AdamW(params, { lr: 0.02, weightDecay: 1e-4 });

console.log(
  `two spirals: ${N} points, MLP 2-${H}-2, ${params.reduce((n, p) => n + p.size, 0)} parameters, CPU backend`,
);
for (let step = 0; step <= 600; step++) {
  const [loss, acc] = E.tidy(() => {
    opt.zeroGrad();
    const logits = x.matmul(w1).add(b1).gelu().matmul(w2).add(b2); // (N, 2)
    const l = E.crossEntropy(logits, y);
    l.backward();
    E.clipGradNorm(params, 1);
    opt.step();
    const correct = E.eq(E.gather(logits, 1, y.reshape([N, 1])), logits.max(1, true)).mean();
    return [l.dataSync()[0], correct.dataSync()[0]];
  });
  if (step % 100 === 0)
    console.log(`step ${String(step).padStart(3)}  loss ${loss.toFixed(4)}  accuracy ${(acc * 100).toFixed(1)}%`);
}
