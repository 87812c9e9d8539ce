// Errors a kernel finds, reported as the CPU reports them. A GPU cannot throw: a kernel that finds bad
// input (a target out of range) or, in checkNumerics mode, a non-finite output writes the first such
// check's id into a small status buffer; the next read of any tensor waits for it and throws the check's
// error, naming the op. Not the kernels themselves (targetlogprob.ts flags its targets).

import type { DType } from '../engine/index.js';
import { declareBindings, FLAT_BUILTINS, flatId, grid1d, Uniforms, type Program } from './program.js';
import type { GpuHandle } from './pool.js';

/** No check failed. */
const NONE = 0xffffffff;

/**
 * The status words: [0] the lowest failing check id, [1] kind bits of what it found (NaN 1, +Inf 2,
 * -Inf 4), [2] the lowest flat index it flagged, [3] the largest detail value (a bad target).
 */
export const STATUS_WORDS = 4;
export const STATUS_BYTES = 4 * STATUS_WORDS;

/**
 * WGSL: `status_flag(id, index, kind, detail)` records a failed check unless an earlier dispatch (a
 * lower id) already failed. The kernel declares `status` as array<atomic<u32>>.
 */
export const STATUS_WGSL = `
fn status_flag(id: u32, index: u32, kind: u32, detail: u32) {
  if (atomicLoad(&status[0]) < id) { return; }
  atomicMin(&status[0], id);
  atomicOr(&status[1], kind);
  atomicMin(&status[2], index);
  atomicMax(&status[3], detail);
}`;

/** What a failed check says, from the status words. */
type Describe = (kind: number, index: number, detail: number) => string;

/** The device's status buffer and the checks dispatched since the last read. */
export class DeviceStatus {
  readonly handle: GpuHandle;
  private readonly checks: Describe[] = [];

  constructor(private readonly device: GPUDevice) {
    const buffer = device.createBuffer({
      size: STATUS_BYTES,
      usage: 0x80 | 0x04 | 0x08 /* STORAGE, COPY_SRC, COPY_DST */,
      label: 'status',
    });
    this.handle = { buffer, byteSize: STATUS_BYTES, released: false };
    this.reset();
  }

  /** Whether some check was dispatched since the last read (that read must look at the status). */
  get pending(): boolean {
    return this.checks.length > 0;
  }

  /** A new check's id, for a kernel's uniforms; `describe` words its error. */
  register(describe: Describe): number {
    this.checks.push(describe);
    return this.checks.length - 1;
  }

  /** The status words as read back (by the backend's read): throws the first failed check's error. */
  settle(words: Uint32Array): void {
    const checks = this.checks.splice(0);
    if (words[0] === NONE) return;
    this.reset();
    const describe = checks[words[0]];
    throw new Error(
      describe ? describe(words[1], words[2], words[3]) : `webgpu: a kernel flagged unknown check ${words[0]}`,
    );
  }

  private reset(): void {
    this.device.queue.writeBuffer(this.handle.buffer, 0, Uint32Array.from([NONE, 0, NONE, 0]));
  }
}

const WG = 256;
const uniforms = new Uniforms([
  ['n', 'u32'],
  ['check', 'u32'],
]);

/** Flags the first non-finite element of a float32 buffer of n elements (checkNumerics mode). */
export function finiteCheckProgram(): Program {
  return {
    name: 'checkNumerics',
    cacheKey: 'checkNumerics',
    workgroupSize: [WG, 1, 1],
    dispatch: [1, 1, 1], // set per call
    wgsl: () => `${uniforms.wgsl}
${declareBindings([['x', 'u32']], [['status', 'atomic<u32>']])}
${STATUS_WGSL}
@compute @workgroup_size(${WG})
fn main(${FLAT_BUILTINS}) {
  let i = ${flatId(WG)};
  if (i >= u_n()) { return; }
  // Exponent bits all set: Inf or NaN, read from the bits (a compiler may assume floats are finite).
  let b = x[i];
  if ((b & 0x7f800000u) != 0x7f800000u) { return; }
  let kind = select(select(4u, 2u, (b & 0x80000000u) == 0u), 1u, (b & 0x007fffffu) != 0u);
  status_flag(u_check(), i, kind, 0u);
}`,
  };
}

/** The dispatch of the finite check over n elements, with its uniforms. */
export function finiteCheck(n: number, check: number): { program: Program; uniforms: Uint32Array } {
  return { program: { ...finiteCheckProgram(), dispatch: grid1d(n, WG) }, uniforms: uniforms.pack({ n, check }) };
}

/** How a checkNumerics failure reads, as the CPU backend words it. */
export function numericsMessage(op: string, shape: readonly number[], dtype: DType): Describe {
  return (kind, index) => {
    const what = kind === 1 ? 'NaN' : kind === 2 ? 'Infinity' : kind === 4 ? '-Infinity' : 'NaN or Inf';
    return (
      `checkNumerics: op '${op}' produced ${what} at flat index ${index} of its output ` +
      `[${shape.join(', ')}] ${dtype}`
    );
  };
}
