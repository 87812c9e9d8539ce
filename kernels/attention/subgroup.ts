// The subgroup kernels (software adapters with subgroups, lavapipe; see choose.ts): forward (decoding
// too), dQ and dK/dV, a workgroup being one subgroup of 8 rows.
//
// lavapipe runs a subgroup of 8 lanes as SIMD; a storage or workgroup-memory load costs it about as much as 30
// multiply-adds (a loop over the lanes), a subgroupBroadcast almost nothing, and a barrier slows the code
// after it (measured on lavapipe with the kernels bench). The workgroup-memory kernels (tiled.ts, backward.ts)
// do 4 multiply-adds per load (each thread reads every key from workgroup memory). Here a workgroup is one
// subgroup of SG_ROWS = 8 lanes, each lane one row (a query row in the forward and dQ, a key row in dK/dV);
// the other side is walked in blocks of 8 rows, each lane loading one row's vec4 chunk and subgroupBroadcast
// handing it to the others: 8 rows x 4 multiply-adds per load, no workgroup memory, no barrier. The eight
// scores of a block live in two vec4s, so the masks, the exps and the online softmax are vector operations
// without branches; loops have uniform bounds (the block's causal limit), and rows past the end load clamped
// addresses and store nothing. Chunks loaded for the scores are kept in a private array for the accumulation
// that follows (a private array costs a stack access, not a load loop).

import { FLAT_BUILTINS, flatGroup, grid1d, localId, type Program } from '../program.js';
import { bind, bindIn, header, NEG_INF, type Dims } from './common.js';

/** Rows per workgroup (and lanes per subgroup used) in the subgroup kernels. */
export const SG_ROWS = 8;

/** Broadcasts lane t's value of x, for t in [from, from + 4), as the four components' weights: sum_t w[t] * x(t). */
const bcastSum = (w: string, x: string, from: number) =>
  [0, 1, 2, 3].map((t) => `${w}.${'xyzw'[t]} * subgroupBroadcast(${x}, ${from + t}u)`).join(' + ');
/** vec4(dot(a, x(t))) for lanes t in [from, from + 4). */
const bcastDots = (a: string, x: string, from: number) =>
  `vec4<f32>(${[0, 1, 2, 3].map((t) => `vdot(${a}, subgroupBroadcast(${x}, ${from + t}u))`).join(', ')})`;
/** vec4 of lane t's scalar x, for t in [from, from + 4). */
const bcast4 = (x: string, from: number) =>
  `vec4<f32>(${[0, 1, 2, 3].map((t) => `subgroupBroadcast(${x}, ${from + t}u)`).join(', ')})`;

function sgHeader(hs: number, inputs: [string, string][], outputs: [string, string][]): string {
  return `enable subgroups;
${header(hs, inputs, outputs)}
fn not_neg_inf4(x: vec4<f32>) -> vec4<bool> { return bitcast<vec4<u32>>(x) != vec4<u32>(0xff800000u); }
fn hmax4(x: vec4<f32>) -> f32 { return max(max(x.x, x.y), max(x.z, x.w)); }
fn hsum4(x: vec4<f32>) -> f32 { return (x.x + x.y) + (x.z + x.w); }
fn bad_score4(x: vec4<f32>) -> vec4<bool> {
  let u = bitcast<vec4<u32>>(x);
  return ((u & vec4<u32>(0x7fffffffu)) > vec4<u32>(0x7f800000u)) | (u == vec4<u32>(0x7f800000u));
}`;
}

const SG_MAIN = `@compute @workgroup_size(${SG_ROWS})
fn main(${FLAT_BUILTINS}, @builtin(subgroup_invocation_id) sid: u32) {
  let hsn = u_hsv();
  let g = ${flatGroup()};
  if (g >= u_B() * u_tiles()) { return; }  // uniform
  let T = u_T();
  let S = u_S();
  let scale = u_scale();
  let lid = ${localId()};
  let b = g / u_tiles();
  let r0 = (g % u_tiles()) * ${SG_ROWS}u;  // this workgroup's first row (query or key)
  let kvbase = b * u_cap() * HS;
  let bbase = (b / u_per_bias()) * u_cap();`;

