// Gradient checks of reductions, movement ops and gather / scatter in float64 with random cotangents.
// Shapes include size-1 dimensions and negative axes; max and min get inputs without ties.

import { describe } from 'vitest';
import { fc, test as fcTest } from '@fast-check/vitest';
import * as E from '../engine/index.js';
import {
  broadcastableTo,
  dim,
  distinct,
  floats,
  gradcheck,
  indices,
  input,
  int32,
  seedArb,
  shapeArb,
  sizeOf,
  type Values,
} from '../testing/index.js';

/** undefined (all), one axis, or a subset of axes, each possibly written negative. */
const axesArb = (rank: number): fc.Arbitrary<number | number[] | undefined> => {
  const neg = (a: number) => fc.boolean().map((n) => (n ? a - rank : a));
  const options: fc.Arbitrary<number | number[] | undefined>[] = [
    fc.constant(undefined),
    fc
      .shuffledSubarray([...Array(rank).keys()])
      .chain((axes) => (axes.length === 0 ? fc.constant([]) : fc.tuple(...axes.map(neg)))),
  ];
  if (rank > 0) options.push(fc.integer({ min: 0, max: rank - 1 }).chain(neg));
  return fc.oneof(...options);
};

const REDUCTIONS: [string, (x: E.Tensor, axes: number | number[] | undefined, keepdim: boolean) => E.Tensor, Values][] =
  [
    ['sum', E.sum, floats()],
    ['mean', E.mean, floats()],
    ['max', E.max, distinct()],
    ['min', E.min, distinct()],
    ['logsumexp', E.logsumexp, floats(-3, 3)],
  ];

describe('gradcheck: reductions', () => {
  for (const [name, f, values] of REDUCTIONS) {
    const arb = shapeArb(0, 4, 4).chain((s) => fc.tuple(input(s, values), axesArb(s.length), fc.boolean()));
    fcTest.prop([arb, seedArb])(name, ([x, axes, keepdim], seed) => {
      gradcheck((t) => f(t, axes, keepdim), [x], {
        name: `${name}(axes ${JSON.stringify(axes)}, keepdim ${keepdim})`,
        seed,
      });
    });
  }
});

