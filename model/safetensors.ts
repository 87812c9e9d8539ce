// Reading and writing the safetensors format, with every header field validated and atomic saves
// (temporary file, fsync, rename, directory fsync). Errors name the file and the field. Written: F32, F64,
// I32. Read: those, and F16 and BF16 (Hugging Face checkpoints), converted exactly to float32 on load.
// Reads either a whole file at once (parse, loadSafetensors) or a file tensor by tensor
// (readSafetensorsHeader, loadSafetensorsEach: one tensor's bytes in memory at a time).
// Not a checkpoint layout (which tensors a model stores is model/'s business) and not a lazy/mmap reader.

import { createHash, randomBytes, type Hash } from 'node:crypto';
import { open, readdir, readFile, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { DType, TypedArray } from '../engine/index.js';

/** One tensor as stored: contiguous, row-major. */
export interface SafeTensor {
  dtype: DType;
  shape: number[];
  data: TypedArray;
}

export interface Safetensors {
  tensors: Record<string, SafeTensor>;
  metadata: Record<string, string>;
}

export class SafetensorsError extends Error {
  override name = 'SafetensorsError';
}

/** The header must fit in memory and be plausible; the reference implementation uses the same 100 MB cap. */
export const MAX_HEADER_BYTES = 100_000_000;

/** A header nests objects and arrays at most this deep (a tensor entry needs 3; deeper is corruption). */
export const MAX_HEADER_DEPTH = 64;

/**
 * The __metadata__ key of the checksum this writer adds: the SHA-256 of the rest of the header (as this
 * writer lays it out, without this key) and of the data bytes. parse verifies it when present, so a
 * flipped byte anywhere in a file written here is caught; files from elsewhere have none and still load.
 */
export const CHECKSUM_KEY = 'igpo-ts.sha256';

const CODES: Record<DType, string> = { float32: 'F32', float64: 'F64', int32: 'I32' };
const SIZE: Record<DType, number> = { float32: 4, float64: 8, int32: 4 };
/** The file dtypes this reader reads, and what each is read as (F16 and BF16 widen exactly to float32). */
const FROM_CODE: Record<string, DType> = {
  F32: 'float32',
  F64: 'float64',
  I32: 'int32',
  F16: 'float32',
  BF16: 'float32',
};
/** Bytes per element in the file, by file dtype. */
const CODE_SIZE: Record<string, number> = { F32: 4, F64: 8, I32: 4, F16: 2, BF16: 2 };
const SUPPORTED = Object.keys(FROM_CODE).join(', ');
/** Dtypes of the format that this reader does not support (yet): named in the error, not called unknown. */
const UNSUPPORTED = [
  'BOOL',
  'U8',
  'I8',
  'I16',
  'U16',
  'U32',
  'I64',
  'U64',
  'F8_E4M3',
  'F8_E5M2',
  'F8_E8M0',
  'F6_E2M3',
  'F6_E3M2',
  'F4',
  'C64',
];
const ENTRY_FIELDS = ['dtype', 'shape', 'data_offsets'];
const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// Writing

interface Planned {
  name: string;
  entry: SafeTensor;
  byteLength: number;
}

/**
 * Check names, dtypes and shapes and lay the file out: header keys in sorted order; data ordered by
 * element size (largest first), then name, so every tensor's data is aligned to its element size in
 * the file (the header is padded to 8 bytes), as the reference writer does. Data is not read here.
 */
function plan(tensors: Record<string, SafeTensor>, metadata: Record<string, string> | undefined, file: string) {
  const fail = (why: string): never => {
    throw new SafetensorsError(`${file}: ${why}`);
  };
  const names = Object.keys(tensors).sort();
  const items: Planned[] = names.map((name) => {
    if (name === '__metadata__') fail(`'__metadata__' is reserved and cannot name a tensor`);
    const entry = tensors[name];
    if (!Object.hasOwn(CODES, entry.dtype))
      fail(`tensor '${name}': dtype '${entry.dtype}' cannot be written (expected float32, float64 or int32)`);
    if (!Array.isArray(entry.shape) || !entry.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      fail(`tensor '${name}': shape ${JSON.stringify(entry.shape)} must be an array of non-negative integers`);
    }
    return { name, entry, byteLength: numel(entry.shape) * SIZE[entry.dtype] };
  });
  const order = [...items].sort(
    (a, b) => SIZE[b.entry.dtype] - SIZE[a.entry.dtype] || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  const offsets = new Map<string, [number, number]>();
  let end = 0;
  for (const it of order) {
    offsets.set(it.name, [end, end + it.byteLength]);
    end += it.byteLength;
  }
  if (metadata !== undefined) {
    for (const key of Object.keys(metadata))
      if (typeof metadata[key] !== 'string') fail(`metadata '${key}' must be a string, got ${typeof metadata[key]}`);
    if (CHECKSUM_KEY in metadata) fail(`metadata '${CHECKSUM_KEY}' is the writer's own checksum and cannot be set`);
  }
  const entries = items.map((it) => ({
    name: it.name,
    code: CODES[it.entry.dtype],
    shape: it.entry.shape,
    offsets: offsets.get(it.name)!,
  }));
  const digest = createHash('sha256').update(headerJson(entries, metadata ?? {}));
  for (const it of order) digest.update(dataBytes(it, file));
  const json = new TextEncoder().encode(headerJson(entries, { ...metadata, [CHECKSUM_KEY]: digest.digest('hex') }));
  const headerLength = Math.ceil(json.length / 8) * 8;
  const prefix = new Uint8Array(8 + headerLength).fill(0x20); // pad with spaces
  new DataView(prefix.buffer).setBigUint64(0, BigInt(headerLength), true);
  prefix.set(json, 8);
  return { prefix, order, dataLength: end };
}

/**
 * The header's JSON as this writer lays it out: keys in sorted order, assembled by hand (a JS object would
 * put integer-like names ('0', '12') first whatever the insertion order, and treat '__proto__' specially).
 */
function headerJson(
  entries: readonly { name: string; code: string; shape: readonly number[]; offsets: readonly number[] }[],
  metadata: Record<string, string>,
): string {
  const object = (pairs: [string, string][]) => `{${pairs.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;
  const keys = Object.keys(metadata).sort();
  const header: [string, string][] = keys.length
    ? [['__metadata__', object(keys.map((k) => [k, JSON.stringify(metadata[k])]))]]
    : [];
  for (const e of [...entries].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))) {
    header.push([e.name, JSON.stringify({ dtype: e.code, shape: e.shape, data_offsets: e.offsets })]);
  }
  return object(header);
}

/** The tensor's data as little-endian bytes, after checking it against the declared dtype and shape. */
function dataBytes(it: Planned, file: string): Uint8Array {
  const { data, dtype, shape } = it.entry;
  const expected = { float32: Float32Array, float64: Float64Array, int32: Int32Array }[dtype];
  if (!(data instanceof expected)) {
    throw new SafetensorsError(
      `${file}: tensor '${it.name}': data is ${data?.constructor?.name ?? typeof data}, but dtype ${dtype} needs ` +
        `${expected.name}`,
    );
  }
  if (data.byteLength !== it.byteLength) {
    throw new SafetensorsError(
      `${file}: tensor '${it.name}': ${data.length} values do not fill shape [${shape.join(', ')}] ` +
        `(${numel(shape)} values)`,
    );
  }
  const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return LITTLE_ENDIAN_HOST ? bytes : swapBytes(bytes, SIZE[dtype]);
}

/** The whole file in memory. Deterministic: the same tensors and metadata give the same bytes. */
export function serialize(tensors: Record<string, SafeTensor>, metadata?: Record<string, string>): Uint8Array {
  const file = '<serialize>';
  const { prefix, order, dataLength } = plan(tensors, metadata, file);
  const out = new Uint8Array(prefix.length + dataLength);
  out.set(prefix, 0);
  let at = prefix.length;
  for (const it of order) {
    out.set(dataBytes(it, file), at);
    at += it.byteLength;
  }
  return out;
}

/**
 * Write atomically: a temporary file in the same directory, fsync, rename over `path`, fsync the
 * directory. Tensors are streamed one by one (no second copy of the checkpoint in memory). On any
 * error the temporary file is removed and an existing `path` is left as it was.
 */
export async function saveSafetensors(
  path: string,
  tensors: Record<string, SafeTensor>,
  metadata?: Record<string, string>,
): Promise<void> {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let created = false;
  await removeStaleTemps(dir, basename(path));
  try {
    const { prefix, order } = plan(tensors, metadata, path);
    const fh = await open(tmp, 'wx');
    created = true;
    try {
      // write(2) may write less than asked (Linux caps one call near 2 GiB), so loop until done.
      const writeAll = async (bytes: Uint8Array) => {
        for (let at = 0; at < bytes.length;) {
          const { bytesWritten } = await fh.write(bytes, at, bytes.length - at);
          if (bytesWritten === 0) throw new Error(`no progress writing ${tmp}`);
          at += bytesWritten;
        }
      };
      await writeAll(prefix);
      for (const it of order) await writeAll(dataBytes(it, path));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    created = false;
    await syncDirectory(dir);
  } catch (err) {
    if (created) await unlink(tmp).catch(() => {});
    if (err instanceof SafetensorsError) throw err;
    throw new SafetensorsError(`${path}: save failed: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Removes the temporary files earlier saves of `name` left behind when their process was killed: the
 * writer's own pattern (.NAME.PID.HEX.tmp) from a process that no longer runs. A live writer's are kept.
 */
async function removeStaleTemps(dir: string, name: string): Promise<void> {
  const pattern = new RegExp(`^\\.${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.(\\d+)\\.[0-9a-f]{12}\\.tmp$`);
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch {
    return; // the save itself will report a missing directory
  }
  for (const f of entries) {
    const m = pattern.exec(f);
    if (!m || processAlive(Number(m[1]))) continue;
    await unlink(join(dir, f)).catch(() => {});
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // alive, another user's
  }
}

/** Make the rename durable. Windows cannot open a directory; some filesystems refuse fsync on one (EINVAL). */
async function syncDirectory(dir: string): Promise<void> {
  if (process.platform === 'win32') return;
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
  } finally {
    await dh.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Reading

/** One tensor's entry in a checked header. */
interface Entry {
  name: string;
  /** What it reads as. */
  dtype: DType;
  /** The file's dtype code (F32, BF16, ...). */
  code: string;
  shape: number[];
  begin: number;
  end: number;
}

/** A checked header: entries in header order, data offsets relative to dataStart. */
interface Header {
  dataStart: number;
  entries: Entry[];
  metadata: Record<string, string>;
  /** The writer's checksum, when the file has one (removed from metadata). */
  checksum?: string;
}

/** The failing function of a file: every error starts with its name. */
function failer(file: string) {
  return (why: string): never => {
    throw new SafetensorsError(`${file}: ${why}`);
  };
}

/** Checks the 8-byte length prefix (`prefix` holds the file's first min(8, fileLength) bytes) and returns N. */
function headerLength(prefix: Uint8Array, fileLength: number, file: string): number {
  const fail = failer(file);
  if (fileLength < 8) fail(`file is ${fileLength} bytes, too short for the 8-byte header length prefix`);
  const n = new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(MAX_HEADER_BYTES))
    fail(`header length ${n} is larger than the ${MAX_HEADER_BYTES}-byte limit (corrupt length prefix?)`);
  if (8 + Number(n) > fileLength)
    fail(`header length ${n} runs past the end of the ${fileLength}-byte file (truncated?)`);
  return Number(n);
}

/**
 * Checks the header (its `text` bytes, which the length prefix delimits) against a data buffer of
 * `dataLength` bytes: UTF-8 JSON object, no duplicate keys, each entry's dtype, shape and data_offsets,
 * that the entries tile the data buffer exactly (no overlap, no hole, nothing after), metadata strings.
 */
function parseHeader(text: Uint8Array, dataLength: number, file: string): Header {
  const fail = failer(file);
  let json = '';
  try {
    json = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(text);
  } catch {
    fail('header is not valid UTF-8');
  }
  if (!json.startsWith('{')) fail(`header must start with '{', got ${JSON.stringify(json.slice(0, 16))}`);
  const depth = nesting(json);
  if (depth > MAX_HEADER_DEPTH)
    fail(`header nests ${depth} levels deep, more than the ${MAX_HEADER_DEPTH} a header can need`);
  let header: Record<string, unknown> = {}; // an object: the text starts with '{' and is valid JSON
  try {
    header = JSON.parse(json);
  } catch (err) {
    fail(`header is not valid JSON: ${(err as Error).message}`);
  }
  const dup = duplicateKey(json);
  if (dup !== undefined) fail(`header has the key ${JSON.stringify(dup)} twice`);

  const metadata: [string, string][] = [];
  const entries: Entry[] = [];
  for (const [name, value] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value))
        fail(`__metadata__ must be an object of strings, got ${describe(value)}`);
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__ '${k}' must be a string, got ${describe(v)}`);
        metadata.push([k, v as string]);
      }
      continue;
    }
    entries.push(parseEntry(name, value, dataLength, fail));
  }
  checkTiling(entries, dataLength, fail);
  const meta = Object.fromEntries(metadata);
  const checksum = meta[CHECKSUM_KEY];
  delete meta[CHECKSUM_KEY];
  return { dataStart: 8 + text.length, entries, metadata: meta, ...(checksum !== undefined && { checksum }) };
}

/** One tensor's entry: its fields, its dtype, and data_offsets that hold exactly count * element size bytes. */
function parseEntry(name: string, value: unknown, dataLength: number, fail: (why: string) => never): Entry {
  const where = `tensor '${name}'`;
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return fail(`${where}: entry must be an object, got ${describe(value)}`);
  const e = value as Record<string, unknown>;
  for (const field of ENTRY_FIELDS) if (!(field in e)) fail(`${where}: missing field '${field}'`);
  for (const field of Object.keys(e)) if (!ENTRY_FIELDS.includes(field)) fail(`${where}: unknown field '${field}'`);

  if (typeof e.dtype !== 'string') return fail(`${where}: dtype must be a string, got ${describe(e.dtype)}`);
  const code = e.dtype;
  const dtype = Object.hasOwn(FROM_CODE, code) ? FROM_CODE[code] : undefined;
  if (dtype === undefined) {
    return fail(
      UNSUPPORTED.includes(code)
        ? `${where}: dtype '${code}' is not supported (supported: ${SUPPORTED}; unsupported: ` +
            `${UNSUPPORTED.join(', ')})`
        : `${where}: unknown dtype '${code}' (supported: ${SUPPORTED})`,
    );
  }
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    return fail(`${where}: shape must be an array of non-negative integers, got ${describe(shape)}`);
  }
  // The result is float32 or float64 (at most 8 bytes an element): the count must stay a safe size for it too.
  const count = numel(shape);
  if (!Number.isSafeInteger(count * 8)) fail(`${where}: shape ${describe(shape)} is too large`);
  const offs = e.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((x) => Number.isSafeInteger(x) && x >= 0)) {
    return fail(`${where}: data_offsets must be two non-negative integers [begin, end], got ${describe(offs)}`);
  }
  const [begin, end] = offs as number[];
  if (begin > end) fail(`${where}: data_offsets [${begin}, ${end}] have begin > end`);
  if (end > dataLength)
    fail(`${where}: data_offsets [${begin}, ${end}] run past the ${dataLength}-byte data buffer (truncated file?)`);
  const bytes = count * CODE_SIZE[code];
  if (end - begin !== bytes) {
    fail(
      `${where}: data_offsets [${begin}, ${end}] hold ${end - begin} bytes, but shape ${describe(shape)} of ` +
        `${code} needs ${bytes}`,
    );
  }
  return { name, dtype, code, shape: [...shape], begin, end };
}

/** The entries must tile [0, dataLength): sorted by offsets, each begins where the previous ended. */
function checkTiling(entries: readonly Entry[], dataLength: number, fail: (why: string) => never): void {
  let cursor = 0;
  let prev = '';
  for (const e of fileOrder(entries)) {
    if (e.begin < cursor)
      fail(
        `tensor '${e.name}': data_offsets [${e.begin}, ${e.end}] overlap tensor '${prev}' (which ends at ${cursor})`,
      );
    if (e.begin > cursor)
      fail(`data buffer has a hole: bytes [${cursor}, ${e.begin}) belong to no tensor (before tensor '${e.name}')`);
    cursor = e.end;
    prev = e.name;
  }
  if (cursor !== dataLength)
    fail(`data buffer has a hole: its last ${dataLength - cursor} bytes (of ${dataLength}) belong to no tensor`);
}

function fileOrder(entries: readonly Entry[]): Entry[] {
  return [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
}

/** A digest started on the header as the writer laid it out; the data bytes follow, in file order. */
function startChecksum(h: Header): Hash {
  const layout = h.entries.map((e) => ({ name: e.name, code: e.code, shape: e.shape, offsets: [e.begin, e.end] }));
  return createHash('sha256').update(headerJson(layout, h.metadata));
}

function checkChecksum(h: Header, digest: Hash, fail: (why: string) => never): void {
  const hex = digest.digest('hex');
  if (hex !== h.checksum)
    fail(
      `checksum mismatch: the header or the data changed since the file was written (${CHECKSUM_KEY} ` +
        `${describe(h.checksum)}, content ${hex.slice(0, 16)}...)`,
    );
}

type FloatArray = Float32Array | Float64Array;
type OutArray = FloatArray | Int32Array;

/** A fresh array for an entry: its own dtype, or `floatAs` for a float tensor when given. */
function allocate(e: Entry, floatAs?: 'float32' | 'float64'): OutArray {
  const dtype = e.dtype !== 'int32' && floatAs ? floatAs : e.dtype;
  return new { float32: Float32Array, float64: Float64Array, int32: Int32Array }[dtype](numel(e.shape));
}

function dtypeOf(a: OutArray): DType {
  return a instanceof Float32Array ? 'float32' : a instanceof Float64Array ? 'float64' : 'int32';
}

/** Whether `out` takes the entry's bytes as they are (same element type): no conversion, no scratch copy. */
function sameLayout(code: string, out: OutArray): boolean {
  return (
    (code === 'F32' && out instanceof Float32Array) ||
    (code === 'F64' && out instanceof Float64Array) ||
    (code === 'I32' && out instanceof Int32Array)
  );
}

/** Converts a tensor's stored (little-endian) bytes into `out`, which has its element count. */
function decode(raw: Uint8Array, code: string, out: OutArray): void {
  const size = CODE_SIZE[code];
  if (sameLayout(code, out)) {
    new Uint8Array(out.buffer, out.byteOffset, out.byteLength).set(LITTLE_ENDIAN_HOST ? raw : swapBytes(raw, size));
    return;
  }
  // An aligned native-endian copy only when raw is unaligned or the host is big-endian. (Not raw.slice():
  // on a Node Buffer, as readFile gives, slice is a view.)
  const bytes = !LITTLE_ENDIAN_HOST ? swapBytes(raw, size) : raw.byteOffset % size ? new Uint8Array(raw) : raw;
  const n = raw.length / size;
  if (code === 'BF16') bf16Into(new Uint16Array(bytes.buffer, bytes.byteOffset, n), out as FloatArray);
  else if (code === 'F16') f16Into(new Uint16Array(bytes.buffer, bytes.byteOffset, n), out as FloatArray);
  else if (code === 'F64')
    out.set(new Float64Array(bytes.buffer, bytes.byteOffset, n)); // rounded to float32
  else out.set(new Float32Array(bytes.buffer, bytes.byteOffset, n)); // F32, widened (I32 is never converted)
}

/** BF16 is the top half of a float32: shift the bits up (exact, NaN payloads included). */
function bf16Into(src: Uint16Array, out: FloatArray): void {
  if (out instanceof Float32Array) {
    const bits = new Uint32Array(out.buffer, out.byteOffset, out.length);
    for (let i = 0; i < src.length; i++) bits[i] = src[i] << 16;
    return;
  }
  const f = new Float32Array(1);
  const bits = new Uint32Array(f.buffer);
  for (let i = 0; i < src.length; i++) {
    bits[0] = src[i] << 16;
    out[i] = f[0];
  }
}

let F16_TABLE: Float32Array | undefined;

/** IEEE half to float32 through a table of all 65536 values (each exact in float32). */
function f16Into(src: Uint16Array, out: FloatArray): void {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = halfToNumber(h);
  }
  const table = F16_TABLE;
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
}

/** One IEEE 754 binary16 value: sign, 5-bit exponent (bias 15), 10-bit fraction. */
export function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24; // zero and subnormals
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1024 + frac) * 2 ** (exp - 25);
}

/**
 * Parse a whole safetensors file, checking everything: the length prefix, the header (UTF-8 JSON
 * object, no duplicate keys), each entry's dtype, shape and data_offsets, that the entries tile the
 * data buffer exactly (no overlap, no hole, nothing after), that metadata values are strings, and the
 * writer's checksum when present. Each tensor's data is copied into a fresh typed array (so aligned, and
 * independent of `bytes`); F16 and BF16 tensors are converted to float32 (exactly: every value fits).
 */
export function parse(bytes: Uint8Array, opts: { file?: string } = {}): Safetensors {
  const file = opts.file ?? '<bytes>';
  const n = headerLength(bytes.subarray(0, 8), bytes.length, file);
  const h = parseHeader(bytes.subarray(8, 8 + n), bytes.length - 8 - n, file);
  if (h.checksum !== undefined) checkChecksum(h, startChecksum(h).update(bytes.subarray(h.dataStart)), failer(file));
  const tensors: [string, SafeTensor][] = [];
  for (const e of h.entries) {
    const out = allocate(e);
    decode(bytes.subarray(h.dataStart + e.begin, h.dataStart + e.end), e.code, out);
    tensors.push([e.name, { dtype: e.dtype, shape: e.shape, data: out }]);
  }
  return { tensors: Object.fromEntries(tensors), metadata: h.metadata };
}

/** Read and parse a file; every error names it. */
export async function loadSafetensors(path: string): Promise<Safetensors> {
  let bytes: Uint8Array;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw new SafetensorsError(`${path}: cannot read: ${(err as Error).message}`, { cause: err });
  }
  return parse(bytes, { file: path });
}

// ---------------------------------------------------------------------------------------------
// Reading tensor by tensor

/** A file's checked header: its metadata (without the writer's checksum) and its tensors, in header order. */
export interface SafetensorsHeader {
  metadata: Record<string, string>;
  /** `code` is the file's dtype (F32, BF16, ...), `dtype` what it reads as. */
  tensors: { name: string; code: string; dtype: DType; shape: number[] }[];
}

function publicHeader(h: Header): SafetensorsHeader {
  return {
    metadata: { ...h.metadata },
    tensors: h.entries.map((e) => ({ name: e.name, code: e.code, dtype: e.dtype, shape: [...e.shape] })),
  };
}

/**
 * Runs `use` on an open file and its checked header, then closes the file. Errors of the file system and
 * of the header name the file; what `use` throws passes through as it is.
 */
async function withHeader<T>(path: string, use: (fh: FileHandle, h: Header) => Promise<T>): Promise<T> {
  const fh = await io(path, () => open(path, 'r'));
  try {
    const { size } = await io(path, () => fh.stat());
    const prefix = await readAt(fh, path, new Uint8Array(Math.min(8, size)), 0);
    const n = headerLength(prefix, size, path);
    const h = parseHeader(await readAt(fh, path, new Uint8Array(n), 8), size - 8 - n, path);
    return await use(fh, h);
  } finally {
    await fh.close();
  }
}

/** A file-system call whose error becomes a SafetensorsError naming the file. */
async function io<T>(path: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    throw new SafetensorsError(`${path}: cannot read: ${(err as Error).message}`, { cause: err });
  }
}

/** Fills `into` from the file at `position` (read(2) may return less than asked); a short file is an error. */
async function readAt(fh: FileHandle, path: string, into: Uint8Array, position: number): Promise<Uint8Array> {
  for (let at = 0; at < into.length;) {
    const { bytesRead } = await io(path, () => fh.read(into, at, into.length - at, position + at));
    if (bytesRead === 0)
      throw new SafetensorsError(`${path}: the file ended at byte ${position + at} while reading (changed meanwhile?)`);
    at += bytesRead;
  }
  return into;
}

/** Read and check only a file's header (the length prefix and the header's bytes; the data is not read). */
export async function readSafetensorsHeader(path: string): Promise<SafetensorsHeader> {
  return withHeader(path, async (_fh, h) => publicHeader(h));
}

/** At most this many bytes are read at once when a skipped tensor's data is read only for the checksum. */
const SKIP_CHUNK = 1 << 24;

/**
 * Read a file tensor by tensor, checking the header as parse does: `each` gets every tensor, in the
 * order of the data, one read at a time, so memory beyond what `each` keeps is one tensor's file bytes
 * (none when its stored dtype is the result's). Float tensors are converted to `floatAs` when given
 * (F16 and BF16 exactly; F32 widened; F64 rounded to float32), else read as parse reads them. Tensors
 * `skip` names are not converted nor passed (their bytes are read only when the file has a checksum).
 * The writer's checksum, when present, covers the whole file and so is verified after the last tensor:
 * a caller must not use what `each` got when this rejects. Resolves with the header.
 */
export async function loadSafetensorsEach(
  path: string,
  each: (name: string, tensor: SafeTensor) => void | Promise<void>,
  opts: { floatAs?: 'float32' | 'float64'; skip?: (name: string) => boolean } = {},
): Promise<SafetensorsHeader> {
  return withHeader(path, async (fh, h) => {
    const digest = h.checksum !== undefined ? startChecksum(h) : undefined;
    for (const e of fileOrder(h.entries)) {
      const at = h.dataStart + e.begin;
      if (opts.skip?.(e.name)) {
        for (let from = 0; digest && from < e.end - e.begin; from += SKIP_CHUNK) {
          const chunk = new Uint8Array(Math.min(SKIP_CHUNK, e.end - e.begin - from));
          digest.update(await readAt(fh, path, chunk, at + from));
        }
        continue;
      }
      const out = allocate(e, opts.floatAs);
      const direct = LITTLE_ENDIAN_HOST && sameLayout(e.code, out);
      const raw = direct ? new Uint8Array(out.buffer, out.byteOffset, out.byteLength) : new Uint8Array(e.end - e.begin);
      await readAt(fh, path, raw, at);
      digest?.update(raw);
      if (!direct) decode(raw, e.code, out);
      await each(e.name, { dtype: dtypeOf(out), shape: [...e.shape], data: out });
    }
    if (digest) checkChecksum(h, digest, failer(path));
    return publicHeader(h);
  });
}

// ---------------------------------------------------------------------------------------------
// Helpers

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function describe(v: unknown): string {
  let s: string | undefined;
  try {
    s = JSON.stringify(v);
  } catch {
    return '(a value too deeply nested to print)';
  }
  return s === undefined ? String(v) : s.length > 60 ? s.slice(0, 57) + '...' : s;
}

/** How deep objects and arrays nest in a JSON text, counted outside strings. */
function nesting(text: string): number {
  let depth = 0;
  let max = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      for (i++; i < text.length && text.charCodeAt(i) !== 0x22; i++) if (text.charCodeAt(i) === 0x5c) i++;
    } else if (c === 0x7b || c === 0x5b) max = Math.max(max, ++depth);
    else if (c === 0x7d || c === 0x5d) depth--;
  }
  return max;
}

function swapBytes(bytes: Uint8Array, size: number): Uint8Array {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i += size) for (let j = 0; j < size; j++) out[i + j] = bytes[i + size - 1 - j];
  return out;
}

/**
 * The first key that occurs twice in one object of a JSON text (already known to be valid JSON).
 * JSON.parse keeps the last silently, which would hide a corrupted or ambiguous header.
 */
function duplicateKey(text: string): string | undefined {
  const stack: (Set<string> | null)[] = []; // a Set of keys per open object, null per open array
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '{') stack.push(new Set());
    else if (c === '[') stack.push(null);
    else if (c === '}' || c === ']') stack.pop();
    else if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const keys = stack[stack.length - 1];
      let k = j + 1;
      while (k < text.length && ' \t\n\r'.includes(text[k])) k++;
      if (keys && text[k] === ':') {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (keys.has(key)) return key;
        keys.add(key);
      }
      i = j;
    }
  }
  return undefined;
}
