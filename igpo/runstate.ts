// A training run's resumable state in one file: the policy's weights, the optimizers' moments as tensors
// of their own, and the rest of trainRL's RLState (counters, generators, metrics so far) as JSON in the
// safetensors metadata. One file, written atomically, so a run is never resumed from a mixed state.
// Not the loop (trainer.ts) and not the file format (model/safetensors.ts).

import type * as E from '../engine/index.js';
import { loadCheckpoint, saveCheckpoint } from '../model/checkpoint.js';
import type { GPT } from '../model/gpt.js';
import type { SafeTensor } from '../model/safetensors.js';
import type { Tokenizer } from '../model/tokenizer.js';
import type { RLState } from './trainer.js';

const PREFIX = 'state.';

/** An optimizer state's moments as tensors named `<prefix>m.<i>`, and the rest as JSON. */
function splitOptimizer(s: E.AdamWState, prefix: string, into: Record<string, SafeTensor>) {
  s.moments.forEach((mv, i) => {
    if (!mv) return;
    into[`${prefix}m.${i}`] = { dtype: 'float32', shape: [mv.m.length], data: Float32Array.from(mv.m) };
    into[`${prefix}v.${i}`] = { dtype: 'float32', shape: [mv.v.length], data: Float32Array.from(mv.v) };
  });
  return { stepCount: s.stepCount, lr: s.lr, stepped: s.moments.map((mv) => mv !== null) };
}

function joinOptimizer(
  json: { stepCount: number; lr: number; stepped: boolean[] },
  prefix: string,
  from: Record<string, SafeTensor>,
  file: string,
): E.AdamWState {
  const moments = json.stepped.map((on, i) => {
    if (!on) return null;
    const [m, v] = [from[`${prefix}m.${i}`], from[`${prefix}v.${i}`]];
    if (!m || !v) throw new Error(`${file}: run state: tensor '${prefix}${m ? 'v' : 'm'}.${i}' is missing`);
    return { m: m.data, v: v.data };
  });
  return { stepCount: json.stepCount, lr: json.lr, moments };
}

/** Writes the policy and the run's state to `path`, atomically. */
export async function saveRunState(
  path: string,
  model: GPT,
  tok: Tokenizer,
  state: RLState,
  metadata: Record<string, string>,
): Promise<void> {
  const extra: Record<string, SafeTensor> = {};
  const { optimizer, critic, ...rest } = state;
  const json = {
    ...rest,
    optimizer: splitOptimizer(optimizer, `${PREFIX}optim.`, extra),
    ...(critic
      ? {
          critic: {
            optimizer: splitOptimizer(critic.optimizer, `${PREFIX}critic.optim.`, extra),
          },
        }
      : {}),
  };
  if (critic) {
    extra[`${PREFIX}critic.w`] = { dtype: 'float32', shape: [critic.w.length], data: Float32Array.from(critic.w) };
    extra[`${PREFIX}critic.b`] = { dtype: 'float32', shape: [critic.b.length], data: Float32Array.from(critic.b) };
  }
  await saveCheckpoint(path, model, {
    tokenizer: tok,
    metadata: { ...metadata, rlState: JSON.stringify(json) },
    extra,
  });
}

/** Reads what saveRunState wrote: the policy on `device`, its tokenizer, the state and the metadata. */
export async function loadRunState(
  path: string,
  device: E.Device,
): Promise<{ model: GPT; tok: Tokenizer; state: RLState; metadata: Record<string, string> }> {
  const { model, tokenizer, metadata, extra } = await loadCheckpoint(path, { device, extra: PREFIX });
  try {
    if (!tokenizer) throw new Error(`${path}: no tokenizer in its metadata`);
    if (!metadata.rlState)
      throw new Error(`${path}: no run state in its metadata (is it a run's checkpoint.safetensors?)`);
    let json: RLState & { optimizer: never; critic?: never } & Record<string, unknown>;
    try {
      json = JSON.parse(metadata.rlState);
    } catch (e) {
      throw new Error(`${path}: __metadata__.rlState is not JSON: ${(e as Error).message}`, { cause: e });
    }
    const j = json as unknown as {
      optimizer: Parameters<typeof joinOptimizer>[0];
      critic?: { optimizer: Parameters<typeof joinOptimizer>[0] };
    } & RLState;
    const state: RLState = {
      ...j,
      optimizer: joinOptimizer(j.optimizer, `${PREFIX}optim.`, extra, path),
      ...(j.critic
        ? {
            critic: {
              w: extra[`${PREFIX}critic.w`]?.data ?? [],
              b: extra[`${PREFIX}critic.b`]?.data ?? [],
              optimizer: joinOptimizer(j.critic.optimizer, `${PREFIX}critic.optim.`, extra, path),
            },
          }
        : {}),
    };
    if (
      !Number.isInteger(state.step) ||
      state.step < 0 ||
      !Array.isArray(state.steps) ||
      state.steps.length !== state.step
    ) {
      throw new Error(
        `${path}: run state: step ${state.step} does not match its ${state.steps?.length} steps' metrics`,
      );
    }
    return { model, tok: tokenizer, state, metadata };
  } catch (e) {
    model.dispose();
    throw e;
  }
}