export function sgForwardProgram(d: Dims, hasBias: boolean): Program {
  return {
    name: 'attention:sg',
    cacheKey: `attention|fwd-sg|f32|hs${d.hs}|${hasBias ? 'bias' : 'nobias'}`,
    workgroupSize: [SG_ROWS, 1, 1],
    dispatch: grid1d(d.B * Math.ceil(d.T / SG_ROWS), 1),
    wgsl: () => `${sgHeader(d.hs, bindIn(hasBias, ['q', 'k', 'v']), bind(['out'], ['lse']))}
${SG_MAIN}
  let i = r0 + lid;                       // this lane's query row (past T: computed, not stored)
  let lim = S - T + i;                    // the last key it sees
  let kend = S - T + min(r0 + ${SG_ROWS}u, T);  // keys the workgroup sees: [0, kend)
  let qrow = (b * T + min(i, T - 1u)) * HS;
  var qr: array<VT, HS>;
  var o: array<VT, HS>;
  for (var c = 0u; c < hsn; c++) { qr[c] = q[qrow + c]; o[c] = VT(0.0); }
  var m = ${NEG_INF};
  var l = 0.0;
  var bad = false;
  for (var j0 = 0u; j0 < kend; j0 += ${SG_ROWS}u) {
    let kb = kvbase + min(j0 + sid, S - 1u) * HS;  // this lane loads key j0 + sid
    var sa = vec4<f32>(0.0);
    var sb = vec4<f32>(0.0);
    for (var c = 0u; c < hsn; c++) {
      let kc = k[kb + c];
      let qc = qr[c];
      sa += ${bcastDots('qc', 'kc', 0)};
      sb += ${bcastDots('qc', 'kc', 4)};
    }
    ${
      hasBias
        ? `let bj = bias[bbase + min(j0 + sid, S - 1u)];
    let ba = ${bcast4('bj', 0)};
    let bb = ${bcast4('bj', 4)};`
        : 'let ba = vec4<f32>(0.0);\n    let bb = vec4<f32>(0.0);'
    }
    let ja = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u);
    let jb = ja + vec4<u32>(4u);
    let ninf = vec4<f32>(${NEG_INF});
    let xa = select(ninf, sa * scale + ba, ja <= vec4<u32>(lim));
    let xb = select(ninf, sb * scale + bb, jb <= vec4<u32>(lim));
    bad = bad || any(bad_score4(xa)) || any(bad_score4(xb));
    let mt = max(m, max(hmax4(xa), hmax4(xb)));
    let live = !is_neg_inf(mt);
    // Rescale the running state to the new max (exp(-Inf) = 0 when it was empty; nothing when all are masked).
    let alpha = select(1.0, exp(m - mt), live);
    let pa = select(vec4<f32>(0.0), exp(xa - vec4<f32>(mt)), not_neg_inf4(xa) & vec4<bool>(live));
    let pb = select(vec4<f32>(0.0), exp(xb - vec4<f32>(mt)), not_neg_inf4(xb) & vec4<bool>(live));
    l = l * alpha + (hsum4(pa) + hsum4(pb));
    m = mt;
    for (var c = 0u; c < hsn; c++) {
      let vc = v[kb + c];
      o[c] = o[c] * alpha + (${bcastSum('pa', 'vc', 0)}) + (${bcastSum('pb', 'vc', 4)});
    }
  }
  if (i < T) {
    let row = b * T + i;
    let seen = l > 0.0;
    for (var c = 0u; c < hsn; c++) { out[row * HS + c] = rowOut(o[c] / l, seen, bad); }
    lse[row] = rowLse(m + log(l), seen, bad);
  }
}`,
  };
}

