// What a benchmark suite is (a module with a name and a run function returning rows), and how a row is
// timed: compare() (ours and a peer in one tinybench run, after checking they agree), timeJobs(), measuredOf().
// Suites live in bench/suites/; the command line and the report are in main.ts and report.ts.

import { Bench } from 'tinybench';

/** The napkin-math unit of a case: useful work per second. */
export type Unit = 'GFLOP/s' | 'GB/s' | 'tokens/s' | 'rewards/s' | 'ops/s';

/** Work per second at a median of `ms` milliseconds, in `unit` (GFLOP/s and GB/s count in units of 1e9). */
export function rateOf(unit: Unit, work: number, ms: number): number {
  const perSecond = (work * 1000) / ms;
  return unit === 'GFLOP/s' || unit === 'GB/s' ? perSecond / 1e9 : perSecond;
}

/** One side of a case. */
export interface Timing {
  /** Median wall time of one call, in milliseconds. */
  medianMs: number;
  /** Work per second at the median, in the row's unit. */
  rate: number;
  /** Measured calls (warm-up excluded). */
  samples: number;
  /** Median absolute deviation over the median, in percent: how much the samples spread. */
  spreadPct: number;
}

export interface Row {
  case: string;
  /** The operands, e.g. "[64,128]@[128,512]". */
  shape: string;
  unit: Unit;
  /** FLOPs or bytes per call, whichever the unit counts. */
  work: number;
  ours: Timing;
  /** null where a suite has no peer for the case. */
  peer: (Timing & { name: string }) | null;
  /** peer median / our median: above 1, ours is faster. */
  ratio: number | null;
  /** A second napkin figure at the same medians, e.g. GFLOP/s beside tokens/s. */
  also?: { unit: Unit; work: number; ours: number; peer: number | null };
  /** What the case includes, a derived figure (microseconds per op), a caveat. */
  note?: string;
  /** Places the row in series of growing sizes (one row may sit in two); the report's "How cost grows" reads them. */
  growth?: Growth[];
  /** Calls each timed sample queues before its one readback (medians are per call), where more than one. */
  calls?: { ours: number; peer: number | null };
  /** Median GPU time of one call from timestamp queries (compute passes only), where the adapter has them. */
  gpuMs?: { ours: number | null; peer: number | null };
}

/** One point of a scaling series: rows of a series are listed in order of growing size. */
export interface Growth {
  series: string;
  /** The size that grows (tokens, turns, rewards): the report divides neighbours' sizes and times. */
  size: number;
}

export interface SuiteOptions {
  /** Fewer and shorter samples: a smoke run that finishes fast, not a measurement to quote. */
  quick: boolean;
  /**
   * 'default': sizes a laptop or lavapipe finishes in minutes. 'gpu': the kernels suite adds sizes a
   * data-centre GPU needs before kernel time outweighs launch and readback latency (bench/README.md).
   */
  sizes: 'default' | 'gpu';
  /** Progress, one line at a time (stderr, so stdout stays the report). */
  log: (line: string) => void;
  /** A line for the suite's notes in the report (adapter used, cases skipped and why). */
  note: (line: string) => void;
}

/** A suite module: bench/suites/NAME.ts exports these two, and bench/registry.ts lists it. */
export interface SuiteModule {
  readonly name: string;
  run(opts: SuiteOptions): Promise<Row[]>;
}

/** A timed function. It must do the whole job, reading the result back, and return what it read. */
export type Job = () => unknown;

export interface Case {
  case: string;
  shape: string;
  unit: Unit;
  work: number;
  ours: Job;
  peer?: PeerJob;
  /**
   * Before timing, one call of each must agree: max |ours - peer| <= tol * max(1, max |peer|).
   * Default 1e-4; null skips the check (results that are not arrays of numbers).
   */
  tol?: number | null;
  also?: { unit: Unit; work: number };
  note?: string;
  growth?: Growth[];
  budget?: Budget;
  /** Calls `ours` makes per sample (it reads back once, after the last): its median is divided by this. */
  calls?: number;
}

