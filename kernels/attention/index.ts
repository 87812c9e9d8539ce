// Causal scaled-dot-product attention, flash style (FusedKernels.attention, attentionBackward), as WGSL
// kernels that never hold a T x S matrix: memory is O(T * hs) per head. Not the composed form
// (engine/fused.ts) and not multi-head plumbing (the model reshapes heads into the batch axes).
//
// This folder: common.ts (shape checks, sizes, WGSL header), choose.ts (which family runs, from the adapter
// and the backend's options), tiled.ts and decode.ts (forward), backward.ts (D, dQ, dK/dV), subgroup.ts
// (the subgroup kernels, forward and backward). This file dispatches them.
//
// Conventions as engine/backend.ts: q [..., T, hs], k and v [..., S, hs], query i at key position
// S - T + i; keyBias [B0, S] is added to the scores of batch row b0 = b / (B / B0); a query row that sees
// no key gets out 0 and lse -Infinity, and no gradient. With kvLen (forward only), k, v and keyBias are
// buffers of capacity cap per batch row and only their first S = kvLen rows are read (a KV cache written
// in place): the uniform `cap` is the row stride, S the keys attended. The shape class (cache key) is the
// head size hs, a compile-time constant (rows are vec4s when hs is a multiple of 4), the tile sizes it
// implies, keyBias or not, and whether loops have constant bounds (see choose.ts).
//
// Forward, tiled: a workgroup of ROWS = 64 threads owns 64 query rows of one (batch, head), one thread per
// row (its q row and output accumulator private to the thread); it walks the key tiles up to the causal limit,
// loading BK keys and values into workgroup memory per step, and keeps an online softmax (running max and
// sum, rescaling the accumulator once per tile). It writes out and the row's logsumexp.
// Forward, decode (T <= DECODE_MAX_T, e.g. one new token against a KV cache; without the subgroup kernels):
// one workgroup per query row, its threads split the S keys, each with its own online softmax; the partial
// states merge in workgroup memory (one barrier), deterministically.
// Backward (P recomputed from q, k and lse, never stored): D = rowsum(dO * O) (one thread per row); dQ with
// one thread per query row walking key tiles; dK and dV with one thread per key row walking query tiles
// (Q, dO, lse and D tiles in workgroup memory), from the first query that sees the tile's keys.
// On software adapters with subgroups (lavapipe), the forward (decoding too), dQ and dK/dV take the subgroup kernels
// in subgroup.ts instead: a workgroup is one subgroup of 8 rows, and the other side's rows are
// shared by subgroupBroadcast rather than workgroup memory (on lavapipe at B*H = 8, T = 256, hs = 64: about
// 6x faster, forward and backward).

import type { View } from '../../engine/index.js';
import type { KernelContext } from '../context.js';
import type { GpuHandle } from '../pool.js';
import { rowDotProgram, dkvProgram, dqProgram } from './backward.js';
import { attentionKernels } from './choose.js';
import { DECODE_MAX_T, dimsOf, handle, ROWS, sizes, uniforms } from './common.js';
import { decodeProgram } from './decode.js';
import { SG_ROWS, sgDkvProgram, sgDqProgram, sgForwardProgram } from './subgroup.js';
import { forwardProgram } from './tiled.js';

export { DECODE_MAX_T } from './common.js';
export { attentionKernels, chooseAttentionKernels, type AttentionKernels, type AttentionOptions } from './choose.js';

export function attention(
  backend: KernelContext,
  q: View,
  k: View,
  v: View,
  scale: number,
  keyBias?: View,
  kvLen?: number,
): { out: GpuHandle; lse: GpuHandle } {
  const d = dimsOf('attention', q, k, v, keyBias, kvLen);
  const out = backend.alloc(d.B * d.T * d.hs, q.dtype, 'attention');
  const lse = backend.alloc(d.B * d.T, q.dtype, 'attention');
  if (d.B * d.T === 0) return { out, lse };
  // With subgroups (lavapipe) the subgroup kernel serves decoding too: at B*H = 32, hs = 16, T = 1 it ran
  // 2-2.5x faster than the decode kernel's barrier and workgroup-memory merge (S = 80 to 512), 6-25x at T = 4-16.
  const { subgroups: sg, constantLoops: constant } = attentionKernels(backend);
  const decode = d.T <= DECODE_MAX_T && !sg;
  const program = decode
    ? decodeProgram(d, !!keyBias, constant)
    : sg
      ? sgForwardProgram(d, !!keyBias)
      : forwardProgram(d, !!keyBias, constant);
  const tiles = Math.ceil(d.T / (sg ? SG_ROWS : ROWS));
  const inputs = [q, k, v, ...(keyBias ? [keyBias] : [])].map(handle);
  backend.dispatch(
    program,
    inputs,
    [out, lse],
    uniforms.pack({ B: d.B, T: d.T, S: d.S, cap: d.cap, tiles, per_bias: d.perBias, scale, ...sizes(d) }),
  );
  return { out, lse };
}

export function attentionBackward(
  backend: KernelContext,
  q: View,
  k: View,
  v: View,
  out: View,
  lse: View,
  dout: View,
  scale: number,
  keyBias?: View,
): { dq: GpuHandle; dk: GpuHandle; dv: GpuHandle } {
  const d = dimsOf('attentionBackward', q, k, v, keyBias);
  const dq = backend.alloc(d.B * d.T * d.hs, q.dtype, 'attentionBackward');
  // With no query rows, no query sees any key: the key gradients are zero.
  if (d.T === 0)
    return {
      dq,
      dk: backend.fill(k.shape, k.dtype, 0) as GpuHandle,
      dv: backend.fill(v.shape, v.dtype, 0) as GpuHandle,
    };
  const dk = backend.alloc(d.B * d.S * d.hs, q.dtype, 'attentionBackward');
  const dv = backend.alloc(d.B * d.S * d.hs, q.dtype, 'attentionBackward');
  if (d.B * d.S * d.hs === 0) return { dq, dk, dv };
  const bias = keyBias ? [handle(keyBias)] : [];
  const pack = (tiles: number) =>
    uniforms.pack({ B: d.B, T: d.T, S: d.S, cap: d.S, tiles, per_bias: d.perBias, scale, ...sizes(d) });
  const D = backend.alloc(d.B * d.T, q.dtype, 'attentionBackward');
  const { subgroups: sg, constantLoops: constant } = attentionKernels(backend);
  backend.dispatch(rowDotProgram(d, constant), [handle(dout), handle(out)], [D], pack(0));
  const rowsPer = sg ? SG_ROWS : ROWS;
  const qTiles = Math.ceil(d.T / rowsPer);
  const dqP = sg ? sgDqProgram(d, !!keyBias) : dqProgram(d, !!keyBias, constant);
  backend.dispatch(dqP, [q, k, v, dout, lse].map(handle).concat([D], bias), [dq], pack(qTiles));
  const kTiles = Math.ceil(d.S / rowsPer);
  const dkvP = sg ? sgDkvProgram(d, !!keyBias) : dkvProgram(d, !!keyBias, constant);
  backend.dispatch(dkvP, [q, k, v, dout, lse].map(handle).concat([D], bias), [dk, dv], pack(kTiles));
  backend.free(D);
  return { dq, dk, dv };
}
