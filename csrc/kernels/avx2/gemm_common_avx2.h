// gemm_common_avx2.h: what the AVX2 tiles share: the int16 widening of A rows (cached per thread), the
// output stage on 8 int32 lanes (eqs. (9)-(16)) and the packed layout's constants.
//
// vpmaddubsw is never used: it saturates int16 (PyTorch #44939). With int16 operands each vpmaddwd
// lane is a0*b0 + a1*b1, at most 2*255*255 in magnitude: exact, and the int32 sums wrap (eq. (6)).
// Included only by files compiled with the AVX2 target flags; everything is in an unnamed namespace.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "qkern/fixedpoint.h"
#include "qkern/gemm.h"
#include "qkern/scalar_common.h"

namespace qk {
namespace {

// The packed layout (docs/kernels.md): panels of kNR columns, [Kp/2][16][2] int16.
constexpr int kNR = 16;
constexpr int kKR = 2;

// Widens row bytes [k0, k0+n) to int16 (zero-filled to an even count).
void widen(const uint8_t* src, bool is_signed, int64_t n, int16_t* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m256i w = is_signed ? _mm256_cvtepi8_epi16(v) : _mm256_cvtepu8_epi16(v);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), w);
  }
  if (i + 8 <= n) {  // a narrow row (K of 8-15 bytes: a first layer's patch, a 1x1 conv of 8 channels)
    const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + i));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), is_signed ? _mm_cvtepi8_epi16(v) : _mm_cvtepu8_epi16(v));
    i += 8;
  }
  for (; i < n; ++i) dst[i] = is_signed ? static_cast<int8_t>(src[i]) : src[i];
  if (n % 2) dst[n] = 0;
}

// The widened rows of the last tile this thread saw: the driver runs every panel of an m-tile back to
// back, so all but the first panel reuse the widening. Each row is the concatenation of its taps, each
// widened to tap_kp int16 (zero-filled), matching the packed B rows.
struct WidenCache {
  const uint8_t* rows[kMaxTaps][kMaxMR] = {};
  int taps = 0;
  int64_t tap_k = -1;
  uint64_t a_version = 0;  // new bytes may sit at old addresses: never hit across versions
  bool is_signed = false;
  std::vector<int16_t> data;  // kMaxMR rows of `stride` int16
  int64_t stride = 0;
};

const int16_t* widened_rows(const TileArgs& t, int mr, int64_t* stride) {
  thread_local WidenCache cache;
  bool hit = cache.a_version == t.a_version && cache.taps == t.taps && cache.tap_k == t.tap_k &&
             cache.is_signed == t.a_signed;
  for (int tap = 0; tap < t.taps && hit; ++tap)
    for (int r = 0; r < mr && hit; ++r) hit = cache.rows[tap][r] == t.a[tap][r];
  if (!hit) {
    cache.stride = (t.taps * t.tap_kp + 31) / 32 * 32;
    const size_t need = static_cast<size_t>(kMaxMR * cache.stride);
    if (cache.data.size() < need) cache.data.resize(need);
    for (int tap = 0; tap < kMaxTaps; ++tap)
      for (int r = 0; r < kMaxMR; ++r) cache.rows[tap][r] = nullptr;
    for (int r = 0; r < mr; ++r)
      for (int tap = 0; tap < t.taps; ++tap) {
        widen(t.a[tap][r], t.a_signed, t.tap_k, cache.data.data() + r * cache.stride + tap * t.tap_kp);
        cache.rows[tap][r] = t.a[tap][r];
      }
    cache.taps = t.taps;
    cache.tap_k = t.tap_k;
    cache.a_version = t.a_version;
    cache.is_signed = t.a_signed;
  }
  *stride = cache.stride;
  return cache.data.data();
}

// Copies bytes [begin, end) of a row buffer (0 <= begin <= end <= kBytes, kBytes a power of two) to dst
// with constant-size moves: a partial row's store without a library call (GCC turns a byte loop back into
// memcpy). The stated bounds let the compiler see that no move reads past the buffer.
template <int kBytes>
inline void copy_row_part(void* dst, const unsigned char (&buf)[kBytes], int64_t begin, int64_t end) {
  static_assert((kBytes & (kBytes - 1)) == 0, "kBytes must be a power of two");
  if (begin < 0 || begin > end || end > kBytes) __builtin_unreachable();
  auto* d = static_cast<unsigned char*>(dst);
  for (int size = kBytes; size >= 1; size /= 2)
    if (end - begin >= size) {
      std::memcpy(d, buf + begin, static_cast<size_t>(size));
      d += size;
      begin += size;
    }
}