/** A peer's side of a case. */
export interface PeerJob {
  name: string;
  fn: Job;
  /**
   * Untimed set-up run before the peer's first call and before each of its tinybench phases (warm-up,
   * samples): tf.setBackend, where peers on several tfjs backends share tfjs-core's one engine.
   */
  select?: () => unknown;
  /** Calls `fn` makes per sample, as Case.calls. */
  calls?: number;
}

/**
 * Overrides of the time budget of a full run, for slow cases: `time` (ms) a task samples at least, and
 * `iterations`, the fewest samples (also the cap of a --quick run's 3). Fewer than 10 iterations also
 * cut the warm-up to one call.
 */
export interface Budget {
  time?: number;
  iterations?: number;
}

/**
 * Time budgets. tinybench samples a task until both its time and its iteration minimums are met, after
 * a warm-up whose samples it discards. Ten samples bound a slow case (seconds per call); the time budget
 * gives fast ones hundreds. --quick skips the warm-up (compare's first call, the check, warms up once).
 */
function budget(quick: boolean, b: Budget = {}) {
  const iterations = b.iterations ?? 10;
  return quick
    ? { time: 50, iterations: Math.min(3, iterations), warmup: false }
    : { time: b.time ?? 1000, iterations, warmupTime: 200, warmupIterations: iterations < 10 ? 1 : 2 };
}

function maxDiff(ours: unknown, peer: unknown): { diff: number; scale: number } {
  const a = ours as ArrayLike<number>;
  const b = peer as ArrayLike<number>;
  if (typeof a?.length !== 'number' || a.length !== b?.length) {
    throw new Error(
      `results are not arrays of equal length (ours ${a?.length}, peer ${b?.length}); pass tol: null to skip the check`,
    );
  }
  let diff = 0;
  let scale = 1;
  // Math.max propagates NaN, and a NaN diff fails the check.
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return { diff, scale };
}

/** Throws unless max |ours - peer| <= tol * max(1, max |peer|) (NaN anywhere fails). */
export function checkAgree(what: string, ours: unknown, peer: unknown, tol = 1e-4): void {
  const { diff, scale } = maxDiff(ours, peer);
  if (!(diff <= tol * scale)) throw new Error(`${what} disagree: max |diff| ${diff} > ${tol} * ${scale}`);
}

/** Calls ours and the peer once and checks they agree, then times both in one tinybench run. */
export async function compare(c: Case, opts: SuiteOptions): Promise<Row> {
  const { peer, ...rest } = c;
  return (await comparePeers(rest, peer ? [peer] : [], opts))[0];
}

/**
 * compare() with several peers: ours and every peer in one tinybench run, after checking that each peer
 * agrees with ours. One row per peer, in the order given (one row with no peer when none is given); ours
 * is timed once, so its figures repeat on each of the rows.
 */
export async function comparePeers(
  c: Omit<Case, 'peer'>,
  peers: readonly PeerJob[],
  opts: SuiteOptions,
): Promise<Row[]> {
  opts.log(`  ${c.case} ${c.shape}${peers.length > 1 ? ` (${peers.length} peers)` : ''}`);
  // The first call also tells a job that returns a Promise (WebGPU: await t.data()) from a synchronous one.
  const first = c.ours();
  const oursOut = await first;
  const tol = c.tol === undefined ? 1e-4 : c.tol;
  const jobs: Record<string, TimedJob> = { ours: { fn: c.ours, async: first instanceof Promise } };
  for (const [i, p] of peers.entries()) {
    await p.select?.();
    const peerFirst = p.fn();
    const peerOut = await peerFirst;
    if (tol !== null) checkAgree(`${c.case} ${c.shape}: ours and ${p.name}`, oursOut, peerOut, tol);
    jobs[`peer${i}`] = { fn: p.fn, async: peerFirst instanceof Promise, ...(p.select ? { beforeAll: p.select } : {}) };
  }
  const t = await timeJobs(c.case, jobs, opts, c.budget);
  const ours = perCall(t.ours, c.calls);
  const withCalls = (row: Row, peerCalls: number | null) => {
    if ((c.calls ?? 1) > 1 || (peerCalls ?? 1) > 1) row.calls = { ours: c.calls ?? 1, peer: peerCalls };
    return row;
  };
  if (peers.length === 0) return [withCalls(makeRow(c, ours, null), null)];
  return peers.map((p, i) =>
    withCalls(makeRow(c, ours, { name: p.name, ...perCall(t[`peer${i}`], p.calls) }), p.calls ?? 1),
  );
}

