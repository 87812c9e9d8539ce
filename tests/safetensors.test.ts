// safetensors: exact round trips, rejection of every truncation, single-byte header corruption that is
// either rejected or self-consistent, named errors for corrupt headers, atomic saves that leave the old
// file intact on failure, F16 and BF16 read exactly as float32, the tensor-by-tensor reader equal to the
// whole-file one, and interoperability with an independent reader/writer (Python + numpy).

import { fc, test } from '@fast-check/vitest';
import { spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CHECKSUM_KEY,
  MAX_HEADER_BYTES,
  SafeTensor,
  SafetensorsError,
  halfToNumber,
  loadSafetensors,
  loadSafetensorsEach,
  parse,
  readSafetensorsHeader,
  saveSafetensors,
  serialize,
} from '../model/safetensors.js';

// ---------------------------------------------------------------------------------------------
// Arbitraries and helpers

const shapeArb = fc.array(fc.integer({ min: 0, max: 4 }), { maxLength: 3 }); // includes [] and [0]
const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
/** Default fc.float / fc.double include NaN, -0, +-Infinity and subnormals. */
const tensorArb: fc.Arbitrary<SafeTensor> = fc.oneof(
  shapeArb.chain((shape) =>
    fc
      .array(fc.float(), { minLength: size(shape), maxLength: size(shape) })
      .map((v) => ({ dtype: 'float32' as const, shape, data: Float32Array.from(v) })),
  ),
  shapeArb.chain((shape) =>
    fc
      .array(fc.double(), { minLength: size(shape), maxLength: size(shape) })
      .map((v) => ({ dtype: 'float64' as const, shape, data: Float64Array.from(v) })),
  ),
  shapeArb.chain((shape) =>
    fc
      .array(fc.integer(), { minLength: size(shape), maxLength: size(shape) })
      .map((v) => ({ dtype: 'int32' as const, shape, data: Int32Array.from(v) })),
  ),
);
const nameArb = fc
  .oneof(fc.string({ minLength: 1, maxLength: 8 }), fc.string({ unit: 'binary', maxLength: 6 }))
  .filter((s) => s !== '__metadata__');
const tensorsArb = fc.dictionary(nameArb, tensorArb, { maxKeys: 4 });
const metadataArb = fc.option(
  fc.dictionary(fc.string({ unit: 'binary', maxLength: 6 }), fc.string({ unit: 'binary', maxLength: 10 }), {
    maxKeys: 3,
  }),
  { nil: undefined },
);

const bytesOf = (a: SafeTensor['data']) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

/** Bit-exact equality (NaN payloads and -0 included), and fresh, aligned arrays of the right class. */
function expectSameTensors(got: Record<string, SafeTensor>, want: Record<string, SafeTensor>) {
  expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort());
  for (const [name, w] of Object.entries(want)) {
    const g = got[name];
    expect(g.dtype).toBe(w.dtype);
    expect(g.shape).toEqual(w.shape);
    expect(g.data.constructor).toBe(w.data.constructor);
    expect(g.data.byteOffset % g.data.BYTES_PER_ELEMENT).toBe(0);
    expect(bytesOf(g.data)).toEqual(bytesOf(w.data));
  }
}

/** A file with a hand-written header (object or raw text) and `dataLength` data bytes. */
function fileWith(header: unknown, dataLength: number): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + dataLength);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  return out;
}

const headerLengthOf = (bytes: Uint8Array) =>
  Number(new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true));

/** A file with all three dtypes, special values and empty shapes. */
const sample: Record<string, SafeTensor> = {
  'h.0.w': { dtype: 'float32', shape: [2, 3], data: Float32Array.from([1.5, -0, Infinity, -Infinity, NaN, 2 ** -149]) },
  'h.0.b': { dtype: 'float64', shape: [], data: Float64Array.from([Math.PI]) },
  ids: { dtype: 'int32', shape: [3], data: Int32Array.from([-(2 ** 31), 0, 2 ** 31 - 1]) },
  empty: { dtype: 'float64', shape: [0], data: new Float64Array(0) },
  empty2: { dtype: 'int32', shape: [2, 0, 3], data: new Int32Array(0) },
};

// ---------------------------------------------------------------------------------------------

