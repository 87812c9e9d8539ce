// The decode forward (T <= DECODE_MAX_T, e.g. one new token against a KV cache; without the subgroup
// kernels): one workgroup per query row, its threads split the S keys, each with its own online softmax;
// the partial states merge in workgroup memory (one barrier), deterministically.

import { FLAT_BUILTINS, flatGroup, grid1d, localId, type Program } from '../program.js';
import { bind, bindIn, decodeThreads, header, loopBounds, NEG_INF, type Dims } from './common.js';

export function decodeProgram(d: Dims, hasBias: boolean, constant: boolean): Program {
  const WGD = decodeThreads(d.hs);
  const bias = hasBias ? 'bias[bbase + j]' : '0.0';
  return {
    name: 'attention:decode',
    cacheKey: `attention|decode|f32|hs${d.hs}|wg${WGD}|${hasBias ? 'bias' : 'nobias'}|${constant ? 'const' : 'unif'}`,
    workgroupSize: [WGD, 1, 1],
    dispatch: grid1d(d.B * d.T, 1),
    wgsl: () => `${header(d.hs, bindIn(hasBias, ['q', 'k', 'v']), bind(['out'], ['lse']))}
const WGD: u32 = ${WGD}u;
var<workgroup> ms: array<f32, WGD>;
var<workgroup> ls: array<f32, WGD>;
var<workgroup> bads: array<u32, WGD>;
var<workgroup> part: array<VT, WGD * HS>;
@compute @workgroup_size(${WGD})
fn main(${FLAT_BUILTINS}) {
  ${loopBounds(constant, ['hs', 'wgd'])}
  let row = ${flatGroup()};  // one workgroup per query row
  let T = u_T();
  if (row >= u_B() * T) { return; }
  let S = u_S();
  let scale = u_scale();
  let lid = ${localId()};
  let b = row / T;
  let lim = S - T + row % T;
  let kvbase = b * u_cap() * HS;
  let bbase = (b / u_per_bias()) * u_cap();
  var qr: array<VT, HS>;
  var o: array<VT, HS>;
  for (var c = 0u; c < hsn; c++) { qr[c] = q[row * HS + c]; }
  // This thread's keys lid, lid + WGD, ...: an online softmax over them.
  var m = ${NEG_INF};
  var l = 0.0;
  var bad = false;
  for (var j = lid; j <= lim; j += WGD) {
    var sdot = 0.0;
    for (var c = 0u; c < hsn; c++) { sdot += vdot(qr[c], k[kvbase + j * HS + c]); }
    let s = sdot * scale + ${bias};
    bad = bad || bad_score(s);
    if (!is_neg_inf(s)) {
      if (s > m) {
        let alpha = exp(m - s);
        l *= alpha;
        for (var c = 0u; c < hsn; c++) { o[c] *= alpha; }
        m = s;
      }
      let p = exp(s - m);
      l += p;
      for (var c = 0u; c < hsn; c++) { o[c] += p * v[kvbase + j * HS + c]; }
    }
  }
  // Merge the threads' states: the global max, each state rescaled to it, summed per column in thread order.
  ms[lid] = m;
  ls[lid] = l;
  bads[lid] = select(0u, 1u, bad);
  workgroupBarrier();
  var mx = ${NEG_INF};
  var anyBad = false;
  for (var t = 0u; t < wgn; t++) { mx = max(mx, ms[t]); anyBad = anyBad || bads[t] != 0u; }
  var lsum = 0.0;
  if (!is_neg_inf(mx)) {
    for (var t = 0u; t < wgn; t++) { if (!is_neg_inf(ms[t])) { lsum += ls[t] * exp(ms[t] - mx); } }
  }
  let f = select(exp(m - mx), 0.0, is_neg_inf(m));
  for (var c = 0u; c < hsn; c++) { part[lid * HS + c] = o[c] * f; }
  workgroupBarrier();
  let seen = lsum > 0.0;
  for (var c = lid; c < hsn; c += WGD) {
    var acc = VT(0.0);
    for (var t = 0u; t < wgn; t++) { acc += part[t * HS + c]; }
    out[row * HS + c] = rowOut(acc / lsum, seen, anyBad);
  }
  if (lid == 0u) { lse[row] = rowLse(mx + log(lsum), seen, anyBad); }
}`,
  };
}
