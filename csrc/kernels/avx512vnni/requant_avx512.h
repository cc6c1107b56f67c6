// requant_avx512.h: the AVX-512 output stage's arithmetic, shared by the GEMM epilogue and the elementwise
// requantize: the fixed-point steps of docs/quantization.md eqs. (9)-(17) on 16 int32 lanes.
//
// Included only by files compiled with the AVX-512 target flags. Everything is in an unnamed namespace:
// each including file keeps its own copy, compiled with its own flags.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "qkern/common.h"
#include "qkern/requant.h"

// The helpers must inline into the tiles' output stage: as calls they cost more than a first layer's
// arithmetic (GCC stopped inlining requant16 once the tile template grew).
#define QK_INLINE inline __attribute__((always_inline))

namespace qk {
namespace {

// Every lane: GCC 12 reports the unmasked intrinsics' undefined pass-through operand as uninitialized once
// they are inlined into the tile (PR 105593); the zero-masked forms with every lane selected are the same
// instructions.
constexpr __mmask8 kAll8 = 0xFF;
constexpr __mmask16 kAll16 = 0xFFFF;

// 64-bit signed products of the even and odd int32 lanes.
QK_INLINE __m512i odd_lanes(__m512i x) { return _mm512_maskz_srli_epi64(kAll8, x, 32); }
QK_INLINE __m512i merge_even_odd(__m512i even, __m512i odd) {
  return _mm512_mask_blend_epi32(0xAAAA, even, _mm512_maskz_slli_epi64(kAll8, odd, 32));
}

// Eq. (9) for a non-negative multiplier: floor((x*M + 2^30) / 2^31), per int32 lane.
QK_INLINE __m512i srdhm(__m512i x, __m512i m) {
  const __m512i half = _mm512_set1_epi64(int64_t{1} << 30);
  const __m512i e = _mm512_srai_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, m), half), 31);
  const __m512i o = _mm512_srai_epi64(_mm512_add_epi64(_mm512_mul_epi32(odd_lanes(x), odd_lanes(m)), half), 31);
  return merge_even_odd(e, o);
}

// Eq. (10) with a per-lane exponent in [0, 31].
QK_INLINE __m512i rounding_divide_by_pot(__m512i x, __m512i e) {
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, e), one);
  const __m512i rem = _mm512_and_si512(x, mask);
  __m512i thr = _mm512_srai_epi32(mask, 1);
  thr = _mm512_mask_add_epi32(thr, _mm512_cmplt_epi32_mask(x, _mm512_setzero_si512()), thr, one);
  const __m512i q = _mm512_srav_epi32(x, e);
  return _mm512_mask_add_epi32(q, _mm512_cmpgt_epi32_mask(rem, thr), q, one);
}

// Eq. (11) with a per-lane exponent in [0, 31].
QK_INLINE __m512i saturating_shift_left(__m512i x, __m512i e) {
  const __m512i shifted = _mm512_sllv_epi32(x, e);
  const __mmask16 overflow = _mm512_cmpneq_epi32_mask(_mm512_srav_epi32(shifted, e), x);
  const __m512i sat = _mm512_mask_blend_epi32(_mm512_cmplt_epi32_mask(x, _mm512_setzero_si512()),
                                              _mm512_set1_epi32(kInt32Max), _mm512_set1_epi32(kInt32Min));
  return _mm512_mask_blend_epi32(overflow, shifted, sat);
}

