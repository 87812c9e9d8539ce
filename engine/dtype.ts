// Data types and the typed arrays behind them. Not a tensor: just the element-level vocabulary.
// float64 exists on the CPU backend only (WGSL has no f64); it is for gradchecks and golden references.

export type DType = 'float32' | 'float64' | 'int32';
export type TypedArray = Float32Array | Float64Array | Int32Array;

export const DTYPES: readonly DType[] = ['float32', 'float64', 'int32'];

export function isFloat(dtype: DType): boolean {
  return dtype !== 'int32';
}

/** A zeroed array of `size` elements; one the process cannot allocate is refused in one line. */
export function arrayFor(dtype: DType, size: number): TypedArray {
  try {
    switch (dtype) {
      case 'float32':
        return new Float32Array(size);
      case 'float64':
        return new Float64Array(size);
      case 'int32':
        return new Int32Array(size);
    }
  } catch (e) {
    const bytes = size * (dtype === 'float64' ? 8 : 4);
    throw new Error(`cpu: cannot allocate ${size} ${dtype} elements (${bytes} bytes): ${(e as Error).message}`, {
      cause: e,
    });
  }
}

export function dtypeOf(data: TypedArray): DType {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Float64Array) return 'float64';
  return 'int32';
}

export function checkDType(op: string, dtype: string): DType {
  if (!(DTYPES as readonly string[]).includes(dtype)) {
    throw new Error(`${op}: unknown dtype '${dtype}', expected one of ${DTYPES.join(', ')}`);
  }
  return dtype as DType;
}
