// The tiled forward (no subgroups): a workgroup of ROWS = 64 threads owns 64 query rows of one (batch,
// head), one thread per row (its q row and output accumulator private to the thread); it walks the key tiles
// up to the causal limit, loading BK keys and values into workgroup memory per step, and keeps an online
// softmax (running max and sum, rescaling the accumulator once per tile). It writes out and the row's logsumexp.

import { FLAT_BUILTINS, flatGroup, grid1d, localId, type Program } from '../program.js';
import { bind, bindIn, header, loopBounds, NEG_INF, ROWS, tileRows, type Dims } from './common.js';

export function forwardProgram(d: Dims, hasBias: boolean, constant: boolean): Program {
  const BK = tileRows(d.hs);
  const bias = hasBias ? 'bias[bbase + j]' : '0.0';
  return {
    name: 'attention',
    cacheKey: `attention|fwd|f32|hs${d.hs}|bk${BK}|${hasBias ? 'bias' : 'nobias'}|${constant ? 'const' : 'unif'}`,
    workgroupSize: [ROWS, 1, 1],
    dispatch: grid1d(d.B * Math.ceil(d.T / ROWS), 1),
    wgsl: () => `${header(d.hs, bindIn(hasBias, ['q', 'k', 'v']), bind(['out'], ['lse']))}
const BK: u32 = ${BK}u;
var<workgroup> ks: array<VT, BK * HS>;
var<workgroup> vs: array<VT, BK * HS>;
@compute @workgroup_size(${ROWS})
fn main(${FLAT_BUILTINS}) {
  ${loopBounds(constant, ['hs', 'bk'])}
  let g = ${flatGroup()};
  if (g >= u_B() * u_tiles()) { return; }  // uniform
  let T = u_T();
  let S = u_S();
  let scale = u_scale();
  let lid = ${localId()};
  let b = g / u_tiles();
  let i0 = (g % u_tiles()) * ROWS;
  let i = i0 + lid;
  let inside = i < T;
  let lim = S - T + i;                  // the last key row i sees
  let kend = S - T + min(i0 + ROWS, T); // keys any row of the tile sees: [0, kend)
  let kvbase = b * u_cap() * HS;
  let bbase = (b / u_per_bias()) * u_cap();
  var qr: array<VT, HS>;
  var o: array<VT, HS>;
  if (inside) { for (var c = 0u; c < hsn; c++) { qr[c] = q[(b * T + i) * HS + c]; } }
  var m = ${NEG_INF};
  var l = 0.0;
  var bad = false;
  for (var j0 = 0u; j0 < kend; j0 += BK) {
    for (var e = lid; e < BK * HS; e += ROWS) {
      var kx = VT(0.0);
      var vx = VT(0.0);
      if (j0 + e / HS < S) { kx = k[kvbase + j0 * HS + e]; vx = v[kvbase + j0 * HS + e]; }
      ks[e] = kx;
      vs[e] = vx;
    }
    workgroupBarrier();
    if (inside) {
      var sc: array<f32, BK>;
      var mt = m;
      for (var jj = 0u; jj < bkn; jj++) {
        let j = j0 + jj;
        var s = ${NEG_INF};
        if (j <= lim) {
          var sdot = 0.0;
          for (var c = 0u; c < hsn; c++) { sdot += vdot(qr[c], ks[jj * HS + c]); }
          s = sdot * scale + ${bias};
          bad = bad || bad_score(s);
        }
        sc[jj] = s;
        mt = max(mt, s);
      }
      if (!is_neg_inf(mt)) {
        // Rescale the running state to the new max once per tile (exp(-Inf) = 0 when it was empty).
        let alpha = exp(m - mt);
        l *= alpha;
        for (var c = 0u; c < hsn; c++) { o[c] *= alpha; }
        for (var jj = 0u; jj < bkn; jj++) {
          if (!is_neg_inf(sc[jj])) {
            let p = exp(sc[jj] - mt);
            l += p;
            for (var c = 0u; c < hsn; c++) { o[c] += p * vs[jj * HS + c]; }
          }
        }
        m = mt;
      }
    }
    workgroupBarrier();
  }
  if (inside) {
    let row = b * T + i;
    let seen = l > 0.0;
    for (var c = 0u; c < hsn; c++) { out[row * HS + c] = rowOut(o[c] / l, seen, bad); }
    lse[row] = rowLse(m + log(l), seen, bad);
  }
}`,
  };
}
