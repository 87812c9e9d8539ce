// Suite `igpo`: the RL loop's parts on the main job's model: IG scoring through the KV cache against
// re-forwarding every prefix, turn advantages for 10^3..10^6 rewards, the policy loss on a packed batch, one
// full IGPO step by phase. Not the decoder's raw speed (model suite), and nothing here learns.

import * as E from '../../engine/index.js';
import { groupTurnAdvantages } from '../../igpo/advantage.js';
import { defaultLossOptions, entropyFromLogits, policyLoss } from '../../igpo/loss.js';
import { PRESETS } from '../../igpo/presets.js';
import { ALGORITHMS, defaultRLOptions } from '../../igpo/algorithms.js';
import { probeTokens, THINK_PROBE } from '../../igpo/reward.js';
import { collectRollouts, type AgentTask } from '../../igpo/rollout.js';
import { frozenCopy, groupMinibatches, packRollouts, updatePolicy } from '../../igpo/update.js';
import { GPT, type GPTConfig } from '../../model/gpt.js';
import { BatchDecoder } from '../../model/sample.js';
import { defaultTokenizer, type Tokenizer } from '../../model/tokenizer.js';
import { checkAgree, makeRow, measuredOf, timeJobs, type Growth, type Row, type SuiteOptions } from '../harness.js';
import { forwardFlopsPerToken, syntheticFloats, syntheticIds, trainFlopsPerToken } from '../napkin.js';
import { webgpuForBench } from '../webgpu.js';

export const name = 'igpo';

/**
 * The ground truth every case scores, after the default probe's opening (`<think>I know the answer.</think><answer>`):
 * 29 tokens.
 */
const GOLD = 'Iva Kolm';

/** The default probe's tokens for GOLD, prefix and scored answer in one list: what one score call forwards. */
const probeIds = (tok: Tokenizer): number[] => {
  const p = probeTokens(THINK_PROBE, GOLD, (t) => tok.encode(t));
  return [...p.prefix, ...p.answer];
};

export async function run(opts: SuiteOptions): Promise<Row[]> {
  const tok = defaultTokenizer();
  const cfg: GPTConfig = { vocabSize: tok.vocabSize, ropeBase: 10000, normEps: 1e-5, ...PRESETS.default.model };
  opts.note(
    `model: PRESETS.default.model ${JSON.stringify(PRESETS.default.model)}, vocabulary ${tok.vocabSize}, random ` +
      `weights (seeded), on cpu (the default preset's device on this machine; webgpu only for the loss, below).`,
  );
  const before = E.memory().liveTensors;
  const rows: Row[] = [];
  const model = new GPT(cfg, { generator: new E.Generator(1) });
  try {
    rows.push(...(await igScoring(model, tok, opts)));
    rows.push(...(await advantages(opts)));
    rows.push(...(await lossCases('cpu', cfg.vocabSize, opts)));
    const gpu = await webgpuForBench();
    opts.note(gpu.line);
    if (gpu.ok) rows.push(...(await lossCases('webgpu', cfg.vocabSize, opts)));
    rows.push(...(await fullStep(model, tok, opts)));
  } finally {
    model.dispose();
  }
  const after = E.memory().liveTensors;
  if (after !== before) throw new Error(`igpo suite leaked tensors: ${before} -> ${after}`);
  return rows;
}

// ---------------------------------------------------------------------------------------------------
// (a) IG scoring: p_t after the prompt and after each of n turns, for one sequence of `ctx` tokens.

/**
 * The cache route is what collectRollouts does: one prefill, then per turn an append of the turn's tokens
 * and BatchDecoder.score of the probe (a forward of its first A-1 tokens on top of the cache, rolled back).
 * The naive route is the authors' code: per turn, a full forward over prefix + probe.
 * A third job times the score calls alone, on decoders already holding each turn's prefix: IG's marginal
 * cost in a rollout, which builds the cache to sample anyway.
 */
