// model_ops.cc: dispatch of the model ops to the selected ISA level (AVX-512 machines take the AVX2 code).
#include "qkern/model_ops.h"

#include <cstring>

#include <algorithm>

#include "qkern/isa.h"
#include "qkern/threadpool.h"

namespace qk {

namespace {

const ModelOpsTable& table() {
  return current_isa() == Isa::kScalar ? model_ops__scalar() : model_ops__avx2();
}

void pair_table_run(const uint8_t* __restrict a, const uint8_t* __restrict b, const uint8_t* __restrict table,
                    uint8_t* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = table[(static_cast<unsigned>(a[i]) << 8) | b[i]];
}

}  // namespace

void model_pair_table(const uint8_t* a, const uint8_t* b, const uint8_t* table, uint8_t* out, int64_t n) {
  constexpr int64_t kChunk = 16384;
  parallel_for((n + kChunk - 1) / kChunk, [=](int64_t t) {
    const int64_t i0 = t * kChunk;
    pair_table_run(a + i0, b + i0, table, out + i0, std::min(kChunk, n - i0));
  });
}

void model_rescale(DType src_t, const void* src, int64_t src_stride, DType dst_t, void* dst, int64_t dst_stride,
                   int64_t rows, int64_t cols, const RescaleParams& p) {
  table().rescale(src_t, src, src_stride, dst_t, dst, dst_stride, rows, cols, p);
}

namespace {

// A constant row length: the copy compiles to a few moves per row instead of a library call.
template <int kCols>
void copy_rows_fixed(const uint8_t* s, int64_t ss, uint8_t* d, int64_t ds, int64_t rows) {
  for (int64_t r = 0; r < rows; ++r) std::memcpy(d + r * ds, s + r * ss, kCols);
}

}  // namespace

void model_copy_rows(const void* src, int64_t src_stride, void* dst, int64_t dst_stride, int64_t rows, int64_t cols) {
  const auto* s = static_cast<const uint8_t*>(src);
  auto* d = static_cast<uint8_t*>(dst);
  switch (cols) {
#define QK_FIXED(N) \
  case N: return copy_rows_fixed<N>(s, src_stride, d, dst_stride, rows);
    QK_FIXED(1) QK_FIXED(2) QK_FIXED(3) QK_FIXED(4) QK_FIXED(8) QK_FIXED(16) QK_FIXED(24) QK_FIXED(32) QK_FIXED(64)
#undef QK_FIXED
    default:
      for (int64_t r = 0; r < rows; ++r) std::memcpy(d + r * dst_stride, s + r * src_stride, static_cast<size_t>(cols));
  }
}

void model_add(DType a_t, const void* a, DType b_t, const void* b, DType out_t, void* out, int64_t n,
               const AddParams& p) {
  table().add(a_t, a, b_t, b, out_t, out, n, p);
}

void model_max_pool(DType t, const void* x, int64_t n, int64_t h, int64_t w, int64_t c, int k, int stride, int pad,
                    void* out, int64_t ho, int64_t wo) {
  table().max_pool(t, x, n, h, w, c, k, stride, pad, out, ho, wo);
}

void model_avg_pool(DType in_t, const void* x, int64_t n, int64_t h, int64_t w, int64_t c, int k, int stride,
                    DType out_t, void* out, int64_t ho, int64_t wo, const RescaleParams& p) {
  table().avg_pool(in_t, x, n, h, w, c, k, stride, out_t, out, ho, wo, p);
}

void model_global_avg_pool(DType in_t, const void* x, int64_t n, int64_t hw, int64_t c, DType out_t, void* out,
                           const RescaleParams& p) {
  table().global_avg_pool(in_t, x, n, hw, c, out_t, out, p);
}

}  // namespace qk
