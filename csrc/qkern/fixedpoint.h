// fixedpoint.h: the normative scalar fixed-point primitives of requantization (docs/quantization.md §5).
//
// Every SIMD epilogue must agree with these functions bit for bit; python/qkern/fixedpoint.py mirrors
// them in NumPy and the tests compare the two on edge values and random pairs.
#pragma once

#include <cstdint>
#include <limits>

namespace qk {

constexpr int32_t kInt32Min = std::numeric_limits<int32_t>::min();
constexpr int32_t kInt32Max = std::numeric_limits<int32_t>::max();

// Eq. (9): SaturatingRoundingDoublingHighMul. gemmlowp writes it with a sign-dependent nudge and a
// truncating division; for every int64 product that equals floor((a*b + 2^30) / 2^31) (ties toward
// +inf), which is what we compute. The only overflow, INT32_MIN * INT32_MIN, saturates to INT32_MAX.
inline int32_t saturating_rounding_doubling_high_mul(int32_t a, int32_t b) {
  if (a == kInt32Min && b == kInt32Min) return kInt32Max;
  const int64_t ab = static_cast<int64_t>(a) * static_cast<int64_t>(b);
  return static_cast<int32_t>((ab + (int64_t{1} << 30)) >> 31);
}

// Eq. (10): RoundingDivideByPOT, x / 2^exponent rounded to nearest, ties away from zero. 0 <= exponent <= 31.
inline int32_t rounding_divide_by_pot(int32_t x, int exponent) {
  const int32_t mask = static_cast<int32_t>((int64_t{1} << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

// Eq. (11): x * 2^exponent saturated to int32 (gemmlowp ShiftLeft). 0 <= exponent <= 31.
inline int32_t saturating_shift_left(int32_t x, int exponent) {
  const int64_t wide = static_cast<int64_t>(x) * (int64_t{1} << exponent);
  if (wide > kInt32Max) return kInt32Max;
  if (wide < kInt32Min) return kInt32Min;
  return static_cast<int32_t>(wide);
}

// Eq. (12): single-rounding multiply (TFLite/ruy): (x*M + 2^(30-shift)) >> (31-shift), ties toward +inf.
// -31 <= shift <= 30, 0 <= multiplier < 2^31. Returned exactly as int64 (it exceeds int32 only for
// shift > 0 with a large x); the requantization clamp saturates it.
inline int64_t multiply_by_quantized_multiplier_single(int32_t x, int32_t multiplier, int shift) {
  const int total = 31 - shift;
  const int64_t round = int64_t{1} << (total - 1);
  return (static_cast<int64_t>(x) * multiplier + round) >> total;
}

// Eq. (13): the double-rounding (gemmlowp) multiply: left shift with saturation, SRDHM, rounding right shift.
inline int32_t multiply_by_quantized_multiplier_gemmlowp(int32_t x, int32_t multiplier, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return rounding_divide_by_pot(
      saturating_rounding_doubling_high_mul(saturating_shift_left(x, left), multiplier), right);
}

}  // namespace qk
