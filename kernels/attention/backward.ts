// The backward without subgroups (P recomputed from q, k and lse, never stored): D = rowsum(dO * O) (one
// thread per row); dQ with one thread per query row walking key tiles; dK and dV with one thread per key row
// walking query tiles (Q, dO, lse and D tiles in workgroup memory), from the first query that sees the
// tile's keys.

import { FLAT_BUILTINS, flatGroup, flatId, grid1d, localId, type Program } from '../program.js';
import { bind, bindIn, header, loopBounds, NEG_INF, ROWS, tileRows, type Dims } from './common.js';

/** D[row] = sum_c dO[row, c] * O[row, c]: one thread per query row. */
export function rowDotProgram(d: Dims, constant: boolean): Program {
  return {
    name: 'attentionBackward:D',
    cacheKey: `attention|D|f32|hs${d.hs}|${constant ? 'const' : 'unif'}`,
    workgroupSize: [ROWS, 1, 1],
    dispatch: grid1d(d.B * d.T, ROWS),
    wgsl: () => `${header(d.hs, bind(['dout', 'out']), bind([], ['D']))}
@compute @workgroup_size(${ROWS})
fn main(${FLAT_BUILTINS}) {
  ${loopBounds(constant, ['hs'])}
  let row = ${flatId(ROWS)};
  if (row >= u_B() * u_T()) { return; }
  var acc = 0.0;
  for (var c = 0u; c < hsn; c++) { acc += vdot(dout[row * HS + c], out[row * HS + c]); }
  D[row] = acc;
}`,
  };
}

/** dQ: one thread per query row, walking key tiles; dq_i = scale * sum_j P_ij (dO_i . V_j - D_i) K_j. */
export function dqProgram(d: Dims, hasBias: boolean, constant: boolean): Program {
  const BK = tileRows(d.hs);
  const bias = hasBias ? 'bias[bbase + j]' : '0.0';
  return {
    name: 'attentionBackward:dq',
    cacheKey: `attention|dq|f32|hs${d.hs}|bk${BK}|${hasBias ? 'bias' : 'nobias'}|${constant ? 'const' : 'unif'}`,
    workgroupSize: [ROWS, 1, 1],
    dispatch: grid1d(d.B * Math.ceil(d.T / ROWS), 1),
    wgsl: () => `${header(d.hs, bindIn(hasBias, ['q', 'k', 'v', 'dout'], ['lse', 'D']), bind(['dq']))}
const BK: u32 = ${BK}u;
var<workgroup> ks: array<VT, BK * HS>;
var<workgroup> vs: array<VT, BK * HS>;
@compute @workgroup_size(${ROWS})
fn main(${FLAT_BUILTINS}) {
  ${loopBounds(constant, ['hs', 'bk'])}
  let g = ${flatGroup()};
  if (g >= u_B() * u_tiles()) { return; }
  let T = u_T();
  let S = u_S();
  let scale = u_scale();
  let lid = ${localId()};
  let b = g / u_tiles();
  let i0 = (g % u_tiles()) * ROWS;
  let i = i0 + lid;
  let inside = i < T;
  let row = b * T + i;
  let lim = S - T + i;
  let kend = S - T + min(i0 + ROWS, T);
  let kvbase = b * u_cap() * HS;
  let bbase = (b / u_per_bias()) * u_cap();
  var qr: array<VT, HS>;
  var dor: array<VT, HS>;
  var acc: array<VT, HS>;
  var L = ${NEG_INF};
  var Di = 0.0;
  if (inside) {
    for (var c = 0u; c < hsn; c++) { qr[c] = q[row * HS + c]; dor[c] = dout[row * HS + c]; }
    L = lse[row];
    Di = D[row];
  }
  let live = inside && !is_neg_inf(L);  // a row that saw no key has no gradient
  for (var j0 = 0u; j0 < kend; j0 += BK) {
    for (var e = lid; e < BK * HS; e += ROWS) {
      var kx = VT(0.0);
      var vx = VT(0.0);
      if (j0 + e / HS < S) { kx = k[kvbase + j0 * HS + e]; vx = v[kvbase + j0 * HS + e]; }
      ks[e] = kx;
      vs[e] = vx;
    }
    workgroupBarrier();
    if (live) {
      for (var jj = 0u; jj < bkn; jj++) {
        let j = j0 + jj;
        if (j <= lim) {
          var sdot = 0.0;
          var pdot = 0.0;
          for (var c = 0u; c < hsn; c++) {
            sdot += vdot(qr[c], ks[jj * HS + c]);
            pdot += vdot(dor[c], vs[jj * HS + c]);
          }
          let p = exp(sdot * scale + ${bias} - L);
          let ds = p * (pdot - Di) * scale;
          for (var c = 0u; c < hsn; c++) { acc[c] += ds * ks[jj * HS + c]; }
        }
      }
    }
    workgroupBarrier();
  }
  if (inside) { for (var c = 0u; c < hsn; c++) { dq[row * HS + c] = acc[c]; } }
}`,
  };
}