// The fixed-point modes in their one-shift form (requant.h WideRow, eqs. (12) and (17)) on the even and
// the odd int32 lanes as int64, merged back to int32 lanes. `w` is the block of the 16 columns. A "single"
// result may exceed int32, so it is clamped to [lo, hi] (int64 lanes) first; a "gemmlowp" one always fits.
template <RequantMode kMode>
QK_INLINE __m512i wide_half(__m512i x, const int64_t* w, __m512i lo, __m512i hi) {
  const __m512i p = _mm512_maskz_mul_epi32(kAll8, x, _mm512_loadu_si512(w + kWideMultiplier * 8));
  __m512i r = _mm512_maskz_add_epi64(kAll8, p, _mm512_loadu_si512(w + kWideAddend * 8));
  if constexpr (kMode == RequantMode::kGemmlowp) {
    const __mmask8 neg = _mm512_cmplt_epi64_mask(p, _mm512_set1_epi64(-(int64_t{1} << 30)));
    r = _mm512_mask_sub_epi64(r, neg, r, _mm512_loadu_si512(w + kWideCorrection * 8));
  }
  r = _mm512_maskz_srav_epi64(kAll8, r, _mm512_loadu_si512(w + kWideShift * 8));
  if constexpr (kMode == RequantMode::kSingle)
    r = _mm512_maskz_min_epi64(kAll8, _mm512_maskz_max_epi64(kAll8, r, lo), hi);
  return r;
}
template <RequantMode kMode>
QK_INLINE __m512i wide_requant(__m512i v, const int64_t* w, __m512i lo, __m512i hi) {
  return merge_even_odd(wide_half<kMode>(v, w, lo, hi), wide_half<kMode>(odd_lanes(v), w + 8, lo, hi));
}


// Eq. (16) on 16 lanes with per-lane multipliers m: float32(v) (round half-even), one float32 multiply,
// clamped to [lo, hi] in float (integer bounds, so clamping commutes with the rounding; NaN gives lo),
// rounded half-even with an explicit rounding mode. Zero point not added.
QK_INLINE __m512i fp32_requant_lanes(__m512i v, __m512 m, __m512 lo, __m512 hi) {
  const __m512 f = _mm512_cvt_roundepi32_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 p = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(f, m), lo), hi);
  return _mm512_cvt_roundps_epi32(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

// "gemmlowp" (eqs. (9)-(11), (13)) with per-lane multipliers m >= 0 and shifts s in [-31, 30], clamped to
// [lo, hi]. Zero point not added.
QK_INLINE __m512i gemmlowp_requant_lanes(__m512i v, __m512i m, __m512i s, __m512i lo, __m512i hi) {
  const __m512i zero = _mm512_setzero_si512();
  const __m512i left = _mm512_max_epi32(s, zero), right = _mm512_max_epi32(_mm512_sub_epi32(zero, s), zero);
  const __m512i r = rounding_divide_by_pot(srdhm(saturating_shift_left(v, left), m), right);
  return _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
}

// "single" (eq. (12)) with per-lane multipliers m and shifts s (no WideRow table): (v*m + 2^(t-1)) >> t,
// t = 31 - s in [1, 62], exact in int64 lanes and clamped there to [lo, hi] before narrowing. Zero point
// not added.
QK_INLINE __m512i single_requant_lanes(__m512i v, __m512i m, __m512i s, __m512i lo, __m512i hi) {
  const __m512i total = _mm512_sub_epi32(_mm512_set1_epi32(31), s);
  const __m512i low32 = _mm512_set1_epi64(0xFFFFFFFF);
  const __m512i one64 = _mm512_set1_epi64(1);
  const __m512i lo64 = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(lo));
  const __m512i hi64 = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(hi));
  __m512i half[2];
  for (int odd = 0; odd < 2; ++odd) {
    const __m512i xs = odd ? _mm512_srli_epi64(v, 32) : v;
    const __m512i ms = odd ? _mm512_srli_epi64(m, 32) : m;
    const __m512i ts = odd ? _mm512_srli_epi64(total, 32) : _mm512_and_si512(total, low32);
    const __m512i round = _mm512_sllv_epi64(one64, _mm512_sub_epi64(ts, one64));
    const __m512i r = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(xs, ms), round), ts);
    half[odd] = _mm512_min_epi64(_mm512_max_epi64(r, lo64), hi64);
  }
  return _mm512_mask_blend_epi32(0xAAAA, half[0], _mm512_slli_epi64(half[1], 32));
}

}  // namespace
}  // namespace qk