describe('serialize / parse', () => {
  test.prop([tensorsArb, metadataArb])(
    'round trip is bit-exact for all dtypes, shapes and values',
    (tensors, metadata) => {
      const bytes = serialize(tensors, metadata);
      const back = parse(bytes);
      expectSameTensors(back.tensors, tensors);
      expect(back.metadata).toEqual({ ...metadata });
    },
  );

  it('special values, scalar and empty shapes survive exactly', () => {
    const back = parse(serialize(sample, { step: '12', note: 'ünïcode' }));
    expectSameTensors(back.tensors, sample);
    expect(back.metadata).toEqual({ step: '12', note: 'ünïcode' });
    const w = back.tensors['h.0.w'].data;
    expect(Object.is(w[1], -0)).toBe(true);
    expect(Number.isNaN(w[4])).toBe(true);
  });

  test.prop([tensorsArb, metadataArb])(
    'deterministic layout: header padded to 8 with spaces, keys sorted, order-independent',
    (tensors, metadata) => {
      const bytes = serialize(tensors, metadata);
      const n = headerLengthOf(bytes);
      expect(n % 8).toBe(0);
      const text = new TextDecoder().decode(bytes.subarray(8, 8 + n));
      expect(text).toMatch(/^\{.*\} {0,7}$/s);
      // JSON.parse would reorder integer-like keys, so read the order off the text.
      const at = Object.keys(tensors)
        .sort()
        .map((name) => text.indexOf(`${JSON.stringify(name)}:{"dtype":`));
      expect(at.every((p, k) => p > 0 && (k === 0 || p > at[k - 1]))).toBe(true);
      const reversed = Object.fromEntries(Object.entries(tensors).reverse());
      expect(serialize(reversed, metadata)).toEqual(bytes);
    },
  );

  it('float64 data is aligned in the file, and parsing from an unaligned buffer gives aligned arrays', () => {
    const bytes = serialize(sample);
    const h = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLengthOf(bytes))));
    expect((8 + headerLengthOf(bytes) + h['h.0.b'].data_offsets[0]) % 8).toBe(0);
    const shifted = new Uint8Array(bytes.length + 3);
    shifted.set(bytes, 3);
    expectSameTensors(parse(shifted.subarray(3)).tensors, sample);
  });

  it('serialize refuses tensors whose data does not match dtype or shape', () => {
    expect(() => serialize({ a: { dtype: 'float32', shape: [3], data: new Float32Array(2) } })).toThrow(
      /tensor 'a': 2 values do not fill shape \[3\]/,
    );
    expect(() => serialize({ a: { dtype: 'float64', shape: [2], data: new Float32Array(2) } })).toThrow(
      /tensor 'a': data is Float32Array, but dtype float64 needs Float64Array/,
    );
    expect(() => serialize({ a: { dtype: 'float32', shape: [-1], data: new Float32Array(1) } })).toThrow(
      /tensor 'a': shape \[-1\]/,
    );
    expect(() => serialize({ __metadata__: { dtype: 'float32', shape: [], data: new Float32Array(1) } })).toThrow(
      /reserved/,
    );
    expect(() => serialize({ a: { dtype: 'bfloat16' as 'float32', shape: [], data: new Float32Array(1) } })).toThrow(
      /dtype 'bfloat16' cannot be written/,
    );
    expect(() => serialize({}, { step: 3 as unknown as string })).toThrow(/metadata 'step' must be a string/);
  });

  it('a tensor named __proto__ or constructor is an ordinary name', () => {
    const tensors = Object.fromEntries([
      ['__proto__', sample.ids],
      ['constructor', sample['h.0.b']],
    ]);
    expectSameTensors(parse(serialize(tensors)).tensors, tensors);
  });
});

