// scalar_common.h: helpers of the scalar kernels: typed element loads, a wrapping accumulator row and its store.
#pragma once

#include <cstdint>
#include <vector>

#include "qkern/common.h"
#include "qkern/requant.h"

namespace qk {

// Reads element i of a uint8/int8 array as int32.
inline int32_t load_q(const void* base, DType t, int64_t i) {
  return t == DType::kUint8 ? int32_t{static_cast<const uint8_t*>(base)[i]}
                            : int32_t{static_cast<const int8_t*>(base)[i]};
}

// acc[j] += a * bc[j] with two's-complement wrap (eq. (6)); a and bc[j] are zero-point-centred, so
// each product is at most 255*255 in magnitude and the wrap happens only in the running sum.
inline void axpy_wrap(uint32_t* acc, int32_t a, const int32_t* bc, int64_t n) {
  const uint32_t ua = static_cast<uint32_t>(a);
  for (int64_t j = 0; j < n; ++j) acc[j] += ua * static_cast<uint32_t>(bc[j]);
}

// Initialises an accumulator row from the bias (or zero).
inline void init_acc(uint32_t* acc, const int32_t* bias, int64_t n) {
  for (int64_t j = 0; j < n; ++j) acc[j] = bias ? static_cast<uint32_t>(bias[j]) : 0u;
}

// Requantizes n accumulators (channel of column j = j % channel_count) and writes them to dst[0..n).
inline void store_row(const uint32_t* acc, int64_t n, int64_t channel_count, const OutputStage& os, void* dst) {
  for (int64_t j = 0; j < n; ++j) {
    const int32_t v = requantize_one(static_cast<int32_t>(acc[j]), os, j % channel_count);
    switch (os.out_dtype) {
      case DType::kInt32: static_cast<int32_t*>(dst)[j] = v; break;
      case DType::kUint8: static_cast<uint8_t*>(dst)[j] = static_cast<uint8_t>(v); break;
      case DType::kInt8: static_cast<int8_t*>(dst)[j] = static_cast<int8_t>(v); break;
    }
  }
}

inline int64_t out_elem_size(DType t) { return t == DType::kInt32 ? 4 : 1; }

// B (rows x cols, row stride ld) minus a per-column zero point, as int32: the centred weight matrix.
inline std::vector<int32_t> centre_matrix(const void* b, DType t, int64_t rows, int64_t cols, int64_t ld,
                                          const int32_t* zp, int64_t zp_period) {
  std::vector<int32_t> out(static_cast<size_t>(rows * cols));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[r * cols + c] = load_q(b, t, r * ld + c) - zp[c % zp_period];
  return out;
}

}  // namespace qk
