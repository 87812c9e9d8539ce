// The checks every op makes of its inputs before a backend sees them, in one place: one device, one
// dtype where the op needs it, floats where it computes. Each error names the op and what it was given.

import { isFloat } from './dtype.js';
import { fmt } from './shape.js';
import type { Tensor } from './tensor.js';

/** All tensors on one device (a backend's kernel cannot read another backend's storage). */
export function sameDevice(op: string, ...ts: Tensor[]): void {
  const d = ts[0].device;
  for (const t of ts) {
    if (t.device !== d)
      throw new Error(
        `${op}: tensors are on different devices (${ts.map((x) => x.device).join(', ')}); move them to ` +
          `one device first`,
      );
  }
}

export function sameDType(op: string, a: Tensor, b: Tensor): void {
  if (a.dtype !== b.dtype)
    throw new Error(
      `${op}: dtypes differ (${a.dtype} ${fmt(a.shape)} vs ${b.dtype} ${fmt(b.shape)}); cast one with .to(dtype)`,
    );
}

export function requireFloat(op: string, t: Tensor): void {
  if (!isFloat(t.dtype))
    throw new Error(`${op}: expected a float tensor (float32 or float64), got ${t.dtype} ${fmt(t.shape)}`);
}
