// The fused AdamW step (FusedKernels.adamw) as one WGSL kernel: param, m and v updated in place, one
// thread per element. Not the optimizer's bookkeeping (engine/optim.ts: state, step count, which params).
//
// The update is engine/cpu/fused.ts's, term for term: m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p = p (1 - lr wd) - lr (m / bc1) / (sqrt(v / bc2) + eps), with bc = 1 - beta^step computed in float64 on
// the host and passed as float32 uniforms. Param, m and v are each bound once, read-write (in place).

import type { AdamWParams, View } from '../engine/index.js';
import { sizeOf } from '../engine/index.js';
import type { KernelContext } from './context.js';
import type { GpuHandle } from './pool.js';
import { declareBindings, FLAT_BUILTINS, flatId, grid1d, Uniforms, wgslType, type Program } from './program.js';

const WG = 128;

const uniforms = new Uniforms([
  ['n', 'u32'],
  ['lr', 'f32'],
  ['beta1', 'f32'],
  ['one_minus_beta1', 'f32'],
  ['beta2', 'f32'],
  ['one_minus_beta2', 'f32'],
  ['eps', 'f32'],
  ['decay', 'f32'],
  ['bc1', 'f32'],
  ['bc2', 'f32'],
]);

const program = (n: number): Program => ({
  name: 'adamw',
  cacheKey: 'adamw|f32',
  workgroupSize: [WG, 1, 1],
  dispatch: grid1d(n, WG),
  wgsl: () => `${uniforms.wgsl}
${declareBindings(
  [['grad', 'f32']],
  [
    ['param', 'f32'],
    ['m', 'f32'],
    ['v', 'f32'],
  ],
)}
@compute @workgroup_size(${WG})
fn main(${FLAT_BUILTINS}) {
  let i = ${flatId(WG)};
  if (i >= u_n()) { return; }
  let g = grad[i];
  let mi = u_beta1() * m[i] + u_one_minus_beta1() * g;
  let vi = u_beta2() * v[i] + u_one_minus_beta2() * g * g;
  m[i] = mi;
  v[i] = vi;
  let p = param[i] * u_decay();
  param[i] = p - (u_lr() * (mi / u_bc1())) / (sqrt(vi / u_bc2()) + u_eps());
}`,
});

/** One AdamW step on param, m and v in place. */
export function adamw(backend: KernelContext, param: View, grad: View, m: View, v: View, hp: AdamWParams): void {
  for (const [name, t] of [
    ['param', param],
    ['grad', grad],
    ['m', m],
    ['v', v],
  ] as const)
    wgslType(t.dtype, `adamw (${name})`);
  const n = sizeOf(param.shape);
  for (const [name, t] of [
    ['grad', grad],
    ['m', m],
    ['v', v],
  ] as const) {
    if (sizeOf(t.shape) !== n) throw new Error(`adamw: ${name} [${t.shape}] does not match param [${param.shape}]`);
  }
  if (n === 0) return;
  const { lr, beta1, beta2, eps, weightDecay, step } = hp;
  backend.dispatch(
    program(n),
    [grad.handle as GpuHandle],
    [param.handle as GpuHandle, m.handle as GpuHandle, v.handle as GpuHandle],
    uniforms.pack({
      n,
      lr,
      beta1,
      one_minus_beta1: 1 - beta1,
      beta2,
      one_minus_beta2: 1 - beta2,
      eps,
      decay: 1 - lr * weightDecay,
      bc1: 1 - beta1 ** step,
      bc2: 1 - beta2 ** step,
    }),
  );
}
