// model_ops.h: the integer ops of the model runtime besides GEMM and convolution (docs/model.md eqs. (M1)-(M6)).
//
// Every op equals python/qkern/reference/model_ops.py bit for bit: one fixed-point multiply with single
// rounding, (x*M + 2^(30-shift)) >> (31-shift) (eq. (M1)), evaluated exactly in int64.
#pragma once

#include <cstdint>

#include "qkern/common.h"

namespace qk {

// Eq. (M2): q_out = clamp(out_zp + mul(q_in - in_zp, multiplier, shift), qmin, qmax).
struct RescaleParams {
  int32_t in_zp, multiplier, shift, out_zp, qmin, qmax;
};

// Eq. (M3): each input's (q - zp) << 20 scaled by its multiplier, the sum scaled by the output multiplier.
struct AddParams {
  int32_t zp1, m1, s1, zp2, m2, s2, mo, so, out_zp, qmin, qmax;
};

// Rows of `cols` elements: src row r at src + r*src_stride, dst row r at dst + r*dst_stride (elements).
void model_rescale(DType src_t, const void* src, int64_t src_stride, DType dst_t, void* dst, int64_t dst_stride,
                   int64_t rows, int64_t cols, const RescaleParams& p);
// Rows of `cols` bytes copied: src row r at src + r*src_stride, dst row r at dst + r*dst_stride (a concat
// part already on the output's grid, placed at its channel offset).
void model_copy_rows(const void* src, int64_t src_stride, void* dst, int64_t dst_stride, int64_t rows, int64_t cols);
void model_add(DType a_t, const void* a, DType b_t, const void* b, DType out_t, void* out, int64_t n,
               const AddParams& p);
// out[i] = table[a_byte[i] * 256 + b_byte[i]]: a binary op of two byte tensors made once as a 64 KiB table
// (the model's add: every (a, b) pair evaluated by model_add when the step is made).
void model_pair_table(const uint8_t* a, const uint8_t* b, const uint8_t* table, uint8_t* out, int64_t n);
// NHWC max pool, floor mode; padded cells never win (every window holds a real cell: pad <= k / 2).
void model_max_pool(DType t, const void* x, int64_t n, int64_t h, int64_t w, int64_t c, int k, int stride, int pad,
                    void* out, int64_t ho, int64_t wo);
// Eq. (M5): NHWC average pool without padding: int32 window sums of (q - in_zp), then one rescale.
void model_avg_pool(DType in_t, const void* x, int64_t n, int64_t h, int64_t w, int64_t c, int k, int stride,
                    DType out_t, void* out, int64_t ho, int64_t wo, const RescaleParams& p);
// Eq. (M5) with one window of h*w pixels per image: out is [n, c].
void model_global_avg_pool(DType in_t, const void* x, int64_t n, int64_t hw, int64_t c, DType out_t, void* out,
                           const RescaleParams& p);

// One table per ISA level; the implementation is csrc/qkern/model_ops_impl.inc compiled with that level's flags.
struct ModelOpsTable {
  decltype(&model_rescale) rescale;
  decltype(&model_add) add;
  decltype(&model_max_pool) max_pool;
  decltype(&model_avg_pool) avg_pool;
  decltype(&model_global_avg_pool) global_avg_pool;
};
const ModelOpsTable& model_ops__scalar();
const ModelOpsTable& model_ops__avx2();

}  // namespace qk