describe('corruption is rejected', () => {
  const full = serialize(sample, { step: '3' });

  it('truncation at every byte of a sample file is rejected', () => {
    for (let cut = 0; cut < full.length; cut++) {
      expect(() => parse(full.subarray(0, cut), { file: 'cut.safetensors' }), `cut at ${cut}`).toThrow(
        SafetensorsError,
      );
    }
  });

  test.prop([tensorsArb, fc.nat()])('truncation at any byte is rejected, naming the file', (tensors, at) => {
    const bytes = serialize(tensors);
    const cut = at % bytes.length;
    expect(() => parse(bytes.subarray(0, cut), { file: 'cut.safetensors' })).toThrow(/^cut\.safetensors: /);
  });

  it('an extra byte after the data is rejected as a hole', () => {
    const longer = new Uint8Array(full.length + 1);
    longer.set(full);
    expect(() => parse(longer, { file: 'f' })).toThrow(/^f: data buffer has a hole: its last 1 bytes/);
  });

  /**
   * The property: flipping any bits of any one byte of the length prefix or the header either
   * (a) throws a SafetensorsError naming the file (never a TypeError, RangeError or a crash), or
   * (b) parses to a self-consistent result: by an independent reading of the corrupted header, every
   *     tensor's data equals the file's bytes at its data_offsets, has product(shape) elements, and the
   *     tensors' byte lengths sum to exactly file length - 8 - N (every data byte accounted for once).
   * The writer's checksum catches what (b) alone would not: a renamed tensor, a changed metadata value,
   * F32 <-> I32 (a one-byte 'F' -> 'I' flip, which reinterprets the same bytes). What still parses is a
   * flip in the padding's whitespace or in the checksum's own key: the same tensors and metadata.
   */
  function checkFlip(bytes: Uint8Array, pos: number, mask: number): 'rejected' | 'parsed' {
    const bad = bytes.slice();
    bad[pos] ^= mask;
    let result;
    try {
      result = parse(bad, { file: 'flip.safetensors' });
    } catch (err) {
      expect(err).toBeInstanceOf(SafetensorsError);
      expect((err as Error).message).toMatch(/^flip\.safetensors: /);
      return 'rejected';
    }
    const n = headerLengthOf(bad);
    const header = JSON.parse(new TextDecoder().decode(bad.subarray(8, 8 + n)));
    let total = 0;
    for (const [name, t] of Object.entries(result.tensors)) {
      const [begin, end] = header[name].data_offsets;
      expect(t.data.length).toBe(size(t.shape));
      expect(bytesOf(t.data)).toEqual(bad.subarray(8 + n + begin, 8 + n + end));
      total += t.data.byteLength;
    }
    expect(total).toBe(bad.length - 8 - n);
    const good = parse(bytes);
    expect(Object.keys(result.tensors).sort()).toEqual(Object.keys(good.tensors).sort());
    for (const [name, t] of Object.entries(good.tensors)) expect(result.tensors[name]).toEqual(t);
    // The metadata's values are as written (a flipped checksum key leaves the digest as a value of its own).
    const values = (m: Record<string, string>) =>
      Object.values(m)
        .filter((v) => !/^[0-9a-f]{64}$/.test(v))
        .sort();
    expect(values(result.metadata)).toEqual(values(good.metadata));
    return 'parsed';
  }

  test.prop([tensorsArb, fc.nat(), fc.integer({ min: 1, max: 255 })])(
    'a flipped byte in the header is rejected or self-consistent',
    (tensors, at, mask) => {
      const bytes = serialize(tensors, { k: 'v' });
      checkFlip(bytes, at % (8 + headerLengthOf(bytes)), mask);
    },
  );

  it('every single-bit flip of the sample header is rejected or self-consistent', () => {
    const counts = { rejected: 0, parsed: 0 };
    for (let pos = 0; pos < 8 + headerLengthOf(full); pos++)
      for (let bit = 0; bit < 8; bit++) counts[checkFlip(full, pos, 1 << bit)]++;
    // nearly every flip is caught; the rest were in whitespace or in the checksum's key
    expect(counts.rejected).toBeGreaterThan(20 * counts.parsed);
  });

  const err = (header: unknown, dataLength: number) => () => parse(fileWith(header, dataLength), { file: 'bad.st' });
  const f32 = (begin: number, end: number, shape = [(end - begin) / 4]) => ({
    dtype: 'F32',
    shape,
    data_offsets: [begin, end],
  });

  it('the length prefix and the header text', () => {
    expect(() => parse(new Uint8Array(5), { file: 'bad.st' })).toThrow(
      /^bad\.st: file is 5 bytes, too short for the 8-byte header length prefix/,
    );
    const huge = new Uint8Array(16);
    new DataView(huge.buffer).setBigUint64(0, 2n ** 40n, true);
    expect(() => parse(huge, { file: 'bad.st' })).toThrow(
      new RegExp(`bad\\.st: header length ${2 ** 40} is larger than the ${MAX_HEADER_BYTES}-byte limit`),
    );
    const past = fileWith('{}', 0);
    new DataView(past.buffer).setBigUint64(0, 100n, true);
    expect(() => parse(past, { file: 'bad.st' })).toThrow(
      /bad\.st: header length 100 runs past the end of the 10-byte file/,
    );
    expect(() => parse(fileWith('', 0), { file: 'bad.st' })).toThrow(/header must start with '\{'/);
    expect(err('{"a": ', 0)).toThrow(/bad\.st: header is not valid JSON/);
    expect(err('[1, 2]', 0)).toThrow(/header must start with '\{'/);
    expect(err('\uFEFF{}', 0)).toThrow(/header must start with '\{'/);
    const notUtf8 = fileWith('{"\u00ff": 1}', 0);
    notUtf8[10] = 0xff; // a lone continuation-less byte inside the key
    expect(() => parse(notUtf8, { file: 'bad.st' })).toThrow(/bad\.st: header is not valid UTF-8/);
    expect(err('{"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, "a": {}}', 0)).toThrow(
      /header has the key "a" twice/,
    );
    expect(err('{"a": {"dtype": "F32", "dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}', 0)).toThrow(
      /key "dtype" twice/,
    );
  });

  it('entries: dtype, shape, data_offsets and their sizes', () => {
    expect(err({ w: { ...f32(0, 4), dtype: 'F33' } }, 4)).toThrow(
      /bad\.st: tensor 'w': unknown dtype 'F33' \(supported: F32, F64, I32, F16, BF16\)/,
    );
    expect(err({ w: { ...f32(0, 4), dtype: 'constructor' } }, 4)).toThrow(/tensor 'w': unknown dtype 'constructor'/);
    for (const dtype of ['BOOL', 'U8', 'I8', 'I16', 'U16', 'U32', 'I64', 'U64', 'F8_E4M3', 'F8_E5M2', 'C64']) {
      expect(err({ w: { ...f32(0, 4), dtype } }, 4)).toThrow(
        new RegExp(
          `tensor 'w': dtype '${dtype}' is not supported \\(supported: F32, F64, I32, F16, BF16; unsupported: `,
        ),
      );
    }
    expect(err({ w: { ...f32(0, 4), dtype: 'I64' } }, 4)).toThrow(/unsupported: BOOL, U8, I8, I16, U16, U32, I64,/);
    expect(err({ w: { dtype: 'BF16', shape: [3], data_offsets: [0, 4] } }, 4)).toThrow(
      /tensor 'w': data_offsets \[0, 4\] hold 4 bytes, but shape \[3\] of BF16 needs 6/,
    );
    expect(err({ w: { dtype: 'F16', shape: [1], data_offsets: [0, 4] } }, 4)).toThrow(
      /hold 4 bytes, but shape \[1\] of F16 needs 2/,
    );
    expect(err({ w: { ...f32(0, 4), dtype: 32 } }, 4)).toThrow(/tensor 'w': dtype must be a string, got 32/);
    expect(err({ w: f32(0, 4, [-1]) }, 4)).toThrow(
      /tensor 'w': shape must be an array of non-negative integers, got \[-1\]/,
    );
    expect(err({ w: f32(0, 4, [1.5]) }, 4)).toThrow(/tensor 'w': shape must be an array/);
    expect(err({ w: f32(0, 4, '1' as unknown as number[]) }, 4)).toThrow(/tensor 'w': shape must be an array/);
    expect(err({ w: { ...f32(0, 4), data_offsets: [0] } }, 4)).toThrow(
      /tensor 'w': data_offsets must be two non-negative integers \[begin, end\], got \[0\]/,
    );
    expect(err({ w: { ...f32(0, 4), data_offsets: [-4, 0] } }, 4)).toThrow(
      /tensor 'w': data_offsets must be two non-negative integers/,
    );
    expect(err({ w: { ...f32(0, 4), data_offsets: [4, 0] } }, 4)).toThrow(
      /tensor 'w': data_offsets \[4, 0\] have begin > end/,
    );
    expect(err({ w: f32(0, 16) }, 8)).toThrow(/tensor 'w': data_offsets \[0, 16\] run past the 8-byte data buffer/);
    expect(err({ w: f32(0, 8, [3]) }, 8)).toThrow(
      /tensor 'w': data_offsets \[0, 8\] hold 8 bytes, but shape \[3\] of F32 needs 12/,
    );
    expect(err({ w: { dtype: 'F64', shape: [1], data_offsets: [0, 4] } }, 4)).toThrow(
      /hold 4 bytes, but shape \[1\] of F64 needs 8/,
    );
    expect(err({ w: { shape: [1], data_offsets: [0, 4] } }, 4)).toThrow(/tensor 'w': missing field 'dtype'/);
    expect(err({ w: { ...f32(0, 4), offsets: [0, 4] } }, 4)).toThrow(/tensor 'w': unknown field 'offsets'/);
    expect(err({ w: [1] }, 4)).toThrow(/tensor 'w': entry must be an object, got \[1\]/);
    expect(err({ w: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 4] } }, 4)).toThrow(
      /tensor 'w': shape .* is too large/,
    );
  });

  it('entries must tile the data buffer: overlaps, holes and trailing bytes', () => {
    expect(err({ a: f32(0, 8), b: f32(4, 12) }, 12)).toThrow(
      /bad\.st: tensor 'b': data_offsets \[4, 12\] overlap tensor 'a' \(which ends at 8\)/,
    );
    expect(err({ a: f32(0, 8), b: f32(0, 8) }, 8)).toThrow(/overlap tensor 'a'/);
    expect(err({ a: f32(0, 4), b: f32(8, 12) }, 12)).toThrow(
      /bad\.st: data buffer has a hole: bytes \[4, 8\) belong to no tensor \(before tensor 'b'\)/,
    );
    expect(err({ a: f32(4, 8) }, 8)).toThrow(/hole: bytes \[0, 4\)/);
    expect(err({ a: f32(0, 4) }, 8)).toThrow(/data buffer has a hole: its last 4 bytes \(of 8\) belong to no tensor/);
    expect(err({}, 4)).toThrow(/its last 4 bytes/);
    // Empty tensors may sit anywhere inside the buffer, including between two others.
    expect(Object.keys(parse(fileWith({ a: f32(0, 4), e: f32(4, 4), b: f32(4, 8) }, 8)).tensors)).toEqual([
      'a',
      'e',
      'b',
    ]);
  });

  it('__metadata__ must be an object of strings', () => {
    expect(err({ __metadata__: { step: 5 } }, 0)).toThrow(/bad\.st: __metadata__ 'step' must be a string, got 5/);
    expect(err({ __metadata__: { a: 'x', b: null } }, 0)).toThrow(/__metadata__ 'b' must be a string, got null/);
    expect(err({ __metadata__: ['x'] }, 0)).toThrow(/__metadata__ must be an object of strings, got \["x"\]/);
    expect(err({ __metadata__: 'x' }, 0)).toThrow(/__metadata__ must be an object of strings/);
    expect(parse(fileWith('{"__metadata__": {"__proto__": "p"}}', 0)).metadata).toEqual(
      Object.fromEntries([['__proto__', 'p']]),
    );
  });
});

