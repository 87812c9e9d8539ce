// A decoder built by hand to follow the agent's protocol: after the prompt's newline and after `</info>`
// it writes `<think>x</think><search>q</search>` with all its mass (margin ~200 nats), and elsewhere it is
// a random model whose predictions depend on the context through attention. For tests of IG's probe.

import * as E from '../../engine/index.js';
import { GPT } from '../../model/gpt.js';
import type { Tokenizer } from '../../model/tokenizer.js';

/** Token -> the token the model writes after it, with all its mass. 'x' and 'q' are letters no name uses. */
const NEXT: readonly (readonly [string, string])[] = [
  ['\n', '<think>'],
  ['</info>', '<think>'],
  ['<think>', 'x'],
  ['x', '</think>'],
  ['</think>', '<search>'],
  ['<search>', 'q'],
  ['q', '</search>'],
];

/**
 * The tokens of NEXT get coordinates of their own in the residual stream (one-hot embeddings of norm 40
 * that no other token or attention output touches); the MLP maps each input's coordinate to its next
 * token's; every other weight is random (std `std`), so other positions read their context.
 */
export function protocolModel(tok: Tokenizer, seed = 0, std = 0.3): GPT {
  const C = 32;
  const model = new GPT(
    {
      vocabSize: tok.vocabSize,
      blockSize: 512,
      nLayer: 1,
      nHead: 2,
      nEmbd: C,
      ropeBase: 10000,
      normEps: 1e-5,
      initStd: std,
    },
    { generator: new E.Generator(seed) },
  );
  const names = [...new Set(NEXT.flat())];
  const coord = new Map(names.map((n, i) => [tok.id(n), i]));
  const K = names.length; // coordinates 0..K-1 are the protocol's
  const set = (name: string, f: (data: Float32Array, shape: readonly number[]) => void) => {
    const p = model.p(name);
    const data = Float32Array.from(p.dataSync());
    f(data, p.shape);
    const t = E.tensor(data, p.shape);
    p.assign(t);
    t.dispose();
  };
  set('wte', (w) => {
    for (let v = 0; v < tok.vocabSize; v++) {
      for (let j = 0; j < K; j++) w[v * C + j] = 0;
      const c = coord.get(v);
      if (c !== undefined) {
        for (let j = 0; j < C; j++) w[v * C + j] = 0;
        w[v * C + c] = 40;
      }
    }
  });
  set('h.0.wo', (w) => {
    for (let i = 0; i < C; i++) for (let j = 0; j < K; j++) w[i * C + j] = 0;
  });
  set('h.0.fc', (w) => {
    w.fill(0);
    NEXT.forEach(([from], k) => (w[coord.get(tok.id(from))! * 4 * C + k] = 1));
  });
  set('h.0.proj', (w) => {
    w.fill(0);
    NEXT.forEach(([, to], k) => (w[k * C + coord.get(tok.id(to))!] = 40));
  });
  return model;
}
