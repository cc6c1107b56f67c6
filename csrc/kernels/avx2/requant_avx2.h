// requant_avx2.h: the AVX2 output stage's arithmetic, shared by the GEMM tiles and the elementwise
// requantize: eqs. (9)-(16) of docs/quantization.md on 8 int32 lanes, bit-equal to requantize_one.
//
// Included only by files compiled with the AVX2 target flags. Everything is in an unnamed namespace: each
// including file keeps its own copy, compiled with its own flags.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "qkern/common.h"
#include "qkern/fixedpoint.h"
#include "qkern/requant.h"

namespace qk {
namespace {

// Arithmetic right shift of int64 lanes by per-lane counts (AVX2 has only the logical one).
inline __m256i srav_epi64(__m256i v, __m256i count) {
  const __m256i sign = _mm256_cmpgt_epi64(_mm256_setzero_si256(), v);
  return _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(v, sign), count), sign);
}

// The stage's per-column parameters for 8 columns, loaded once per tile or broadcast once per call.
struct StageLanes {
  __m256i mult, shift;
  __m256 fmult;
};

// The stage's per-call constants: the zero point and the output range relative to it.
struct StageBounds {
  __m256i zp, lo, hi;
  __m256 flo, fhi;
  explicit StageBounds(const OutputStage& os)
      : zp(_mm256_set1_epi32(os.zero_point)),
        lo(_mm256_set1_epi32(os.qmin - os.zero_point)),
        hi(_mm256_set1_epi32(os.qmax - os.zero_point)),
        flo(_mm256_set1_ps(static_cast<float>(os.qmin - os.zero_point))),
        fhi(_mm256_set1_ps(static_cast<float>(os.qmax - os.zero_point))) {}
};

// Columns [col, col+8) of the stage's parameters for mode M.
template <RequantMode M>
inline StageLanes load_lanes(const OutputStage& os, int64_t col) {
  StageLanes p{};
  if constexpr (M == RequantMode::kFp32) {
    p.fmult = _mm256_loadu_ps(os.fmultiplier + col);
  } else {
    p.mult = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(os.multiplier + col));
    p.shift = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(os.shift + col));
  }
  return p;
}

// Column col's parameters in every lane.
template <RequantMode M>
inline StageLanes broadcast_lanes(const OutputStage& os, int64_t col) {
  StageLanes p{};
  if constexpr (M == RequantMode::kFp32) {
    p.fmult = _mm256_set1_ps(os.fmultiplier[col]);
  } else {
    p.mult = _mm256_set1_epi32(os.multiplier[col]);
    p.shift = _mm256_set1_epi32(os.shift[col]);
  }
  return p;
}

// Eqs. (13)-(15): the fixed-point modes on 8 accumulators, clamped to [qmin - zp, qmax - zp].
template <RequantMode M>
inline __m256i fixed_point8(__m256i x, const StageLanes& p, const StageBounds& b) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i r;
  if constexpr (M == RequantMode::kGemmlowp) {
    const __m256i left = _mm256_max_epi32(p.shift, zero);
    const __m256i right = _mm256_max_epi32(_mm256_sub_epi32(zero, p.shift), zero);
    // Eq. (11): x * 2^left saturated; the shift overflowed iff shifting back does not give x.
    const __m256i y0 = _mm256_sllv_epi32(x, left);
    const __m256i fits = _mm256_cmpeq_epi32(_mm256_srav_epi32(y0, left), x);
    const __m256i sat = _mm256_xor_si256(_mm256_srai_epi32(x, 31), _mm256_set1_epi32(kInt32Max));
    const __m256i y = _mm256_blendv_epi8(sat, y0, fits);
    // Eq. (9) with multiplier >= 0 (no INT32_MIN * INT32_MIN): bits 31..62 of y*m + 2^30, even and odd lanes.
    const __m256i c30 = _mm256_set1_epi64x(int64_t{1} << 30);
    const __m256i pe = _mm256_add_epi64(_mm256_mul_epi32(y, p.mult), c30);
    const __m256i po = _mm256_add_epi64(
        _mm256_mul_epi32(_mm256_srli_epi64(y, 32), _mm256_srli_epi64(p.mult, 32)), c30);
    const __m256i z = _mm256_blend_epi32(_mm256_srli_epi64(pe, 31), _mm256_slli_epi64(po, 1), 0xAA);
    // Eq. (10): rounding divide by 2^right, ties away from zero.
    const __m256i one = _mm256_set1_epi32(1);
    const __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, right), one);
    const __m256i rem = _mm256_and_si256(z, mask);
    const __m256i thr = _mm256_sub_epi32(_mm256_srai_epi32(mask, 1), _mm256_cmpgt_epi32(zero, z));
    r = _mm256_sub_epi32(_mm256_srav_epi32(z, right), _mm256_cmpgt_epi32(rem, thr));
    r = _mm256_min_epi32(_mm256_max_epi32(r, b.lo), b.hi);
  } else {  // kSingle
    // Eq. (12): (x*m + 2^(total-1)) >> total, total = 31 - shift in [1, 62], exact in int64 lanes; clamped
    // there to [qmin - zp, qmax - zp] before narrowing.
    const __m256i total = _mm256_sub_epi32(_mm256_set1_epi32(31), p.shift);
    const __m256i low32 = _mm256_set1_epi64x(0xFFFFFFFF);
    const __m256i one64 = _mm256_set1_epi64x(1);
    const __m256i lo64 = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(b.lo));
    const __m256i hi64 = _mm256_cvtepi32_epi64(_mm256_castsi256_si128(b.hi));
    __m256i half[2];
    for (int odd = 0; odd < 2; ++odd) {
      const __m256i xs = odd ? _mm256_srli_epi64(x, 32) : x;
      const __m256i ms = odd ? _mm256_srli_epi64(p.mult, 32) : p.mult;
      const __m256i ts = odd ? _mm256_srli_epi64(total, 32) : _mm256_and_si256(total, low32);
      const __m256i round = _mm256_sllv_epi64(one64, _mm256_sub_epi64(ts, one64));
      __m256i v = srav_epi64(_mm256_add_epi64(_mm256_mul_epi32(xs, ms), round), ts);
      v = _mm256_blendv_epi8(v, lo64, _mm256_cmpgt_epi64(lo64, v));
      v = _mm256_blendv_epi8(v, hi64, _mm256_cmpgt_epi64(v, hi64));
      half[odd] = v;
    }
    r = _mm256_blend_epi32(half[0], _mm256_slli_epi64(half[1], 32), 0xAA);
  }
  return r;
}

// Eqs. (14)-(16) on 8 accumulators (bias included): int32 results within [qmin, qmax], zero point added.
template <RequantMode M>
inline __m256i requant8(__m256i x, const StageLanes& p, const StageBounds& b) {
  if constexpr (M == RequantMode::kFp32) {
    __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(x), p.fmult);  // float32(acc) rounds to nearest even
    f = _mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    f = _mm256_min_ps(_mm256_max_ps(f, b.flo), b.fhi);  // [qmin - zp, qmax - zp]: +-inf saturate
    return _mm256_add_epi32(_mm256_cvttps_epi32(f), b.zp);
  } else {
    static_assert(M == RequantMode::kGemmlowp || M == RequantMode::kSingle, "requant8: a requantization mode");
    return _mm256_add_epi32(fixed_point8<M>(x, p, b), b.zp);
  }
}

}  // namespace
}  // namespace qk