// Eq. (9) for a non-negative multiplier, per int32 lane: floor((x*M + 2^30) / 2^31). The low 32 bits of a
// logical 64-bit shift equal those of the arithmetic one, and the result fits in 32 bits.
inline __m256i srdhm(__m256i x, __m256i m) {
  const __m256i half = _mm256_set1_epi64x(int64_t{1} << 30);
  const __m256i e = _mm256_srli_epi64(_mm256_add_epi64(_mm256_mul_epi32(x, m), half), 31);
  const __m256i o = _mm256_srli_epi64(
      _mm256_add_epi64(_mm256_mul_epi32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(m, 32)), half), 31);
  return _mm256_blend_epi32(e, _mm256_slli_epi64(o, 32), 0xAA);
}

// Eq. (10) with a per-lane exponent in [0, 31].
inline __m256i rounding_divide_by_pot(__m256i x, __m256i e) {
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, e), one);
  const __m256i rem = _mm256_and_si256(x, mask);
  const __m256i thr = _mm256_sub_epi32(_mm256_srai_epi32(mask, 1), _mm256_cmpgt_epi32(_mm256_setzero_si256(), x));
  return _mm256_sub_epi32(_mm256_srav_epi32(x, e), _mm256_cmpgt_epi32(rem, thr));  // compare masks are -1
}

// Eq. (11) with a per-lane exponent in [0, 31].
inline __m256i saturating_shift_left(__m256i x, __m256i e) {
  const __m256i shifted = _mm256_sllv_epi32(x, e);
  const __m256i overflow = _mm256_xor_si256(_mm256_cmpeq_epi32(_mm256_srav_epi32(shifted, e), x),
                                            _mm256_set1_epi32(-1));
  const __m256i sat = _mm256_blendv_epi8(_mm256_set1_epi32(kInt32Max), _mm256_set1_epi32(kInt32Min),
                                         _mm256_cmpgt_epi32(_mm256_setzero_si256(), x));
  return _mm256_blendv_epi8(shifted, sat, overflow);
}

// Arithmetic right shift of int64 lanes by per-lane counts in [0, 63] (AVX2 has only the logical one).
inline __m256i srav_epi64(__m256i x, __m256i n) {
  const __m256i sign = _mm256_cmpgt_epi64(_mm256_setzero_si256(), x);
  return _mm256_xor_si256(_mm256_srlv_epi64(_mm256_xor_si256(x, sign), n), sign);
}

inline __m256i clamp_epi64(__m256i x, __m256i lo, __m256i hi) {
  x = _mm256_blendv_epi8(x, lo, _mm256_cmpgt_epi64(lo, x));
  return _mm256_blendv_epi8(x, hi, _mm256_cmpgt_epi64(x, hi));
}

// Eq. (12) on even or odd lanes: the exact int64 result clamped to [lo, hi] before narrowing.
inline __m256i single_rounding_half(__m256i x, __m256i m, __m256i total, __m256i lo, __m256i hi) {
  const __m256i one = _mm256_set1_epi64x(1);
  const __m256i round = _mm256_sllv_epi64(one, _mm256_sub_epi64(total, one));
  return clamp_epi64(srav_epi64(_mm256_add_epi64(_mm256_mul_epi32(x, m), round), total), lo, hi);
}

// Requantizes 8 accumulators of columns [col, col+8): int32 lanes within [qmin, qmax], zero point added
// (eqs. (14)-(16), bit-equal to requantize_one).
inline __m256i requant8(__m256i v, const OutputStage& os, int64_t col) {
  const int32_t lo = os.qmin - os.zero_point, hi = os.qmax - os.zero_point;
  __m256i r;
  if (os.mode == RequantMode::kFp32) {
    // float32(v) and the float32 product round to nearest even, as does the conversion back (the default
    // MXCSR, which the scalar path's nearbyint also relies on); the integer bounds commute with rounding.
    __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(os.fmultiplier + col));
    p = _mm256_min_ps(_mm256_max_ps(p, _mm256_set1_ps(static_cast<float>(lo))), _mm256_set1_ps(static_cast<float>(hi)));
    r = _mm256_cvtps_epi32(p);
  } else {
    const __m256i m = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(os.multiplier + col));
    const __m256i sh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(os.shift + col));
    if (os.mode == RequantMode::kGemmlowp) {  // eq. (13)-(14)
      const __m256i zero = _mm256_setzero_si256();
      const __m256i left = _mm256_max_epi32(sh, zero), right = _mm256_max_epi32(_mm256_sub_epi32(zero, sh), zero);
      r = rounding_divide_by_pot(srdhm(saturating_shift_left(v, left), m), right);
      r = _mm256_min_epi32(_mm256_max_epi32(r, _mm256_set1_epi32(lo)), _mm256_set1_epi32(hi));
    } else {  // eq. (15)
      const __m256i total = _mm256_sub_epi32(_mm256_set1_epi32(31), sh);
      const __m256i low32 = _mm256_set1_epi64x(0xFFFFFFFF);
      const __m256i lo64 = _mm256_set1_epi64x(lo), hi64 = _mm256_set1_epi64x(hi);
      const __m256i e = single_rounding_half(v, m, _mm256_and_si256(total, low32), lo64, hi64);
      const __m256i o = single_rounding_half(_mm256_srli_epi64(v, 32), _mm256_srli_epi64(m, 32),
                                             _mm256_srli_epi64(total, 32), lo64, hi64);
      r = _mm256_blend_epi32(e, _mm256_slli_epi64(o, 32), 0xAA);
    }
  }
  return _mm256_add_epi32(r, _mm256_set1_epi32(os.zero_point));
}