/** dQ, one lane per query row: dq_i = scale * sum_j P_ij (dO_i . V_j - D_i) K_j over key blocks of 8. */
export function sgDqProgram(d: Dims, hasBias: boolean): Program {
  return {
    name: 'attentionBackward:dq-sg',
    cacheKey: `attention|dq-sg|f32|hs${d.hs}|${hasBias ? 'bias' : 'nobias'}`,
    workgroupSize: [SG_ROWS, 1, 1],
    dispatch: grid1d(d.B * Math.ceil(d.T / SG_ROWS), 1),
    wgsl: () => `${sgHeader(d.hs, bindIn(hasBias, ['q', 'k', 'v', 'dout'], ['lse', 'D']), bind(['dq']))}
${SG_MAIN}
  let i = r0 + lid;
  let lim = S - T + i;
  let kend = S - T + min(r0 + ${SG_ROWS}u, T);
  let row = b * T + min(i, T - 1u);
  var qr: array<VT, HS>;
  var dor: array<VT, HS>;
  var acc: array<VT, HS>;
  var kst: array<VT, HS>;
  for (var c = 0u; c < hsn; c++) { qr[c] = q[row * HS + c]; dor[c] = dout[row * HS + c]; acc[c] = VT(0.0); }
  let L = lse[row];
  let Di = D[row];
  let live = vec4<bool>(i < T && !is_neg_inf(L));  // a row that saw no key has no gradient
  for (var j0 = 0u; j0 < kend; j0 += ${SG_ROWS}u) {
    let kb = kvbase + min(j0 + sid, S - 1u) * HS;
    var sa = vec4<f32>(0.0);
    var sb = vec4<f32>(0.0);
    var pa = vec4<f32>(0.0);
    var pb = vec4<f32>(0.0);
    for (var c = 0u; c < hsn; c++) {
      let kc = k[kb + c];
      let vc = v[kb + c];
      kst[c] = kc;
      let qc = qr[c];
      let dc = dor[c];
      sa += ${bcastDots('qc', 'kc', 0)};
      sb += ${bcastDots('qc', 'kc', 4)};
      pa += ${bcastDots('dc', 'vc', 0)};
      pb += ${bcastDots('dc', 'vc', 4)};
    }
    ${
      hasBias
        ? `let bj = bias[bbase + min(j0 + sid, S - 1u)];
    let ba = ${bcast4('bj', 0)};
    let bb = ${bcast4('bj', 4)};`
        : 'let ba = vec4<f32>(0.0);\n    let bb = vec4<f32>(0.0);'
    }
    let ja = vec4<u32>(j0) + vec4<u32>(0u, 1u, 2u, 3u);
    let jb = ja + vec4<u32>(4u);
    let xa = sa * scale + ba;
    let xb = sb * scale + bb;
    let wa = select(vec4<f32>(0.0), exp(xa - vec4<f32>(L)), live & (ja <= vec4<u32>(lim)) & not_neg_inf4(xa));
    let wb = select(vec4<f32>(0.0), exp(xb - vec4<f32>(L)), live & (jb <= vec4<u32>(lim)) & not_neg_inf4(xb));
    let dsa = wa * (pa - vec4<f32>(Di)) * scale;
    let dsb = wb * (pb - vec4<f32>(Di)) * scale;
    for (var c = 0u; c < hsn; c++) {
      let kc = kst[c];
      acc[c] += (${bcastSum('dsa', 'kc', 0)}) + (${bcastSum('dsb', 'kc', 4)});
    }
  }
  if (i < T) { for (var c = 0u; c < hsn; c++) { dq[row * HS + c] = acc[c]; } }
}`,
  };
}

/**
 * dK and dV, one lane per key row j, over blocks of 8 query rows from the first query that sees the
 * workgroup's first key: dv_j = sum_i P_ij dO_i, dk_j = scale * sum_i P_ij (dO_i . V_j - D_i) Q_i.
 */