/** A sample's figures for one of the `calls` calls it made (the spread, a ratio, stays). */
function perCall(m: Measured, calls = 1): Measured {
  return { ...m, medianMs: m.medianMs / calls };
}

/** Median, sample count and spread of a task, before any unit is applied. */
export interface Measured {
  medianMs: number;
  samples: number;
  spreadPct: number;
}

/**
 * A job for timeJobs: whether it returns a Promise, set-up before every call that is not timed, and set-up
 * before each phase (warm-up, samples) of the job, not timed either.
 */
export interface TimedJob {
  fn: Job;
  async: boolean;
  beforeEach?: () => Promise<void> | void;
  beforeAll?: () => unknown;
}

/**
 * Times several jobs in one tinybench run (each already called once: tinybench needs to know which return
 * a Promise). For suites whose rows are not one-to-one with a timed pair; compare() is built on it.
 */
export async function timeJobs(
  label: string,
  jobs: Record<string, TimedJob>,
  opts: SuiteOptions,
  b?: Budget,
): Promise<Record<string, Measured>> {
  const bench = new Bench({ name: label, throws: true, ...budget(opts.quick, b) });
  for (const [name, j] of Object.entries(jobs)) {
    const before = j.beforeAll;
    bench.add(name, j.fn, {
      async: j.async,
      ...(j.beforeEach ? { beforeEach: j.beforeEach } : {}),
      ...(before ? { beforeAll: async () => void (await before()) } : {}),
    });
  }
  await bench.run();
  const out: Record<string, Measured> = {};
  for (const name of Object.keys(jobs)) {
    const r = bench.getTask(name)!.result;
    if (r.state !== 'completed') throw new Error(`${label}: task '${name}' ended in state '${r.state}'`);
    const med = r.latency.p50;
    out[name] = { medianMs: med, samples: r.latency.samplesCount, spreadPct: (100 * r.latency.mad) / med };
  }
  return out;
}

/** Median and spread of samples timed by hand (a job too slow, or too stateful, for tinybench). */
export function measuredOf(samplesMs: readonly number[]): Measured {
  if (samplesMs.length === 0) throw new Error('measuredOf: no samples');
  const median = (xs: readonly number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  };
  const med = median(samplesMs);
  return {
    medianMs: med,
    samples: samplesMs.length,
    spreadPct: (100 * median(samplesMs.map((x) => Math.abs(x - med)))) / med,
  };
}

/** A report row from measured medians: rates in the case's units, the ratio, and the extras. */
export function makeRow(
  c: Pick<Case, 'case' | 'shape' | 'unit' | 'work' | 'also' | 'note' | 'growth'>,
  ours: Measured,
  peer: (Measured & { name: string }) | null,
): Row {
  const timing = (m: Measured): Timing => ({
    medianMs: m.medianMs,
    rate: rateOf(c.unit, c.work, m.medianMs),
    samples: m.samples,
    spreadPct: m.spreadPct,
  });
  const row: Row = {
    case: c.case,
    shape: c.shape,
    unit: c.unit,
    work: c.work,
    ours: timing(ours),
    peer: peer ? { name: peer.name, ...timing(peer) } : null,
    ratio: peer ? peer.medianMs / ours.medianMs : null,
  };
  if (c.also)
    row.also = {
      ...c.also,
      ours: rateOf(c.also.unit, c.also.work, ours.medianMs),
      peer: peer ? rateOf(c.also.unit, c.also.work, peer.medianMs) : null,
    };
  if (c.note) row.note = c.note;
  if (c.growth) row.growth = c.growth;
  return row;
}