// One row of the tile (16 columns as two vectors) through the output stage into c (columns before
// `split`, relative to the panel) and c2 (the rest: the depth-to-space store of conv_transpose2x2).
inline void store_row16(const TileArgs& t, int r, __m256i v0, __m256i v1, int split) {
  const OutputStage& os = *t.stage;
  alignas(32) unsigned char tmp[kNR * 4];
  int64_t esize = 4;
  if (os.mode == RequantMode::kFloat) {
    // Eq. (20) when each row has its own zero point, then eq. (19): f32(acc) * f32(s_a * s_w) + bias,
    // each a separate float32 rounding (mul, mul, add: no FMA).
    const int64_t col = t.col0;
    if (t.row_zp) {
      const __m256i za = _mm256_set1_epi32(t.a_zp[r]);
      v0 = _mm256_sub_epi32(v0, _mm256_mullo_epi32(za, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(os.zp_colsum + col))));
      v1 = _mm256_sub_epi32(v1, _mm256_mullo_epi32(za, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(os.zp_colsum + col + 8))));
    }
    const __m256 sa = _mm256_set1_ps(t.a_scale[r]);
    const __m256 s0 = _mm256_mul_ps(sa, _mm256_loadu_ps(os.fmultiplier + col));
    const __m256 s1 = _mm256_mul_ps(sa, _mm256_loadu_ps(os.fmultiplier + col + 8));
    const __m256 y0 = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v0), s0), _mm256_loadu_ps(os.fbias + col));
    const __m256 y1 = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v1), s1), _mm256_loadu_ps(os.fbias + col + 8));
    if (t.nc == kNR && split >= kNR) {
      _mm256_storeu_ps(static_cast<float*>(t.c[r]), y0);
      _mm256_storeu_ps(static_cast<float*>(t.c[r]) + 8, y1);
      return;
    }
    _mm256_store_ps(reinterpret_cast<float*>(tmp), y0);
    _mm256_store_ps(reinterpret_cast<float*>(tmp) + 8, y1);
  } else if (os.mode == RequantMode::kRaw) {
    if (t.nc == kNR && split >= kNR) {
      _mm256_storeu_si256(static_cast<__m256i*>(t.c[r]), v0);
      _mm256_storeu_si256(static_cast<__m256i*>(t.c[r]) + 1, v1);
      return;
    }
    _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), v0);
    _mm256_store_si256(reinterpret_cast<__m256i*>(tmp) + 1, v1);
  } else {
    // Both vectors within [qmin, qmax] of the 8-bit type: the saturating packs are exact. packs works per
    // 128-bit lane, so the 64-bit quarters are put back in column order after each step.
    const __m256i w = _mm256_permute4x64_epi64(
        _mm256_packs_epi32(requant8(v0, os, t.col0), requant8(v1, os, t.col0 + 8)), 0xD8);
    const __m256i b = os.out_dtype == DType::kUint8 ? _mm256_packus_epi16(w, w) : _mm256_packs_epi16(w, w);
    const __m128i bytes = _mm256_castsi256_si128(_mm256_permute4x64_epi64(b, 0x08));
    if (t.nc == kNR && split >= kNR) {
      _mm_storeu_si128(static_cast<__m128i*>(t.c[r]), bytes);
      return;
    }
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), bytes);
    esize = 1;
  }
  if (split > 0) copy_row_part(t.c[r], tmp, 0, split * esize);
  if (split < t.nc) copy_row_part(t.c2[r], tmp, split * esize, t.nc * esize);
}

}  // namespace
}  // namespace qk
