// model_ops.cc: dispatch of the model ops to the selected ISA level (AVX-512 machines take the AVX2 code).
#include "qkern/model_ops.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "qkern/isa.h"
#include "qkern/threadpool.h"

namespace qk {

namespace {

const ModelOpsTable& table() {
  return current_isa() == Isa::kScalar ? model_ops__scalar() : model_ops__avx2();
}

// Eq. (4) of docs/quantization.md on a block: dst[i] = clamp(rne(fma_f32(src[i], inv, zf))); NaN -> 0, and
// the return value says whether there was one.
bool quantize_block_scalar(const float* src, int64_t len, float inv, float zf, float lo, float hi, int32_t* dst) {
  bool bad = false;
  for (int64_t i = 0; i < len; ++i) {
    const float f = std::fma(src[i], inv, zf);  // one rounding, as torch's fused quantize
    const bool is_nan = std::isnan(f);
    bad |= is_nan;
    dst[i] = is_nan ? 0 : static_cast<int32_t>(std::nearbyint(std::clamp(f, lo, hi)));
  }
  return bad;
}

// The FMA block is used where the CPU has FMA3 (not part of the AVX2 level's CPUID check) and the selected
// level is not scalar; std::fma and vfmadd round identically.
using QuantizeBlock = bool (*)(const float*, int64_t, float, float, float, float, int32_t*);
QuantizeBlock quantize_block() {
  static const bool fma = __builtin_cpu_supports("fma") && __builtin_cpu_supports("avx2");
  return fma && current_isa() != Isa::kScalar ? quantize_block__avx2_fma : quantize_block_scalar;
}

// d[i * c + ch] = planes[ch * ld + i]: the block's planes interleaved into NHWC order, written in order.
template <typename T, int C>
void interleave_c(T* __restrict d, const int32_t* __restrict planes, int64_t len, int64_t ld) {
  for (int64_t i = 0; i < len; ++i)
    for (int ch = 0; ch < C; ++ch) d[i * C + ch] = static_cast<T>(planes[ch * ld + i]);
}

template <typename T>
void interleave(T* __restrict d, const int32_t* __restrict planes, int64_t c, int64_t len, int64_t ld) {
  switch (c) {  // image inputs: a constant channel count unrolls the inner loop
    case 1: return interleave_c<T, 1>(d, planes, len, ld);
    case 3: return interleave_c<T, 3>(d, planes, len, ld);
    case 4: return interleave_c<T, 4>(d, planes, len, ld);
    default:
      for (int64_t i = 0; i < len; ++i)
        for (int64_t ch = 0; ch < c; ++ch) d[i * c + ch] = static_cast<T>(planes[ch * ld + i]);
  }
}

// Tasks are blocks of pixels of one image: each quantizes its block of every channel plane (contiguous
// reads), then writes the block's NHWC bytes contiguously.
template <typename T>
bool quantize_t(const float* x, int64_t n, int64_t c, int64_t hw, float inv, int32_t zp, int32_t qmin, int32_t qmax,
                T* out) {
  const float zf = static_cast<float>(zp), lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  const QuantizeBlock block = quantize_block();
  const int64_t pixels = std::max<int64_t>(16, 4096 / std::max<int64_t>(c, 1));  // ~16 KiB of int32 per block
  const int64_t blocks = (hw + pixels - 1) / pixels;
  std::atomic<bool> nan{false};
  parallel_for(n * blocks, [&](int64_t t) {
    const int64_t img = t / blocks, p0 = (t % blocks) * pixels, len = std::min(pixels, hw - p0);
    thread_local std::vector<int32_t> tmp;
    tmp.resize(static_cast<size_t>(c * pixels));
    bool bad = false;
    for (int64_t ch = 0; ch < c; ++ch)
      bad |= block(x + (img * c + ch) * hw + p0, len, inv, zf, lo, hi, tmp.data() + ch * pixels);
    interleave(out + (img * hw + p0) * c, tmp.data(), c, len, pixels);
    if (bad) nan.store(true, std::memory_order_relaxed);
  });
  return !nan.load();
}

template <typename T>
void dequantize_plane(float* __restrict dst, const T* __restrict src, int64_t stride, int64_t n, float scale,
                      int32_t zp) {
  for (int64_t i = 0; i < n; ++i) dst[i] = scale * static_cast<float>(static_cast<int32_t>(src[i * stride]) - zp);
}

template <typename T>
void dequantize_t(const T* q, int64_t n, int64_t hw, int64_t c, float scale, int32_t zp, float* out) {
  parallel_for(n * c, [&](int64_t t) {
    const int64_t img = t / c, ch = t % c;
    dequantize_plane(out + t * hw, q + img * hw * c + ch, c, hw, scale, zp);
  });
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

bool model_quantize_nchw(const float* x, int64_t n, int64_t c, int64_t hw, float inv_scale, int32_t zero_point,
                         int32_t qmin, int32_t qmax, DType out_t, void* out) {
  if (out_t == DType::kUint8)
    return quantize_t(x, n, c, hw, inv_scale, zero_point, qmin, qmax, static_cast<uint8_t*>(out));
  return quantize_t(x, n, c, hw, inv_scale, zero_point, qmin, qmax, static_cast<int8_t*>(out));
}

void model_dequantize_nchw(DType in_t, const void* q, int64_t n, int64_t hw, int64_t c, float scale,
                           int32_t zero_point, float* out) {
  if (in_t == DType::kUint8) return dequantize_t(static_cast<const uint8_t*>(q), n, hw, c, scale, zero_point, out);
  dequantize_t(static_cast<const int8_t*>(q), n, hw, c, scale, zero_point, out);
}

void model_rescale(DType src_t, const void* src, int64_t src_stride, DType dst_t, void* dst, int64_t dst_stride,
                   int64_t rows, int64_t cols, const RescaleParams& p) {
  table().rescale(src_t, src, src_stride, dst_t, dst, dst_stride, rows, cols, p);
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