// ---------------------------------------------------------------------------------------------

describe('saveSafetensors / loadSafetensors', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'safetensors-test-'));
  });
  afterAll(async () => {
    await chmod(dir, 0o755).catch(() => {});
    await rm(dir, { recursive: true, force: true });
  });
  const isRoot = process.getuid?.() === 0;

  it('save then load round-trips, the bytes equal serialize(), and no temporary file remains', async () => {
    const path = join(dir, 'ok.safetensors');
    await saveSafetensors(path, sample, { step: '1' });
    expect(new Uint8Array(await readFile(path))).toEqual(serialize(sample, { step: '1' }));
    const back = await loadSafetensors(path);
    expectSameTensors(back.tensors, sample);
    expect(back.metadata).toEqual({ step: '1' });
    expect(await readdir(dir)).toEqual(['ok.safetensors']);
  });

  it(
    'a save that fails midway (a data getter throws after a tensor was written) leaves the ' + 'old file intact',
    async () => {
      const sub = await mkdtemp(join(dir, 'midway-'));
      const path = join(sub, 'ckpt.safetensors');
      await saveSafetensors(path, sample, { step: '1' });
      const before = await readFile(path);
      const read: string[] = [];
      const exploding = {
        a: {
          dtype: 'float32' as const,
          shape: [1000],
          get data() {
            read.push('a');
            return new Float32Array(1000).fill(7);
          },
        },
        b: {
          dtype: 'float32' as const,
          shape: [2],
          get data(): Float32Array {
            read.push('b');
            throw new Error('device lost');
          },
        },
      };
      await expect(saveSafetensors(path, exploding, { step: '2' })).rejects.toThrow(
        /ckpt\.safetensors: save failed: device lost/,
      );
      expect(read).toEqual(['a', 'b']); // 'a' was already written to the temporary file
      expect(await readFile(path)).toEqual(before);
      expect(await readdir(sub)).toEqual(['ckpt.safetensors']);
    },
  );

  it(
    'a save whose rename fails (the target is a directory) removes its temporary file and ' + 'touches nothing',
    async () => {
      const sub = await mkdtemp(join(dir, 'rename-'));
      const target = join(sub, 'taken');
      await mkdir(target);
      await writeFile(join(target, 'keep'), 'x');
      await expect(saveSafetensors(target, sample)).rejects.toThrow(
        /taken: save failed: .*(EISDIR|ENOTEMPTY|EEXIST|EPERM)/,
      );
      expect((await readdir(sub)).sort()).toEqual(['taken']);
      expect(await readdir(target)).toEqual(['keep']);
    },
  );

  it.skipIf(isRoot)(
    'a save into a read-only directory fails and leaves the old file intact (skipped as root: root ' +
      'ignores permissions)',
    async () => {
      const sub = await mkdtemp(join(dir, 'readonly-'));
      const path = join(sub, 'ckpt.safetensors');
      await saveSafetensors(path, sample);
      const before = await readFile(path);
      await chmod(sub, 0o555);
      try {
        await expect(saveSafetensors(path, { x: sample.ids })).rejects.toThrow(
          /ckpt\.safetensors: save failed: .*EACCES/,
        );
      } finally {
        await chmod(sub, 0o755);
      }
      expect(await readFile(path)).toEqual(before);
      expect(await readdir(sub)).toEqual(['ckpt.safetensors']);
    },
  );

  it('errors name the file: missing directory, missing file, corrupt file', async () => {
    const nowhere = join(dir, 'no-such-dir', 'x.safetensors');
    await expect(saveSafetensors(nowhere, sample)).rejects.toThrow(
      /no-such-dir\/x\.safetensors: save failed: .*ENOENT/,
    );
    await expect(loadSafetensors(join(dir, 'missing.safetensors'))).rejects.toThrow(
      /missing\.safetensors: cannot read: .*ENOENT/,
    );
    const corrupt = join(dir, 'corrupt.safetensors');
    await writeFile(corrupt, serialize(sample).subarray(0, 40));
    await expect(loadSafetensors(corrupt)).rejects.toThrow(
      /corrupt\.safetensors: header length \d+ runs past the end of the 40-byte file/,
    );
    await rm(corrupt);
  });
});

