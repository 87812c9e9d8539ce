// Which attention kernels run: a pure function of the adapter and of the backend's options
// (WebGPUBackendOptions.attention), so that tests force a family through the backend, not a global.

import type { KernelContext } from '../context.js';
import { canUseSubgroups } from '../features.js';

/** The backend option `attention`: each choice 'auto' (by the adapter) or forced. */
export interface AttentionOptions {
  /**
   * Loop bounds over the head size and the tiles: compile-time constants (true: the compiler unrolls the
   * loops and keeps each thread's rows in registers) or uniforms (false). 'auto': constants on hardware
   * adapters; uniforms on software adapters, where lavapipe takes minutes to compile the unrolled kernels
   * (hs = 64: over 300 s for the forward alone) and about a second with the loops kept.
   */
  constantLoops: 'auto' | boolean;
  /**
   * The subgroup kernels (subgroup.ts) for the tiled forward, decoding and the backward. 'auto': on software
   * adapters with usable subgroups, where they were measured (lavapipe: about 6x faster); true throws
   * where subgroups are not usable.
   */
  subgroups: 'auto' | boolean;
}

/** The defaults: both choices by the adapter. */
export const DEFAULT_ATTENTION_OPTIONS: Readonly<AttentionOptions> = { constantLoops: 'auto', subgroups: 'auto' };

/** What chooseAttentionKernels decided. */
export interface AttentionKernels {
  constantLoops: boolean;
  subgroups: boolean;
}

/**
 * The attention kernel families for an adapter: `adapter.architecture` ('software' for lavapipe and other
 * CPU drivers), `subgroupsUsable` (the 'subgroups' feature with subgroups of at least 8 lanes, see
 * features.ts) and the backend's `options`. Pure; throws, naming the feature, when options force the
 * subgroup kernels where subgroups are not usable.
 */
export function chooseAttentionKernels(
  adapter: { readonly architecture: string },
  subgroupsUsable: boolean,
  options: Readonly<AttentionOptions>,
): AttentionKernels {
  const software = adapter.architecture === 'software';
  const constantLoops = options.constantLoops === 'auto' ? !software : options.constantLoops;
  const subgroups = options.subgroups === 'auto' ? software && subgroupsUsable : options.subgroups;
  if (subgroups && !subgroupsUsable)
    throw new Error(
      "attention: the subgroup kernels need the adapter feature 'subgroups' with subgroups of at least 8 lanes",
    );
  return { constantLoops, subgroups };
}

/** chooseAttentionKernels for a backend: its adapter, its device's subgroups and its options. */
export const attentionKernels = (ctx: KernelContext): AttentionKernels =>
  chooseAttentionKernels(ctx.adapter, canUseSubgroups(ctx), ctx.options.attention);
