// requant.h: the output stage (int32 accumulator + bias -> int32/uint8/int8) and its per-element rule.
#pragma once

#include <cmath>
#include <cstdint>

#include "qkern/common.h"
#include "qkern/fixedpoint.h"

namespace qk {

// kFloat is not a requantization: the float32 output form of eq. (19), whose elements are float32 (4 bytes,
// like int32: out_dtype stays kInt32 for the element size).
enum class RequantMode : int { kRaw = 0, kGemmlowp = 1, kSingle = 2, kFp32 = 3, kFloat = 4 };

// Per-output-channel parameters, already expanded to one entry per column by the caller (a per-tensor
// Requant repeats its scalar). Unused arrays may be null: `multiplier`/`shift` for kFp32 and kFloat,
// `fmultiplier` for the fixed-point modes, all three for kRaw. kFloat: `fmultiplier` holds the weight
// scales s_w[n] and `fbias` the float32 bias (zeros when there is none).
struct OutputStage {
  RequantMode mode = RequantMode::kRaw;
  DType out_dtype = DType::kInt32;
  const int32_t* multiplier = nullptr;
  const int32_t* shift = nullptr;
  const float* fmultiplier = nullptr;
  int32_t zero_point = 0;
  int32_t qmin = 0;
  int32_t qmax = 0;
  // Kernels with 64-bit lane shifts (avx512vnni): the fixed-point modes as one multiply, add and shift per
  // column (see WideRow), or null (other ISAs, "fp32", or a "gemmlowp" stage with some shift > 0).
  const int64_t* wide = nullptr;
  // "fp32" with every |multiplier| < 1: |float(acc) * m| < 2^31, so the float-to-int conversion cannot
  // overflow and the saturating narrowing alone clamps (see store_row_fast). Set by pack_b.
  bool fp32_in_range = false;
  // kFloat only.
  const float* fbias = nullptr;
  // kFloat with a zero point per A row (eq. (20)): colsum[n] - K * zb[n] of B as packed (wrapping), so that
  // a kernel that ran with zero point 0 subtracts za[m] * zp_colsum[n]. Set by pack_b.
  const int32_t* zp_colsum = nullptr;
  // kFloat, per call, the scalar kernel only (tile kernels get them in TileArgs): s_a and z_a of each row
  // of A (row_zp null: the call's single zero point).
  const float* row_scale = nullptr;
  const int32_t* row_zp = nullptr;
};

// OutputStage::wide holds, per group of 16 columns, kWideRows vectors of 8 int64 lanes: each quantity
// for the even columns of the group (lane i: column 16g + 2i), then for the odd ones. Per column, with
// p = acc * multiplier (exact int64):
//   r = (p + addend - (p < -2^30 ? correction : 0)) >> shift       (arithmetic shift)
// "gemmlowp", shift s <= 0, e = -s: eq. (17): addend = 2^30 + (e > 0 ? 2^(30+e) : 0),
//     correction = (e > 0 ? 2^31 : 0), shift = 31 + e; r is MUL_GEMMLOWP and fits in int32.
// "single": eq. (12): addend = 2^(30-s), correction = 0, shift = 31 - s; r is MUL_SINGLE (int64).
enum WideRow : int { kWideMultiplier = 0, kWideAddend = 2, kWideCorrection = 4, kWideShift = 6, kWideRows = 8 };

// True when `mode` has a WideRow form for these shifts (gemmlowp needs every shift <= 0).
inline bool has_wide_form(RequantMode mode, const int32_t* shift, int64_t n) {
  if (mode == RequantMode::kSingle) return true;
  if (mode != RequantMode::kGemmlowp) return false;
  for (int64_t j = 0; j < n; ++j)
    if (shift[j] > 0) return false;
  return true;
}

// Fills the WideRow table for columns [0, groups*16) (out: groups * kWideRows * 8 entries).
inline void build_wide_stage(RequantMode mode, const int32_t* multiplier, const int32_t* shift, int64_t groups,
                             int64_t* out) {
  for (int64_t j = 0; j < groups * 16; ++j) {
    int64_t* g = out + j / 16 * kWideRows * 8;
    const int64_t lane = j % 16 / 2, odd = j % 2;
    const int64_t s = shift[j];
    int64_t addend, correction = 0, total;
    if (mode == RequantMode::kGemmlowp) {
      const int64_t e = -s;
      addend = (int64_t{1} << 30) + (e > 0 ? int64_t{1} << (30 + e) : 0);
      correction = e > 0 ? int64_t{1} << 31 : 0;
      total = 31 + e;
    } else {
      total = 31 - s;
      addend = int64_t{1} << (total - 1);
    }
    g[(kWideMultiplier + odd) * 8 + lane] = multiplier[j];
    g[(kWideAddend + odd) * 8 + lane] = addend;
    g[(kWideCorrection + odd) * 8 + lane] = correction;
    g[(kWideShift + odd) * 8 + lane] = total;
  }
}

// Eq. (14)-(16): requantize one accumulator that already includes the bias, for output column `col`.
// The zero point is added exactly (int64) before the clamp, so no intermediate can wrap.
inline int32_t requantize_one(int32_t acc, const OutputStage& os, ptrdiff_t col) {
  int64_t r = acc;
  switch (os.mode) {
    case RequantMode::kRaw:
    case RequantMode::kFloat:  // no integer result: see float_output_one
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

// Eq. (19): the float32 output of one accumulator (bias and zero points already in it, exact int32) for
// a row of scale `a_scale` and column `col`. Three float32 roundings in this order; the build has
// -ffp-contract=off, so no FMA fuses them, and the SIMD kernels use separate multiply and add.
inline float float_output_one(int32_t acc, float a_scale, const OutputStage& os, ptrdiff_t col) {
  const float scale = a_scale * os.fmultiplier[col];
  const float product = static_cast<float>(acc) * scale;
  return product + os.fbias[col];
}

}  // namespace qk
