// requant.h: the output stage (int32 accumulator + bias -> int32/uint8/int8) and its per-element rule.
#pragma once

#include <cmath>
#include <cstdint>

#include "qkern/common.h"
#include "qkern/fixedpoint.h"

namespace qk {

enum class RequantMode : int { kRaw = 0, kGemmlowp = 1, kSingle = 2, kFp32 = 3 };

// Per-output-channel parameters, already expanded to one entry per column by the caller (a per-tensor
// Requant repeats its scalar). Unused arrays may be null: `multiplier`/`shift` for kFp32, `fmultiplier`
// for the fixed-point modes, all three for kRaw.
struct OutputStage {
  RequantMode mode = RequantMode::kRaw;
  DType out_dtype = DType::kInt32;
  const int32_t* multiplier = nullptr;
  const int32_t* shift = nullptr;
  const float* fmultiplier = nullptr;
  int32_t zero_point = 0;
  int32_t qmin = 0;
  int32_t qmax = 0;
};

// Eq. (14)-(16): requantize one accumulator that already includes the bias, for output column `col`.
// The zero point is added exactly (int64) before the clamp, so no intermediate can wrap.
inline int32_t requantize_one(int32_t acc, const OutputStage& os, ptrdiff_t col) {
  int64_t r = acc;
  switch (os.mode) {
    case RequantMode::kRaw:
      return acc;
    case RequantMode::kGemmlowp:
      r = int64_t{multiply_by_quantized_multiplier_gemmlowp(acc, os.multiplier[col], os.shift[col])} +
          os.zero_point;
      break;
    case RequantMode::kSingle:
      r = multiply_by_quantized_multiplier_single(acc, os.multiplier[col], os.shift[col]) + os.zero_point;
      break;
    case RequantMode::kFp32: {
      // float32(acc) rounds to nearest even; the product is one float32 rounding (no FMA: the file is
      // built with -ffp-contract=off); nearbyint is round-half-even in the default environment.
      const float scaled = static_cast<float>(acc) * os.fmultiplier[col];
      const double rounded = static_cast<double>(std::nearbyint(scaled)) + os.zero_point;
      if (rounded <= os.qmin) return os.qmin;
      if (rounded >= os.qmax) return os.qmax;
      return static_cast<int32_t>(rounded);
    }
  }
  if (r < os.qmin) return os.qmin;
  if (r > os.qmax) return os.qmax;
  return static_cast<int32_t>(r);
}

}  // namespace qk