/**
 * dK and dV: one thread per key row j, walking query tiles from the first query that sees the workgroup's
 * keys; dv_j = sum_i P_ij dO_i, dk_j = scale * sum_i P_ij (dO_i . V_j - D_i) Q_i.
 */
export function dkvProgram(d: Dims, hasBias: boolean, constant: boolean): Program {
  const BQ = tileRows(d.hs, 2); // Q and dO tiles, plus lse and D per row
  return {
    name: 'attentionBackward:dkv',
    cacheKey: `attention|dkv|f32|hs${d.hs}|bq${BQ}|${hasBias ? 'bias' : 'nobias'}|${constant ? 'const' : 'unif'}`,
    workgroupSize: [ROWS, 1, 1],
    dispatch: grid1d(d.B * Math.ceil(d.S / ROWS), 1),
    wgsl: () => `${header(d.hs, bindIn(hasBias, ['q', 'k', 'v', 'dout'], ['lse', 'D']), bind(['dk', 'dv']))}
const BQ: u32 = ${BQ}u;
var<workgroup> qs: array<VT, BQ * HS>;
var<workgroup> dos: array<VT, BQ * HS>;
var<workgroup> lses: array<f32, BQ>;
var<workgroup> Ds: array<f32, BQ>;
@compute @workgroup_size(${ROWS})
fn main(${FLAT_BUILTINS}) {
  ${loopBounds(constant, ['hs', 'bq'])}
  let g = ${flatGroup()};
  if (g >= u_B() * u_tiles()) { return; }
  let T = u_T();
  let S = u_S();
  let off = S - T;  // query i sees key j iff j <= off + i
  let scale = u_scale();
  let lid = ${localId()};
  let b = g / u_tiles();
  let j0 = (g % u_tiles()) * ROWS;
  let j = j0 + lid;
  let inside = j < S;
  let kvrow = b * S + j;
  let qbase = b * T * HS;
  var kr: array<VT, HS>;
  var vr: array<VT, HS>;
  var dka: array<VT, HS>;
  var dva: array<VT, HS>;
  var bj = 0.0;
  if (inside) {
    for (var c = 0u; c < hsn; c++) { kr[c] = k[kvrow * HS + c]; vr[c] = v[kvrow * HS + c]; }
    ${hasBias ? 'bj = bias[(b / u_per_bias()) * S + j];' : ''}
  }
  // The first query that sees key j0 is j0 - off; start at its tile.
  let istart = select(0u, j0 - off, j0 > off);
  for (var i0 = istart - istart % BQ; i0 < T; i0 += BQ) {
    for (var e = lid; e < BQ * HS; e += ROWS) {
      var qx = VT(0.0);
      var dx = VT(0.0);
      if (i0 + e / HS < T) { qx = q[qbase + i0 * HS + e]; dx = dout[qbase + i0 * HS + e]; }
      qs[e] = qx;
      dos[e] = dx;
    }
    for (var e = lid; e < BQ; e += ROWS) {
      var lx = ${NEG_INF};
      var ddx = 0.0;
      if (i0 + e < T) { lx = lse[b * T + i0 + e]; ddx = D[b * T + i0 + e]; }
      lses[e] = lx;
      Ds[e] = ddx;
    }
    workgroupBarrier();
    if (inside) {
      for (var ii = 0u; ii < bqn; ii++) {
        let i = i0 + ii;
        if (i < T && j <= off + i && !is_neg_inf(lses[ii])) {
          var sdot = 0.0;
          var pdot = 0.0;
          for (var c = 0u; c < hsn; c++) {
            sdot += vdot(qs[ii * HS + c], kr[c]);
            pdot += vdot(dos[ii * HS + c], vr[c]);
          }
          let p = exp(sdot * scale + bj - lses[ii]);
          let ds = p * (pdot - Ds[ii]) * scale;
          for (var c = 0u; c < hsn; c++) {
            dva[c] += p * dos[ii * HS + c];
            dka[c] += ds * qs[ii * HS + c];
          }
        }
      }
    }
    workgroupBarrier();
  }
  if (inside) {
    for (var c = 0u; c < hsn; c++) { dk[kvrow * HS + c] = dka[c]; dv[kvrow * HS + c] = dva[c]; }
  }
}`,
  };
}
