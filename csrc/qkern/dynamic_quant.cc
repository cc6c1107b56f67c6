// dynamic_quant.cc: eq. (18) qparams and the per-tensor / per-row quantization driver (threads, ISA choice).
#include "qkern/dynamic_quant.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "qkern/isa.h"
#include "qkern/quantize.h"
#include "qkern/threadpool.h"

namespace qk {

namespace {

// torch's floor on a dynamic scale (quant_utils' SMALL_SCALE_THRESHOLD), part of eq. (18).
constexpr float kSmallScale = 6.1e-5f;
// Elements of x below which the work stays on the calling thread.
constexpr int64_t kParallelElements = int64_t{1} << 16;

// The row kernels are the elementwise ones of the current ISA (quantize.h): eq. (4) and a min/max pass.
void minmax(const float* x, int64_t n, float* mn, float* mx, bool* nan_free) {
  if (n == 0) {  // an empty row's range is [0, 0] (eq. (18) widens every range to contain 0 anyway)
    *mn = *mx = 0.0f;
    *nan_free = true;
    return;
  }
  *nan_free = !elem_kernels(current_isa()).min_max(x, n, mn, mx);
}

void quantize_row(const float* x, int64_t n, const ActQParams& p, bool to_int8, uint8_t* q) {
  const float inv = 1.0f / p.scale, zp = static_cast<float>(p.zero_point);
  // The range was checked finite, so no NaN can come out of the row.
  elem_kernels(current_isa())
      .quantize_fma(x, n, inv, zp, static_cast<float>(p.qmin), static_cast<float>(p.qmax),
                    to_int8 ? DType::kInt8 : DType::kUint8, q);
}

bool finite_range(float mn, float mx, bool nan_free) { return nan_free && std::isfinite(mn) && std::isfinite(mx); }

// Runs fn(begin, end) over [0, rows) in blocks: on the pool when there are enough elements.
template <class F>
void for_row_blocks(int64_t rows, int64_t row_len, F fn) {
  const int64_t per_block = std::max<int64_t>(1, kParallelElements / 4 / std::max<int64_t>(row_len, 1));
  const int64_t blocks = (rows + per_block - 1) / per_block;
  const auto run = [&](int64_t b) { fn(b * per_block, std::min(rows, (b + 1) * per_block)); };
  if (rows * row_len >= kParallelElements && blocks > 1) parallel_for(blocks, run);
  else for (int64_t b = 0; b < blocks; ++b) run(b);
}

}  // namespace

ActQParams choose_dynamic_qparams(float min_val, float max_val, DynamicScheme scheme, bool reduce_range) {
  float lo = std::min(min_val, 0.0f), hi = std::max(max_val, 0.0f);
  if (scheme == DynamicScheme::kSymmetricInt8) {
    const int32_t qmax = reduce_range ? 63 : 127;
    double scale = static_cast<double>(std::max(-lo, hi)) / qmax;
    if (static_cast<float>(scale) == 0.0f || std::isinf(1.0f / static_cast<float>(scale))) scale = 0.1;
    if (scale < kSmallScale) scale = kSmallScale;
    return {static_cast<float>(scale), 0, -qmax, qmax};
  }
  const int32_t qmin = 0, qmax = reduce_range ? 127 : 255;
  double scale = (static_cast<double>(hi) - lo) / (qmax - qmin);
  if (static_cast<float>(scale) == 0.0f || std::isinf(1.0f / static_cast<float>(scale))) scale = 0.1;
  if (scale < kSmallScale) {  // the range grows with the scale
    const float small_scale = static_cast<float>(scale);
    scale = kSmallScale;
    if (lo == 0.0f) {
      hi = kSmallScale * static_cast<float>(qmax - qmin);
    } else if (hi == 0.0f) {
      lo = -kSmallScale * static_cast<float>(qmax - qmin);
    } else {
      const float amplifier = kSmallScale / small_scale;
      lo *= amplifier;
      hi *= amplifier;
    }
  }
  // The zero point from the end whose terms are smaller (the smaller rounding error), nudged to an integer.
  const double from_min = qmin - lo / scale, from_max = qmax - hi / scale;
  const double error_min = std::abs(qmin) - std::abs(lo / scale), error_max = std::abs(qmax) - std::abs(hi / scale);
  const double initial = error_min < error_max ? from_min : from_max;
  const int32_t zp = initial < qmin ? qmin : initial > qmax ? qmax : static_cast<int32_t>(std::nearbyint(initial));
  return {static_cast<float>(scale), zp, 0, 255};
}

void quantize_dynamic(const float* x, int64_t m, int64_t k, int64_t ldx, DynamicScheme scheme, bool per_row,
                      bool reduce_range, void* q, float* scale, int32_t* zero_point) {
  const bool to_int8 = scheme == DynamicScheme::kSymmetricInt8;
  uint8_t* out = static_cast<uint8_t*>(q);
  if (per_row) {
    // One pass per row: its range, its qparams, its quantization while the row is in L1. A row with NaN
    // or inf is not quantized; the error is raised after the (possibly threaded) loop.
    std::atomic<bool> bad{false};
    for_row_blocks(m, k, [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        float mn = 0.0f, mx = 0.0f;
        bool nan_free = true;
        minmax(x + r * ldx, k, &mn, &mx, &nan_free);
        if (!finite_range(mn, mx, nan_free)) {
          bad.store(true, std::memory_order_relaxed);
          continue;
        }
        const ActQParams p = choose_dynamic_qparams(mn, mx, scheme, reduce_range);
        scale[r] = p.scale;
        zero_point[r] = p.zero_point;
        quantize_row(x + r * ldx, k, p, to_int8, out + r * k);
      }
    });
    QK_REQUIRE(!bad.load(), "x must be finite (it holds NaN or inf)");
    return;
  }
  const int64_t per_block = std::max<int64_t>(1, kParallelElements / 4 / std::max<int64_t>(k, 1));
  const int64_t blocks = std::max<int64_t>(1, (m + per_block - 1) / per_block);
  std::vector<float> lo(static_cast<size_t>(blocks), 0.0f), hi(static_cast<size_t>(blocks), 0.0f);
  std::vector<char> clean(static_cast<size_t>(blocks), 1);
  for_row_blocks(m, k, [&](int64_t begin, int64_t end) {
    const int64_t b = begin / per_block;
    float bmn = INFINITY, bmx = -INFINITY;
    bool bclean = true;
    for (int64_t r = begin; r < end; ++r) {
      float mn = 0.0f, mx = 0.0f;
      bool nan_free = true;
      minmax(x + r * ldx, k, &mn, &mx, &nan_free);
      bmn = std::fmin(bmn, mn);
      bmx = std::fmax(bmx, mx);
      bclean = bclean && nan_free;
    }
    lo[b] = bmn;
    hi[b] = bmx;
    clean[b] = bclean;
  });
  float mn = INFINITY, mx = -INFINITY;
  bool nan_free = true;
  for (int64_t b = 0; b < blocks; ++b) {
    mn = std::fmin(mn, lo[b]);
    mx = std::fmax(mx, hi[b]);
    nan_free = nan_free && clean[b];
  }
  if (m == 0) mn = mx = 0.0f;
  QK_REQUIRE(finite_range(mn, mx, nan_free), "x must be finite (it holds NaN or inf)");
  const ActQParams p = choose_dynamic_qparams(mn, mx, scheme, reduce_range);
  scale[0] = p.scale;
  zero_point[0] = p.zero_point;
  for_row_blocks(m, k, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) quantize_row(x + r * ldx, k, p, to_int8, out + r * k);
  });
}

}  // namespace qk