// ---------------------------------------------------------------------------------------------

/** A file of one 16-bit tensor (F16 or BF16) holding these bit patterns, little-endian, after an F32 one. */
function file16(code: 'F16' | 'BF16', bits: number[]): Uint8Array {
  const header = {
    a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
    h: { dtype: code, shape: [bits.length], data_offsets: [4, 4 + 2 * bits.length] },
  };
  const out = fileWith(header, 4 + 2 * bits.length);
  const view = new DataView(out.buffer, out.length - 4 - 2 * bits.length);
  view.setFloat32(0, 7.25, true);
  bits.forEach((b, i) => view.setUint16(4 + 2 * i, b, true));
  return out;
}

const same = (got: ArrayLike<number>, want: number[]) => {
  expect(got.length).toBe(want.length);
  want.forEach((w, i) => expect(Object.is(got[i], w), `[${i}]: ${got[i]} vs ${w}`).toBe(true));
};

describe('F16 and BF16 are read as float32, exactly', () => {
  // bit pattern -> value, each known exactly
  const bf16: [number, number][] = [
    [0x3fc0, 1.5],
    [0xc000, -2],
    [0x3eab, 0.333984375],
    [0x0000, 0],
    [0x8000, -0],
    [0x7f80, Infinity],
    [0xff80, -Infinity],
    [0x0001, 2 ** -133], // the smallest subnormal
    [0x7f7f, (2 - 2 ** -7) * 2 ** 127], // the largest finite
  ];
  const f16: [number, number][] = [
    [0x3c00, 1],
    [0xc000, -2],
    [0x3555, 0.333251953125],
    [0x0001, 2 ** -24], // the smallest subnormal
    [0x03ff, 1023 * 2 ** -24], // the largest subnormal
    [0x8001, -(2 ** -24)],
    [0x0400, 2 ** -14], // the smallest normal
    [0x7bff, 65504], // the largest finite
    [0x0000, 0],
    [0x8000, -0],
    [0x7c00, Infinity],
    [0xfc00, -Infinity],
  ];

  for (const [code, table] of [
    ['BF16', bf16],
    ['F16', f16],
  ] as const) {
    it(`${code}: known values, NaN, and an unaligned buffer`, () => {
      const bits = [...table.map(([b]) => b), code === 'BF16' ? 0x7fc0 : 0x7e00, code === 'BF16' ? 0xffc1 : 0xfd01];
      const bytes = file16(code, bits);
      const shifted = new Uint8Array(bytes.length + 1);
      shifted.set(bytes, 1);
      const buffer = Buffer.concat([Buffer.alloc(1), bytes]).subarray(1); // a Buffer's slice() is a view
      for (const b of [bytes, shifted.subarray(1), buffer]) {
        const t = parse(b).tensors;
        expect(t.a).toEqual({ dtype: 'float32', shape: [1], data: Float32Array.from([7.25]) });
        expect(t.h.dtype).toBe('float32');
        expect(t.h.shape).toEqual([bits.length]);
        expect(t.h.data).toBeInstanceOf(Float32Array);
        same(
          t.h.data.subarray(0, table.length),
          table.map(([, v]) => v),
        );
        expect(Number.isNaN(t.h.data[table.length]) && Number.isNaN(t.h.data[table.length + 1])).toBe(true);
      }
    });
  }

  it('BF16 keeps the bits: every pattern is the top half of the float32 read', () => {
    const bits = Array.from({ length: 65536 }, (_, i) => i);
    const got = new Uint32Array(parse(file16('BF16', bits)).tensors.h.data.buffer);
    for (let i = 0; i < 65536; i++) if (got[i] !== i * 65536) expect(got[i]).toBe(i * 65536);
  });

  it('halfToNumber: sign, exponent and fraction of every finite half round-trip through float32', () => {
    const f = new Float32Array(1);
    for (let h = 0; h < 65536; h++) {
      const v = halfToNumber(h);
      if ((h & 0x7c00) === 0x7c00) {
        expect(h & 0x3ff ? Number.isNaN(v) : Math.abs(v) === Infinity).toBe(true);
        continue;
      }
      f[0] = v;
      if (!Object.is(f[0], v)) expect(f[0]).toBe(v); // exact in float32
      expect(Object.is(halfToNumber(h ^ 0x8000), -v)).toBe(true);
    }
    expect(halfToNumber(0x7bfe)).toBe(65472); // consecutive halves near the top are 32 apart
  });
});

