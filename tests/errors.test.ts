// Errors a user can act on: each names the op and the offending shapes, axis, dtype or device.

import { describe, expect, test } from 'vitest';
import * as E from '../engine/index.js';

describe('errors', () => {
  test('shape mismatches name the op and both shapes', () => {
    expect(() => E.add(E.zeros([2, 3]), E.zeros([4, 3]))).toThrow(
      /add: shapes \[2, 3\] and \[4, 3\] cannot be broadcast/,
    );
    expect(() => E.matmul(E.zeros([2, 3]), E.zeros([4, 5]))).toThrow(
      /matmul: inner dimensions differ: \[2, 3\] @ \[4, 5\] \(3 vs 4\)/,
    );
    expect(() => E.zeros([6]).reshape([4, -1])).toThrow(/reshape: cannot reshape \[6\].*\[4, -1\]/);
    expect(() => E.cat([E.zeros([2, 3]), E.zeros([2, 4])], 0)).toThrow(
      /cat: shapes \[2, 3\], \[2, 4\] differ outside dimension 0/,
    );
    expect(() => E.zeros([2, 3]).slice([1, 0], [2, 3])).toThrow(/slice:.*out of bounds for \[2, 3\]/);
    expect(() => E.zeros([2]).expand([3])).toThrow(/expand: cannot expand \[2\] to \[3\]/);
    expect(() => E.targetLogProb(E.zeros([2, 5]), E.zeros([3], { dtype: 'int32' }))).toThrow(
      /targets \[3\] must be logits \[2, 5\]/,
    );
    expect(() => E.scaledDotProductAttention(E.zeros([1, 4, 2]), E.zeros([1, 3, 2]), E.zeros([1, 3, 2]))).toThrow(
      /attention:.*T <= S/,
    );
    expect(() => E.layerNorm(E.zeros([2, 4]), E.ones([3]))).toThrow(/layerNorm: weight \[3\]/);
  });

  test('bad axes, dtypes and devices say which and what was expected', async () => {
    expect(() => E.zeros([2, 3]).sum(2)).toThrow(
      /sum: axis 2 is out of range for a tensor of rank 2 \(expected -2\.\.1\)/,
    );
    expect(() => E.zeros([2, 3]).permute([0, 0])).toThrow(/not a permutation/);
    expect(() => E.add(E.zeros([2]), E.zeros([2], { dtype: 'float64' }))).toThrow(
      /add: dtypes differ \(float32 \[2\] vs float64 \[2\]\)/,
    );
    expect(() => E.zeros([2], { dtype: 'int32' }).exp()).toThrow(/exp: expected a float tensor.*int32/);
    expect(() => E.indexSelect(E.zeros([3, 2]), 0, E.zeros([2]))).toThrow(
      /indexSelect: index must be int32, got float32/,
    );
    expect(() => E.indexSelect(E.zeros([3, 2]), 0, E.tensor([5], { dtype: 'int32' }))).toThrow(
      /index 5 is out of range for dimension 0 of size 3/,
    );
    expect(() => E.zeros([2], { dtype: 'bfloat16' as E.DType })).toThrow(/unknown dtype 'bfloat16'/);
    expect(() => E.zeros([2], { device: 'webgpu' })).toThrow(/device 'webgpu' has no backend registered/);
    expect(() => E.tensor([1, 2, 3], [2, 2])).toThrow(/3 values do not fill shape \[2, 2\]/);
    expect(() => E.tensor([[1, 2], [3]])).toThrow(/ragged/);
    await expect(E.zeros([2, 3]).item()).rejects.toThrow(/item: tensor has shape \[2, 3\]/);
  });
});