export function sgDkvProgram(d: Dims, hasBias: boolean): Program {
  return {
    name: 'attentionBackward:dkv-sg',
    cacheKey: `attention|dkv-sg|f32|hs${d.hs}|${hasBias ? 'bias' : 'nobias'}`,
    workgroupSize: [SG_ROWS, 1, 1],
    dispatch: grid1d(d.B * Math.ceil(d.S / SG_ROWS), 1),
    wgsl: () => `${sgHeader(d.hs, bindIn(hasBias, ['q', 'k', 'v', 'dout'], ['lse', 'D']), bind(['dk', 'dv']))}
${SG_MAIN}
  let off = S - T;  // query i sees key j iff j <= off + i
  let j = r0 + lid;
  let kvrow = kvbase + min(j, S - 1u) * HS;
  let qbase = b * T;
  var kr: array<VT, HS>;
  var vr: array<VT, HS>;
  var dka: array<VT, HS>;
  var dva: array<VT, HS>;
  var qst: array<VT, HS>;
  var dst: array<VT, HS>;
  for (var c = 0u; c < hsn; c++) { kr[c] = k[kvrow + c]; vr[c] = v[kvrow + c]; dka[c] = VT(0.0); dva[c] = VT(0.0); }
  let bj = ${hasBias ? 'bias[bbase + min(j, S - 1u)]' : '0.0'};
  let inside = vec4<bool>(j < S);
  // The first query that sees key r0.
  let istart = select(0u, r0 - off, r0 > off);
  for (var i0 = istart; i0 < T; i0 += ${SG_ROWS}u) {
    let il = qbase + min(i0 + sid, T - 1u);  // this lane loads query row i0 + sid
    var sa = vec4<f32>(0.0);
    var sb = vec4<f32>(0.0);
    var pa = vec4<f32>(0.0);
    var pb = vec4<f32>(0.0);
    for (var c = 0u; c < hsn; c++) {
      let qc = q[il * HS + c];
      let dc = dout[il * HS + c];
      qst[c] = qc;
      dst[c] = dc;
      let kc = kr[c];
      let vc = vr[c];
      sa += ${bcastDots('kc', 'qc', 0)};
      sb += ${bcastDots('kc', 'qc', 4)};
      pa += ${bcastDots('vc', 'dc', 0)};
      pb += ${bcastDots('vc', 'dc', 4)};
    }
    let Li = lse[il];
    let Dl = D[il];
    let La = ${bcast4('Li', 0)};
    let Lb = ${bcast4('Li', 4)};
    let Da = ${bcast4('Dl', 0)};
    let Db = ${bcast4('Dl', 4)};
    let ia = vec4<u32>(i0) + vec4<u32>(0u, 1u, 2u, 3u);
    let ib = ia + vec4<u32>(4u);
    let xa = sa * scale + vec4<f32>(bj);
    let xb = sb * scale + vec4<f32>(bj);
    // Visible: query in range, key j <= off + i, the query saw some key, the score is not masked.
    let va = inside & (ia < vec4<u32>(T)) & (vec4<u32>(j) <= ia + vec4<u32>(off)) & not_neg_inf4(La) & not_neg_inf4(xa);
    let vb = inside & (ib < vec4<u32>(T)) & (vec4<u32>(j) <= ib + vec4<u32>(off)) & not_neg_inf4(Lb) & not_neg_inf4(xb);
    let wa = select(vec4<f32>(0.0), exp(xa - La), va);
    let wb = select(vec4<f32>(0.0), exp(xb - Lb), vb);
    let dsa = wa * (pa - Da) * scale;
    let dsb = wb * (pb - Db) * scale;
    for (var c = 0u; c < hsn; c++) {
      let qc = qst[c];
      let dc = dst[c];
      dva[c] += (${bcastSum('wa', 'dc', 0)}) + (${bcastSum('wb', 'dc', 4)});
      dka[c] += (${bcastSum('dsa', 'qc', 0)}) + (${bcastSum('dsb', 'qc', 4)});
    }
  }
  if (j < S) {
    for (var c = 0u; c < hsn; c++) { dk[kvrow + c] = dka[c]; dv[kvrow + c] = dva[c]; }
  }
}`,
  };
}