describe('readSafetensorsHeader / loadSafetensorsEach (tensor by tensor)', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'safetensors-each-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const collect = async (path: string, opts?: Parameters<typeof loadSafetensorsEach>[2]) => {
    const got: Record<string, SafeTensor> = {};
    const order: string[] = [];
    const header = await loadSafetensorsEach(
      path,
      (name, t) => {
        order.push(name);
        got[name] = t;
      },
      opts,
    );
    return { got, order, header };
  };

  it('gives what loadSafetensors gives, in data order, with the header and metadata (checksum verified)', async () => {
    const path = join(dir, 'sample.safetensors');
    await saveSafetensors(path, sample, { step: '4' });
    const whole = await loadSafetensors(path);
    const { got, order, header } = await collect(path);
    expectSameTensors(got, whole.tensors);
    expect(header.metadata).toEqual({ step: '4' });
    expect(await readSafetensorsHeader(path)).toEqual(header);
    expect(header.tensors.map((t) => [t.name, t.code, t.dtype, t.shape])).toEqual(
      Object.keys(sample)
        .sort()
        .map((k) => [
          k,
          { float32: 'F32', float64: 'F64', int32: 'I32' }[sample[k].dtype],
          sample[k].dtype,
          sample[k].shape,
        ]),
    );
    // data order: float64 first (the writer puts larger elements first), then by name
    expect(order).toEqual(['empty', 'h.0.b', 'empty2', 'h.0.w', 'ids']);
  });

  test.prop([tensorsArb, metadataArb], { numRuns: 30 })('equals parse on random files', async (tensors, metadata) => {
    const path = join(dir, 'random.safetensors');
    await writeFile(path, serialize(tensors, metadata));
    expectSameTensors((await collect(path)).got, tensors);
  });

  it('floatAs widens or rounds float tensors, leaves int32 alone, and takes F16/BF16 straight to float64', async () => {
    const path = join(dir, 'as.safetensors');
    await saveSafetensors(path, sample);
    const wide = (await collect(path, { floatAs: 'float64' })).got;
    expect(wide['h.0.w'].dtype).toBe('float64');
    same(wide['h.0.w'].data, [...sample['h.0.w'].data]);
    expect(wide.ids).toEqual(sample.ids);
    const narrow = (await collect(path, { floatAs: 'float32' })).got;
    expect(narrow['h.0.b']).toEqual({ dtype: 'float32', shape: [], data: Float32Array.from([Math.PI]) });
    const half = join(dir, 'half.safetensors');
    await writeFile(half, file16('F16', [0x0001, 0x7bff, 0x8000]));
    const h = (await collect(half, { floatAs: 'float64' })).got.h;
    expect(h.dtype).toBe('float64');
    same(h.data, [2 ** -24, 65504, -0]);
    const bf = join(dir, 'bf.safetensors');
    await writeFile(bf, file16('BF16', [0x3eab]));
    same((await collect(bf, { floatAs: 'float64' })).got.h.data, [0.333984375]);
  });

  it('skip leaves tensors out, but their bytes still count for the checksum', async () => {
    const path = join(dir, 'skip.safetensors');
    await saveSafetensors(path, sample);
    const { got } = await collect(path, { skip: (n) => n === 'h.0.w' });
    expect(Object.keys(got).sort()).toEqual(['empty', 'empty2', 'h.0.b', 'ids']);
    const bytes = new Uint8Array(await readFile(path));
    const h = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLengthOf(bytes))));
    bytes[8 + headerLengthOf(bytes) + h['h.0.w'].data_offsets[0]] ^= 1;
    await writeFile(path, bytes);
    await expect(collect(path, { skip: (n) => n === 'h.0.w' })).rejects.toThrow(/skip\.safetensors: checksum mismatch/);
    await expect(collect(path)).rejects.toThrow(/skip\.safetensors: checksum mismatch/);
  });

  it('every truncation is rejected, naming the file; so are a missing file and a directory', async () => {
    const full = serialize(sample, { step: '3' });
    const path = join(dir, 'cut.safetensors');
    for (let cut = 0; cut < full.length; cut += 3) {
      await writeFile(path, full.subarray(0, cut));
      await expect(readSafetensorsHeader(path), `cut at ${cut}`).rejects.toThrow(/cut\.safetensors: /);
      await expect(collect(path), `cut at ${cut}`).rejects.toThrow(SafetensorsError);
    }
    await expect(collect(join(dir, 'none.safetensors'))).rejects.toThrow(/none\.safetensors: cannot read: .*ENOENT/);
    await expect(readSafetensorsHeader(dir)).rejects.toThrow(/cannot read: .*EISDIR/);
  });

  it('an error thrown by the callback passes through unchanged', async () => {
    const path = join(dir, 'cb.safetensors');
    await saveSafetensors(path, sample);
    const boom = new Error('boom');
    await expect(
      loadSafetensorsEach(path, () => {
        throw boom;
      }),
    ).rejects.toBe(boom);
  });
});