describe('gradcheck: movement', () => {
  // A new shape of the same size: the dims shuffled, two of them merged, a 1 inserted, one written -1.
  const reshapeArb = shapeArb(0, 4, 4).chain((s) =>
    fc.tuple(
      input(s),
      fc
        .record({
          dims: fc.shuffledSubarray(s, { minLength: s.length, maxLength: s.length }),
          merge: fc.boolean(),
          one: fc.integer({ min: 0, max: s.length }),
          insertOne: fc.boolean(),
          infer: fc.boolean(),
        })
        .map(({ dims, merge, one, insertOne, infer }) => {
          let t = merge && dims.length >= 2 ? [dims[0] * dims[1], ...dims.slice(2)] : [...dims];
          if (insertOne) t.splice(Math.min(one, t.length), 0, 1);
          if (infer && t.length > 0) t = t.map((d, i) => (i === t.length - 1 ? -1 : d));
          return t;
        }),
    ),
  );
  fcTest.prop([reshapeArb, seedArb])('reshape', ([x, shape], seed) => {
    gradcheck((t) => E.reshape(t, shape), [x], { name: `reshape to [${shape}]`, seed });
  });

  const permArb = shapeArb(1, 4, 4).chain((s) =>
    fc.tuple(
      input(s),
      fc.shuffledSubarray([...s.keys()], { minLength: s.length, maxLength: s.length }),
      fc.array(fc.boolean(), { minLength: s.length, maxLength: s.length }),
    ),
  );
  fcTest.prop([permArb, seedArb])('permute', ([x, perm, neg], seed) => {
    const p = perm.map((a, i) => (neg[i] ? a - perm.length : a));
    gradcheck((t) => E.permute(t, p), [x], { name: `permute [${p}]`, seed });
  });

  const transposeArb = shapeArb(1, 4, 4).chain((s) =>
    fc.tuple(
      input(s),
      fc.integer({ min: -s.length, max: s.length - 1 }),
      fc.integer({ min: -s.length, max: s.length - 1 }),
    ),
  );
  fcTest.prop([transposeArb, seedArb])('transpose', ([x, d0, d1], seed) => {
    gradcheck((t) => E.transpose(t, d0, d1), [x], { name: `transpose(${d0}, ${d1})`, seed });
  });

  // Boxes of size 0 included: their gradient is all zeros.
  const sliceArb = shapeArb(1, 3).chain((s) =>
    fc.tuple(
      input(s),
      fc.tuple(
        ...s.map((d) =>
          fc
            .integer({ min: 0, max: d - 1 })
            .chain((b) => fc.tuple(fc.constant(b), fc.oneof(fc.integer({ min: 0, max: d - b }), fc.constant(-1)))),
        ),
      ),
    ),
  );
  fcTest.prop([sliceArb, seedArb])('slice', ([x, box], seed) => {
    const begin = box.map(([b]) => b);
    const size = box.map(([, n]) => n);
    gradcheck((t) => E.slice(t, begin, size), [x], { name: `slice(begin [${begin}], size [${size}])`, seed });
  });

  const narrowArb = shapeArb(1, 3).chain((s) =>
    fc.integer({ min: -s.length, max: s.length - 1 }).chain((d) => {
      const n = s[d < 0 ? d + s.length : d];
      return fc.tuple(
        input(s),
        fc.constant(d),
        fc
          .integer({ min: 0, max: n - 1 })
          .chain((start) => fc.tuple(fc.constant(start), fc.integer({ min: 1, max: n - start }))),
      );
    }),
  );
  fcTest.prop([narrowArb, seedArb])('narrow', ([x, d, [start, length]], seed) => {
    gradcheck((t) => E.narrow(t, d, start, length), [x], { name: `narrow(${d}, ${start}, ${length})`, seed });
  });

  const padArb = shapeArb(1, 3, 4).chain((s) =>
    fc.tuple(
      input(s),
      fc.array(fc.integer({ min: 0, max: 2 }), { minLength: s.length, maxLength: s.length }),
      fc.array(fc.integer({ min: 0, max: 2 }), { minLength: s.length, maxLength: s.length }),
    ),
  );
  fcTest.prop([padArb, seedArb])('pad', ([x, before, after], seed) => {
    gradcheck((t) => E.pad(t, before, after), [x], { name: `pad([${before}], [${after}])`, seed });
  });

  // 1 to 3 tensors that differ only along the cat axis (where a size may also be 0).
  const catArb = shapeArb(1, 3, 4).chain((s) =>
    fc.integer({ min: -s.length, max: s.length - 1 }).chain((d) => {
      const ax = d < 0 ? d + s.length : d;
      return fc.tuple(
        fc.constant(d),
        fc.array(
          fc.integer({ min: 0, max: 3 }).chain((n) => input(s.map((v, i) => (i === ax ? n : v)))),
          { minLength: 1, maxLength: 3 },
        ),
      );
    }),
  );
  fcTest.prop([catArb, seedArb])('cat', ([d, xs], seed) => {
    gradcheck((...ts) => E.cat(ts, d), xs, { name: `cat(${xs.map((x) => `[${x.shape}]`).join(' ')}, dim ${d})`, seed });
  });

  const stackArb = shapeArb(0, 3, 4).chain((s) =>
    fc.tuple(fc.integer({ min: -(s.length + 1), max: s.length }), fc.array(input(s), { minLength: 1, maxLength: 3 })),
  );
  fcTest.prop([stackArb, seedArb])('stack', ([d, xs], seed) => {
    gradcheck((...ts) => E.stack(ts, d), xs, { name: `stack(${xs.length} x [${xs[0].shape}], dim ${d})`, seed });
  });

  // From a shape that broadcasts to `out`, with -1 kept where the dimension already matches.
  const expandArb = shapeArb(0, 4, 4).chain((out) =>
    broadcastableTo(out).chain((s) =>
      fc.tuple(input(s), fc.constant(out), fc.array(fc.boolean(), { minLength: out.length, maxLength: out.length })),
    ),
  );
  fcTest.prop([expandArb, seedArb])('expand', ([x, out, keep], seed) => {
    const lead = out.length - x.shape.length;
    const target = out.map((d, i) => (keep[i] && i >= lead && x.shape[i - lead] === d ? -1 : d));
    gradcheck((t) => E.expand(t, target), [x], { name: `expand [${x.shape}] to [${target}]`, seed });
  });

  const withOnes = fc.array(fc.oneof(fc.constant(1), dim(4)), { minLength: 0, maxLength: 4 });
  fcTest.prop([
    withOnes.chain((s) =>
      fc.tuple(
        input(s),
        fc.option(fc.integer({ min: -Math.max(s.length, 1), max: Math.max(s.length - 1, 0) }), { nil: undefined }),
      ),
    ),
    seedArb,
  ])('squeeze', ([x, d], seed) => {
    if (x.shape.length === 0 && d !== undefined) d = undefined; // a 0-d tensor has no axis to name
    gradcheck((t) => E.squeeze(t, d), [x], { name: `squeeze(${d}) of [${x.shape}]`, seed });
  });
  fcTest.prop([
    shapeArb(0, 3).chain((s) => fc.tuple(input(s), fc.integer({ min: -(s.length + 1), max: s.length }))),
    seedArb,
  ])('unsqueeze', ([x, d], seed) => {
    gradcheck((t) => E.unsqueeze(t, d), [x], { name: `unsqueeze(${d}) of [${x.shape}]`, seed });
  });
});