async function igScoring(model: GPT, tok: Tokenizer, opts: SuiteOptions): Promise<Row[]> {
  const answer = probeIds(tok);
  const A = answer.length;
  const { nLayer: L, nEmbd: C, vocabSize: V } = model.cfg;
  const N = model.numParams();
  const rows: Row[] = [];
  const flopRatio = new Map<string, number>(); // naive FLOP / cache-route FLOP, by shape
  const turnsList = opts.quick ? [2, 4] : [2, 4, 8];
  const ctxList = opts.quick ? [128, 512] : [128, 256, 512];
  opts.note(
    `IG scoring: batch 1, a synthetic sequence of ctx tokens that ends with the ${A}-token probe ` +
      `\`${THINK_PROBE.prefix}${GOLD}\` at the last turn; the prompt and the n turns split the rest evenly. ` +
      'Ours = the cache route (prefill + per turn an append and a score); peer = the naive route (per turn a full ' +
      'forward over prefix + answer), timed in the same run; both give the same log-probs (checked). ' +
      '"score calls only" times the scores alone on caches that already hold each prefix: what IG adds to a rollout, ' +
      'which builds the cache to sample anyway.',
  );
  for (const n of turnsList) {
    for (const ctx of ctxList) {
      const last = ctx - A; // the prefix after the last turn
      const c = Math.floor(last / (n + 1)); // tokens per turn
      const P = last - n * c; // the prompt
      const prefix = (k: number) => P + k * c;
      const seq = syntheticIds(last, V, 17 * ctx + n);
      const cacheRoute = async () => {
        const dec = new BatchDecoder(model, [seq.slice(0, P)], tok.pad);
        const out: number[] = [];
        try {
          out.push(...(await dec.score([answer]))[0]);
          for (let k = 1; k <= n; k++) {
            dec.append([seq.slice(prefix(k - 1), prefix(k))]);
            out.push(...(await dec.score([answer]))[0]);
          }
        } finally {
          dec.dispose();
        }
        return out;
      };
      const naive = async () => {
        const out: number[] = [];
        for (let k = 0; k <= n; k++) {
          const len = prefix(k);
          const ids = Int32Array.from([...seq.slice(0, len), ...answer.slice(0, -1)]);
          const lp = E.noGrad(() =>
            E.tidy(() => {
              const { logits } = model.forward(E.tensor(ids, [1, ids.length])); // (1, len + A - 1, V)
              return E.targetLogProb(logits.narrow(1, len - 1, A), E.tensor(Int32Array.from(answer), [1, A]));
            }),
          );
          out.push(...(await lp.data()));
          lp.dispose();
        }
        return out;
      };
      const decs = Array.from({ length: n + 1 }, (_, k) => new BatchDecoder(model, [seq.slice(0, prefix(k))], tok.pad));
      const scoresOnly = async () => {
        const out: number[] = [];
        for (const d of decs) out.push(...(await d.score([answer]))[0]);
        return out;
      };
      try {
        const shape = `1 x ${ctx} tokens, ${n} turns`;
        opts.log(`  IG scoring ${shape}`);
        const [a, b, s] = [await cacheRoute(), await naive(), await scoresOnly()];
        checkAgree(`IG scoring ${shape}: cache route and naive route`, a, b);
        checkAgree(`IG scoring ${shape}: score calls and naive route`, s, b);
        const t = await timeJobs(
          `IG scoring ${shape}`,
          {
            cache: { fn: cacheRoute, async: true },
            naive: { fn: naive, async: true },
            scores: { fn: scoresOnly, async: true },
          },
          opts,
          { time: 500, iterations: 3 },
        );
        // Tokens each route pushes through the model, and the forward FLOP (2N + 4 L C S per token over S keys).
        const fwd = (tokens: number, keys: number) => tokens * forwardFlopsPerToken({ nLayer: L, nEmbd: C }, N, keys);
        let cacheTokens = P;
        let cacheFlop = fwd(P, P);
        let naiveTokens = 0;
        let naiveFlop = 0;
        for (let k = 0; k <= n; k++) {
          if (k > 0) {
            cacheTokens += c;
            cacheFlop += fwd(c, prefix(k));
          }
          cacheTokens += A - 1;
          cacheFlop += fwd(A - 1, prefix(k) + A - 1);
          naiveTokens += prefix(k) + A - 1;
          naiveFlop += fwd(prefix(k) + A - 1, prefix(k) + A - 1);
        }
        const scored = (n + 1) * A;
        flopRatio.set(shape, naiveFlop / cacheFlop);
        const growth = (what: string): Growth[] => [
          ...(n === 4 ? [{ series: `IG scoring ${what}, 4 turns, over context`, size: ctx }] : []),
          ...(ctx === 512 ? [{ series: `IG scoring ${what}, 512 tokens, over turns`, size: n }] : []),
        ];
        const naivePeer = { name: 'naive re-forward', ...t.naive };
        rows.push(
          makeRow(
            {
              case: 'IG scoring: cache route',
              shape,
              unit: 'tokens/s',
              work: scored,
              note:
                `answer tokens scored/s; forwards ${cacheTokens} tokens in ${2 * n + 1} calls ` +
                `(${(cacheFlop / 1e9).toFixed(2)} GFLOP) vs naive ${naiveTokens} in ${n + 1} ` +
                `(${(naiveFlop / 1e9).toFixed(2)} GFLOP): ` +
                `${(naiveFlop / cacheFlop).toFixed(2)}x the FLOP, the most the cache can win here`,
              growth: growth('(cache route)'),
            },
            t.cache,
            naivePeer,
          ),
        );
        rows.push(
          makeRow(
            {
              case: 'IG scoring: score calls only',
              shape,
              unit: 'tokens/s',
              work: scored,
              note:
                `${n + 1} forwards of ${A - 1} tokens on the cache (${(n + 1) * (A - 1)} tokens); peer is the ` +
                `same naive timing as the row above`,
              growth: growth('(score calls only)'),
            },
            t.scores,
            naivePeer,
          ),
        );
      } finally {
        for (const d of decs) d.dispose();
      }
    }
  }
  const target = '1 x 512 tokens, 4 turns';
  const at = (what: string) => rows.find((r) => r.case === what && r.shape === target);
  const [route, scores] = [at('IG scoring: cache route'), at('IG scoring: score calls only')];
  if (route?.ratio && scores?.ratio) {
    opts.note(
      `IG scoring target (cache at least 5x faster than re-forwarding at 4 turns and 512 tokens): the whole cache ` +
        `route is ${route.ratio.toFixed(2)}x, the score calls alone ${scores.ratio.toFixed(1)}x. ` +
        'The whole route cannot reach 5x at 4 turns: it still forwards the full sequence once (prefill and appends), ' +
        'while the naive route forwards about (n + 2) / 2 sequences, ' +
        `${flopRatio.get(target)!.toFixed(1)}x the FLOP here (about 5x only from n = 8), and its many small forwards ` +
        `run at fewer GFLOP/s than the naive route’s long ones. In a rollout the cache exists anyway, for ` +
        `sampling; what IG adds is the score calls.`,
    );
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------
// (b) Turn advantages: groupTurnAdvantages over groups of 8 rollouts x 4 turns.

async function advantages(opts: SuiteOptions): Promise<Row[]> {
  const G = 8;
  const turns = 4;
  const rows: Row[] = [];
  opts.note(
    `advantages: groupTurnAdvantages (joint normalisation, gamma 1) per group of ${G} rollouts x ${turns} turns; ` +
      `IG-like rewards on the first turns, an F1 in [0, 1] on the last. Pure JavaScript on number[][]; no peer.`,
  );
  for (const target of opts.quick ? [1e3, 1e4, 1e5] : [1e3, 1e4, 1e5, 1e6]) {
    const groups = Math.ceil(target / (G * turns));
    const flat = syntheticFloats(groups * G * turns, 31 + groups, -0.2, 0.2);
    const data = Array.from({ length: groups }, (_, g) =>
      Array.from({ length: G }, (_, i) => {
        const r = Array.from(flat.subarray((g * G + i) * turns, (g * G + i + 1) * turns));
        r[turns - 1] = (r[turns - 1] + 0.2) * 2.5; // the outcome
        return r;
      }),
    );
    const job = () => {
      let s = 0;
      for (const group of data) s += groupTurnAdvantages(group)[0][0];
      return s;
    };
    job();
    const rewards = groups * G * turns;
    const shape = `${groups} groups x ${G} x ${turns} = ${rewards} rewards`;
    opts.log(`  advantages ${shape}`);
    const t = await timeJobs(`advantages ${shape}`, { ours: { fn: job, async: false } }, opts, {
      time: 500,
      iterations: 3,
    });
    rows.push(
      makeRow(
        {
          case: 'turn advantages',
          shape,
          unit: 'rewards/s',
          work: rewards,
          growth: [{ series: 'turn advantages, over rewards', size: rewards }],
        },
        t.ours,
        null,
      ),
    );
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------
// (c) The policy loss on a packed batch, forward and backward.

async function lossCases(device: E.Device, V: number, opts: SuiteOptions): Promise<Row[]> {
  const B = 16;
  const T = 256;
  const n = B * T;
  const rows: Row[] = [];
  const on = { device };
  const logpData = syntheticFloats(n, 51, -3, -0.05);
  const shifted = (seed: number, width: number) =>
    syntheticFloats(n, seed, -width, width).map((d, i) => logpData[i] + d);
  const oldLogp = E.tensor(shifted(52, 0.3), [B, T], on);
  const refLogp = E.tensor(shifted(53, 0.5), [B, T], on);
  const adv = E.tensor(syntheticFloats(n, 54, -1.5, 1.5), [B, T], on);
  const mask = E.tensor(
    Float32Array.from({ length: n }, (_, i) => (i % 10 < 7 ? 1 : 0)),
    [B, T],
    on,
  );
  const logp = E.tensor(logpData, [B, T], { ...on, requiresGrad: true });
  const entropy = E.tensor(syntheticFloats(n, 55, 0.5, 3), [B, T], { ...on, requiresGrad: true });
  const logits = E.tensor(syntheticFloats(n * V, 56, -2, 2), [B, T, V], { ...on, requiresGrad: true });
  const targets = E.tensor(Int32Array.from(syntheticIds(n, V, 57, 0)), [B, T], on);
  const fixed = [oldLogp, refLogp, adv, mask, logp, entropy, logits, targets];
  /** Reads the first leaf's gradient, then frees every leaf's. */
  const readGrad = async (leaves: E.Tensor[]) => {
    const out = await leaves[0].grad!.data();
    for (const t of leaves) {
      t.grad?.dispose();
      t.grad = null;
    }
    return out;
  };
  try {
    const cases: [string, string, () => Promise<unknown>][] = [
      [
        `policy loss fwd+bwd, per-token inputs (${device})`,
        `[${B},${T}]`,
        () =>
          readGrad(
            E.tidy(() => {
              policyLoss(
                { logp, oldLogp, advantages: adv, mask, refLogp, entropy },
                defaultLossOptions,
              ).loss.backward();
              return [logp, entropy];
            }),
          ),
      ],
      [
        `policy loss fwd+bwd, from logits (${device})`,
        `[${B},${T},${V}]`,
        () =>
          readGrad(
            E.tidy(() => {
              const lp = E.targetLogProb(logits, targets);
              policyLoss(
                { logp: lp, oldLogp, advantages: adv, mask, refLogp, entropy: entropyFromLogits(logits) },
                defaultLossOptions,
              ).loss.backward();
              return [logits];
            }),
          ),
      ],
    ];
    for (const [label, shape, job] of cases) {
      opts.log(`  ${label} ${shape}`);
      await job();
      const t = await timeJobs(label, { ours: { fn: job, async: true } }, opts, { time: 500 });
      const note =
        shape.split(',').length > 2
          ? 'targetLogProb + entropy from the logits, then the loss, as updatePolicy does after the forward; ' +
            'reads dlogits back'
          : 'clipped surrogate (dual clip), k3 KL, entropy bonus, seq-mean-token-mean; reads dlogp back';
      rows.push(makeRow({ case: label, shape, unit: 'tokens/s', work: n, note }, t.ours, null));
    }
  } finally {
    for (const t of fixed) t.grad?.dispose();
    E.dispose(fixed);
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------------
// (d) One full IGPO step, phase by phase.

/**
 * A task of fixed shape for a random model: every turn gets a tool response of `infoChars` characters in
 * <info> tags until the last turn, which ends the episode with an F1-like reward. The real environment
 * would end a random model's episode at its first malformed turn; this one keeps every rollout going for
 * `turns` turns, so the step's sizes are known.
 */
function fixedShapeTask(i: number, turns: number, infoChars: number): AgentTask {
  let t = 0;
  const fact = 'Oskel is the capital of Varna. ';
  const info = fact.repeat(Math.ceil(infoChars / fact.length)).slice(0, infoChars);
  return {
    prompt: `Where was the founder of Kelto Works born? (${i})\n`,
    gold: GOLD,
    step: () => {
      t++;
      if (t < turns) return { done: false, observation: `<info>${info}</info>` };
      return { done: true, reward: ((i * 37) % 11) / 10, reason: 'answer' };
    },
  };
}

async function fullStep(model: GPT, tok: Tokenizer, opts: SuiteOptions): Promise<Row[]> {
  const G = 8;
  const maxTurnTokens = 24;
  const infoChars = 30;
  const { nLayer: L, nEmbd: C } = model.cfg;
  const N = model.numParams();
  opts.note(
    `full step: one group of ${G} rollouts of a fixed-shape task (every turn gets a ${infoChars + 2}-token tool ` +
      `response until the last; a random model would otherwise end at its first malformed turn), ` +
      `up to ${maxTurnTokens} sampled tokens per turn (a turn also ends at a sampled stop tag), IG scored after the ` +
      `prompt and every response, ` +
      `then IGPO's turn rewards + groupTurnAdvantages + packRollouts, then updatePolicy (2 minibatches, KL to a ` +
      `frozen copy, entropy bonus, AdamW). ` +
      `Phases as trainRL's StepMetrics.ms splits them: "rollout" excludes the IG scores. Timed by hand: ` +
      `${opts.quick ? 'one step' : 'the median of 2 steps'} after a warm-up step.`,
  );
  const ref = frozenCopy(model);
  const rlOpts = defaultRLOptions('igpo');
  const opt = new E.AdamW(model.parameters(), { lr: 2e-4, weightDecay: 0, betas: [0.9, 0.999] }); // as trainRL
  const rows: Row[] = [];
  try {
    const step = async (turns: number, seed: number) => {
      const tasks = Array.from({ length: G }, (_, i) => fixedShapeTask(i, turns, infoChars));
      const timings = { generateMs: 0, scoreMs: 0 };
      const t0 = performance.now();
      const rollouts = await collectRollouts(
        model,
        tok,
        tasks,
        { maxTurns: turns, maxTurnTokens, sampling: { temperature: 1 }, probe: THINK_PROBE, scoreTemperature: 1 },
        new E.Generator(seed),
        timings,
      );
      const t1 = performance.now();
      const packed = packRollouts(
        rollouts,
        groupTurnAdvantages(rollouts.map((r) => ALGORITHMS.igpo.turnRewards(r, r.outcome, rlOpts))),
        tok.pad,
      );
      const t2 = performance.now();
      await updatePolicy(model, ref, opt, packed, {
        loss: defaultLossOptions,
        minibatches: groupMinibatches(packed.B, 4, 2, new E.Generator(seed)),
        maxGradNorm: 1,
      });
      const t3 = performance.now();
      const scored = rollouts.reduce((s, r) => s + r.probs.length, 0) * probeIds(tok).length;
      const seqTokens = rollouts.reduce(
        (s, r) => s + r.prompt.length + r.turns.reduce((a, t) => a + t.tokens.length + t.observation.length, 0),
        0,
      );
      const turnCount = rollouts.reduce((s, r) => s + r.turns.length, 0);
      return {
        ms: { rollout: t1 - t0 - timings.scoreMs, ig: timings.scoreMs, adv: t2 - t1, update: t3 - t2, total: t3 - t0 },
        sizes: {
          policy: packed.policyTokens,
          scored,
          turns: turnCount,
          B: packed.B,
          Lp: packed.L,
          seqTokens,
          ends: rollouts.map((r) => r.endReason),
        },
      };
    };
    const samples = opts.quick ? 1 : 2;
    await step(2, 0); // warm-up
    for (const turns of opts.quick ? [2, 4] : [2, 4, 8]) {
      opts.log(`  full step, ${G} rollouts x ${turns} turns`);
      const runs: Awaited<ReturnType<typeof step>>[] = [];
      for (let s = 0; s < samples; s++) runs.push(await step(turns, 100 + s));
      const z = runs[0].sizes;
      const per = (k: keyof (typeof runs)[0]['ms']) => measuredOf(runs.map((r) => r.ms[k]));
      const shape = `${G} rollouts x ${turns} turns, ${Math.round(z.seqTokens / G)} tokens each`;
      const grow = (phase: string): Growth[] => [
        { series: `full step (${G} rollouts): ${phase}, over turns`, size: turns },
      ];
      const flopUpdate =
        z.B *
        z.Lp *
        (trainFlopsPerToken({ nLayer: L, nEmbd: C }, N, z.Lp) + forwardFlopsPerToken({ nLayer: L, nEmbd: C }, N, z.Lp));
      const ends = [...new Set(z.ends)].join(', ');
      rows.push(
        makeRow(
          {
            case: 'full step: rollout (sampling + tool responses)',
            shape,
            unit: 'tokens/s',
            work: z.policy,
            note: `${z.policy} policy tokens sampled; episodes ended: ${ends}`,
            growth: grow('rollout'),
          },
          per('rollout'),
          null,
        ),
        makeRow(
          {
            case: 'full step: IG scoring',
            shape,
            unit: 'tokens/s',
            work: z.scored,
            note: `${z.scored} probe tokens scored (${z.scored / probeIds(tok).length} score rows)`,
            growth: grow('IG scoring'),
          },
          per('ig'),
          null,
        ),
        // No growth series: a phase of a few milliseconds, whose samples a GC pause can multiply.
        makeRow(
          {
            case: 'full step: advantages + packing',
            shape,
            unit: 'rewards/s',
            work: z.turns,
            note: `${z.turns} turn rewards`,
          },
          per('adv'),
          null,
        ),
        makeRow(
          {
            case: 'full step: update (2 minibatches)',
            shape,
            unit: 'tokens/s',
            work: z.B * z.Lp,
            also: { unit: 'GFLOP/s', work: flopUpdate },
            note: `packed [${z.B}, ${z.Lp}]; FLOP: policy fwd+bwd + reference fwd on every padded position`,
            growth: grow('update'),
          },
          per('update'),
          null,
        ),
        makeRow(
          {
            case: 'full step: total',
            shape,
            unit: 'tokens/s',
            work: z.policy,
            note: 'policy tokens per second of the whole step',
            growth: grow('total'),
          },
          per('total'),
          null,
        ),
      );
    }
  } finally {
    opt.dispose();
    ref.dispose();
    for (const p of model.parameters()) {
      p.grad?.dispose();
      p.grad = null;
    }
  }
  return rows;
}