// ---------------------------------------------------------------------------------------------
// Interoperability with an independent implementation: Python's json and numpy.frombuffer.

const hasNumpy = spawnSync('python3', ['-c', 'import numpy'], { stdio: 'ignore' }).status === 0;
if (!hasNumpy) console.warn('safetensors.test: python3 with numpy not found; skipping the interoperability tests');

const PY_READ = `
import json, struct, sys, numpy as np
out = []
for path in sys.argv[1:]:
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n].decode('utf-8'))
    meta = h.pop('__metadata__', {})
    data = b[8 + n:]
    ts = {}
    for k, v in h.items():
        s, e = v['data_offsets']
        a = np.frombuffer(data[s:e], dtype={'F32': '<f4', 'F64': '<f8', 'I32': '<i4'}[v['dtype']]).reshape(v['shape'])
        values = [repr(float(x)) if a.dtype.kind == 'f' else str(int(x)) for x in a.reshape(-1)]
        ts[k] = {'dtype': v['dtype'], 'shape': list(a.shape), 'values': values}
    out.append({'metadata': meta, 'tensors': ts})
print(json.dumps(out))
`;

const PY_WRITE = `
import json, struct, sys, numpy as np
ts = {
    'z.w': np.array([[1.5, -0.0, np.inf], [np.nan, 2.0 ** -149, -3]], dtype='<f4'),
    'a.ids': np.arange(-3, 3, dtype='<i4').reshape(3, 2),
    'm': np.array(np.pi, dtype='<f8'),
    'e': np.zeros((0, 4), dtype='<f8'),
}
header, data = {'__metadata__': {'writer': 'numpy'}}, b''
for k, a in ts.items():
    dtype = {'f4': 'F32', 'f8': 'F64', 'i4': 'I32'}[a.dtype.str[1:]]
    header[k] = {'dtype': dtype, 'shape': list(a.shape), 'data_offsets': [len(data), len(data) + a.nbytes]}
    data += a.tobytes()
h = json.dumps(header).encode('utf-8')
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + data)
`;