describe('gradcheck: gather and scatter', () => {
  // torch.gather: the index has x's rank, any size along dim, no larger size elsewhere; values repeat.
  const gatherArb = shapeArb(1, 3, 4).chain((s) =>
    fc.integer({ min: -s.length, max: s.length - 1 }).chain((d) => {
      const ax = d < 0 ? d + s.length : d;
      const idxShape = fc.tuple(...s.map((n, i) => (i === ax ? dim(5) : dim(n))));
      return fc.tuple(
        input(s),
        fc.constant(d),
        idxShape.chain((is) => fc.tuple(fc.constant(is), indices(sizeOf(is), s[ax]))),
      );
    }),
  );
  fcTest.prop([gatherArb, seedArb])('gather (take along axis)', ([x, d, [idxShape, idx]], seed) => {
    gradcheck((t) => E.gather(t, d, int32(idx, idxShape)), [x], {
      name: `gather(dim ${d}, index [${idxShape}] = ${idx})`,
      seed,
    });
  });

  // index of any rank (0-d included); repeated entries make the backward's scatter-add accumulate.
  const selectArb = shapeArb(1, 3, 4).chain((s) =>
    fc.integer({ min: -s.length, max: s.length - 1 }).chain((d) => {
      const ax = d < 0 ? d + s.length : d;
      return fc.tuple(
        input(s),
        fc.constant(d),
        shapeArb(0, 2).chain((is) => fc.tuple(fc.constant(is), indices(sizeOf(is), s[ax]))),
      );
    }),
  );
  fcTest.prop([selectArb, seedArb])('indexSelect', ([x, d, [idxShape, idx]], seed) => {
    gradcheck((t) => E.indexSelect(t, d, int32(idx, idxShape)), [x], {
      name: `indexSelect(dim ${d}, index [${idxShape}] = ${idx})`,
      seed,
    });
  });

  const embeddingArb = fc.tuple(dim(5), dim(4)).chain(([V, C]) =>
    fc.tuple(
      input([V, C]),
      shapeArb(1, 2).chain((is) => fc.tuple(fc.constant(is), indices(sizeOf(is), V))),
    ),
  );
  fcTest.prop([embeddingArb, seedArb])('embedding', ([w, [idsShape, ids]], seed) => {
    gradcheck((t) => E.embedding(int32(ids, idsShape), t), [w], {
      name: `embedding(ids [${idsShape}] = ${ids}, weight [${w.shape}])`,
      seed,
    });
  });

  // scatterAdd is differentiable too (its backward is a gather): src has the gather output's shape.
  const scatterArb = gatherArb.chain(([x, d, [idxShape, idx]]) =>
    input(idxShape).map((src) => ({ outShape: x.shape, d, idxShape, idx, src })),
  );
  fcTest.prop([scatterArb, seedArb])('scatterAdd (along)', ({ outShape, d, idxShape, idx, src }, seed) => {
    const ax = d < 0 ? d + outShape.length : d;
    gradcheck((t) => E.scatterAdd(t, int32(idx, idxShape), ax, 'along', outShape), [src], {
      name: `scatterAdd(along, dim ${ax}, index [${idxShape}] = ${idx})`,
      seed,
    });
  });
});