const fromPython = (s: string) => (s === 'nan' ? NaN : s === 'inf' ? Infinity : s === '-inf' ? -Infinity : Number(s));

describe.skipIf(!hasNumpy)('interoperability with Python + numpy (skipped when python3 with numpy is missing)', () => {
  let dir = '';
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'safetensors-py-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('numpy reads what serialize writes, value for value (NaN, -0, Inf, empty shapes, random files)', async () => {
    type File = { tensors: typeof sample; metadata: Record<string, string> | undefined };
    const files: File[] = [{ tensors: sample, metadata: { step: '3', note: 'ünïcode' } }];
    for (const [tensors, metadata] of fc.sample(fc.tuple(tensorsArb, metadataArb), { seed: 7, numRuns: 20 }))
      files.push({ tensors, metadata });
    const paths = files.map((_, i) => join(dir, `f${i}.safetensors`));
    await Promise.all(files.map((f, i) => writeFile(paths[i], serialize(f.tensors, f.metadata))));
    const run = spawnSync('python3', ['-c', PY_READ, ...paths], { encoding: 'utf-8' });
    expect(run.stderr).toBe('');
    const read = JSON.parse(run.stdout) as {
      metadata: Record<string, string>;
      tensors: Record<string, { dtype: string; shape: number[]; values: string[] }>;
    }[];
    files.forEach((f, i) => {
      // numpy sees the writer's checksum as one more metadata string.
      const { [CHECKSUM_KEY]: sum, ...meta } = read[i].metadata;
      expect(sum).toMatch(/^[0-9a-f]{64}$/);
      expect(meta).toEqual({ ...f.metadata });
      expect(Object.keys(read[i].tensors).sort()).toEqual(Object.keys(f.tensors).sort());
      for (const [name, t] of Object.entries(f.tensors)) {
        const py = read[i].tensors[name];
        expect(py.dtype).toBe({ float32: 'F32', float64: 'F64', int32: 'I32' }[t.dtype]);
        expect(py.shape).toEqual(t.shape);
        expect(py.values.length).toBe(t.data.length);
        py.values.forEach((v, j) =>
          expect(Object.is(fromPython(v), t.data[j]), `${name}[${j}]: numpy ${v} vs ${t.data[j]}`).toBe(true),
        );
      }
    });
  });

  it('parse reads every F16 bit pattern as numpy converts it to float32', async () => {
    const path = join(dir, 'f16.safetensors');
    const script = `
import json, struct, sys, numpy as np
h16 = np.arange(65536, dtype='<u2').view('<f2')
f32 = h16.astype('<f4')
header = {'h': {'dtype': 'F16', 'shape': [65536], 'data_offsets': [0, 131072]},
          'f': {'dtype': 'F32', 'shape': [65536], 'data_offsets': [131072, 393216]}}
h = json.dumps(header).encode('utf-8')
open(sys.argv[1], 'wb').write(struct.pack('<Q', len(h)) + h + h16.tobytes() + f32.tobytes())
`;
    const run = spawnSync('python3', ['-c', script, path], { encoding: 'utf-8' });
    expect(run.stderr).toBe('');
    const { h, f } = (await loadSafetensors(path)).tensors;
    expect(h.dtype).toBe('float32');
    for (let i = 0; i < 65536; i++) {
      const ok = Number.isNaN(f.data[i]) ? Number.isNaN(h.data[i]) : Object.is(h.data[i], f.data[i]);
      if (!ok) expect(h.data[i], `half 0x${i.toString(16)}`).toBe(f.data[i]);
    }
  });

  it('parse reads what numpy writes (unpadded header, unsorted names)', async () => {
    const path = join(dir, 'from-numpy.safetensors');
    const run = spawnSync('python3', ['-c', PY_WRITE, path], { encoding: 'utf-8' });
    expect(run.stderr).toBe('');
    const back = await loadSafetensors(path);
    expect(back.metadata).toEqual({ writer: 'numpy' });
    expectSameTensors(back.tensors, {
      'z.w': { dtype: 'float32', shape: [2, 3], data: Float32Array.from([1.5, -0, Infinity, NaN, 2 ** -149, -3]) },
      'a.ids': { dtype: 'int32', shape: [3, 2], data: Int32Array.from([-3, -2, -1, 0, 1, 2]) },
      m: { dtype: 'float64', shape: [], data: Float64Array.from([Math.PI]) },
      e: { dtype: 'float64', shape: [0, 4], data: new Float64Array(0) },
    });
  });
});
