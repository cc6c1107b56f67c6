// quantize_avx512.cc: AVX-512F/BW elementwise kernels (16 lanes), the AVX2 ones widened: quantize,
// dequantize, requantize, min/max. Every lane computes exactly what the scalar code does.
#include <immintrin.h>

#include <cmath>
#include <type_traits>

#include "qkern/quantize.h"

namespace qk {

namespace {

enum class QForm { kFma, kMulAdd, kMulAddEach };

inline int32_t round_clamp(float f, float lo, float hi) {
  f = std::nearbyint(f);
  if (!(f >= lo)) f = lo;
  if (f > hi) f = hi;
  return static_cast<int32_t>(f);
}

// 16 int32 lanes already within the output type's range -> 16 bytes (the truncating narrow is exact there).
template <typename T>
inline void store16(T* out, __m512i v) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(out), _mm512_cvtepi32_epi8(v));
}

template <QForm F, typename T>
bool quantize_t(const float* x, int64_t n, const float* inv, const float* zp, float lo, float hi, T* out) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  __m512 vinv = _mm512_set1_ps(inv[0]), vzp = _mm512_set1_ps(zp[0]);
  __mmask16 nan = 0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    __m512 f;
    if (F == QForm::kFma) {
      f = _mm512_fmadd_ps(v, vinv, vzp);  // eq. (4): one rounding
    } else {
      if (F == QForm::kMulAddEach) {
        vinv = _mm512_loadu_ps(inv + i);
        vzp = _mm512_loadu_ps(zp + i);
      }
      f = _mm512_add_ps(_mm512_mul_ps(v, vinv), vzp);  // eq. (5): two roundings (no contraction)
    }
    nan = static_cast<__mmask16>(nan | _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q));
    f = _mm512_roundscale_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    f = _mm512_min_ps(_mm512_max_ps(f, vlo), vhi);  // max_ps returns vlo for a NaN f
    store16(out + i, _mm512_cvttps_epi32(f));
  }
  bool any_nan = nan != 0;
  for (; i < n; ++i) {
    float f;
    if (F == QForm::kFma) {
      f = std::fma(x[i], inv[0], zp[0]);
    } else {
      const int64_t p = F == QForm::kMulAddEach ? i : 0;
      const float prod = x[i] * inv[p];
      f = prod + zp[p];
    }
    any_nan |= std::isnan(f);
    out[i] = static_cast<T>(round_clamp(f, lo, hi));
  }
  return any_nan;
}

template <QForm F>
bool quantize_dt(const float* x, int64_t n, const float* inv, const float* zp, float lo, float hi, DType dt,
                 void* out) {
  if (dt == DType::kUint8) return quantize_t<F>(x, n, inv, zp, lo, hi, static_cast<uint8_t*>(out));
  return quantize_t<F>(x, n, inv, zp, lo, hi, static_cast<int8_t*>(out));
}

bool quantize_fma(const float* x, int64_t n, float inv, float zp, float lo, float hi, DType dt, void* out) {
  return quantize_dt<QForm::kFma>(x, n, &inv, &zp, lo, hi, dt, out);
}
bool quantize_mul_add(const float* x, int64_t n, float inv, float zp, float lo, float hi, DType dt, void* out) {
  return quantize_dt<QForm::kMulAdd>(x, n, &inv, &zp, lo, hi, dt, out);
}
bool quantize_mul_add_each(const float* x, int64_t n, const float* inv, const float* zp, float lo, float hi, DType dt,
                           void* out) {
  return quantize_dt<QForm::kMulAddEach>(x, n, inv, zp, lo, hi, dt, out);
}

template <typename T>
inline __m512i widen16(const T* q) {
  const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
  return std::is_same<T, int8_t>::value ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b);
}

template <typename T>
inline __m256i widen8(const T* q) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
  return std::is_same<T, int8_t>::value ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
}

template <typename T>
void dequantize_t(const T* q, int64_t n, float scale, int32_t zp, float* out) {
  const __m512 vs = _mm512_set1_ps(scale);
  const __m512i vz = _mm512_set1_epi32(zp);
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm512_storeu_ps(out + i, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(widen16(q + i), vz)), vs));
  for (; i < n; ++i) out[i] = static_cast<float>(int32_t{q[i]} - zp) * scale;
}

void dequantize(const void* q, DType dt, int64_t n, float scale, int32_t zp, float* out) {
  if (dt == DType::kUint8) dequantize_t(static_cast<const uint8_t*>(q), n, scale, zp, out);
  else dequantize_t(static_cast<const int8_t*>(q), n, scale, zp, out);
}

// f32(f64(scale) * (q - zp)), 8 values per step (8 float64 lanes).
template <bool kEach, typename T>
void dequantize_f64_t(const T* q, int64_t n, const double* scale, const int32_t* zp, float* out) {
  __m512d vs = _mm512_set1_pd(scale[0]);
  __m256i vz = _mm256_set1_epi32(zp[0]);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    if (kEach) {
      vs = _mm512_loadu_pd(scale + i);
      vz = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zp + i));
    }
    const __m256i d = _mm256_sub_epi32(widen8(q + i), vz);
    _mm256_storeu_ps(out + i, _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtepi32_pd(d), vs)));
  }
  for (; i < n; ++i) {
    const int64_t p = kEach ? i : 0;
    out[i] = static_cast<float>(scale[p] * static_cast<double>(int32_t{q[i]} - zp[p]));
  }
}

void dequantize_f64(const void* q, DType dt, int64_t n, double scale, int32_t zp, float* out) {
  if (dt == DType::kUint8) dequantize_f64_t<false>(static_cast<const uint8_t*>(q), n, &scale, &zp, out);
  else dequantize_f64_t<false>(static_cast<const int8_t*>(q), n, &scale, &zp, out);
}

void dequantize_f64_each(const void* q, DType dt, int64_t n, const double* scale, const int32_t* zp, float* out) {
  if (dt == DType::kUint8) dequantize_f64_t<true>(static_cast<const uint8_t*>(q), n, scale, zp, out);
  else dequantize_f64_t<true>(static_cast<const int8_t*>(q), n, scale, zp, out);
}

struct Lanes {
  __m512i mult, shift;
  __m512 fmult;
};

// Eqs. (14)-(16) on 16 accumulators (bias included): int32 results within [qmin, qmax].
template <RequantMode M>
inline __m512i requant16(__m512i x, const Lanes& p, __m512i zp, __m512i lo, __m512i hi, __m512 flo, __m512 fhi) {
  if (M == RequantMode::kFp32) {
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(x), p.fmult);  // float32(acc) rounds to nearest even
    f = _mm512_roundscale_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    f = _mm512_min_ps(_mm512_max_ps(f, flo), fhi);  // [qmin - zp, qmax - zp]: +-inf saturate
    return _mm512_add_epi32(_mm512_cvttps_epi32(f), zp);
  }
  const __m512i zero = _mm512_setzero_si512();
  const __m512i one = _mm512_set1_epi32(1);
  __m512i r;
  if (M == RequantMode::kGemmlowp) {
    const __m512i left = _mm512_max_epi32(p.shift, zero);
    const __m512i right = _mm512_max_epi32(_mm512_sub_epi32(zero, p.shift), zero);
    // Eq. (11): x * 2^left saturated; the shift overflowed iff shifting back does not give x.
    const __m512i y0 = _mm512_sllv_epi32(x, left);
    const __mmask16 fits = _mm512_cmpeq_epi32_mask(_mm512_srav_epi32(y0, left), x);
    const __m512i sat = _mm512_xor_si512(_mm512_srai_epi32(x, 31), _mm512_set1_epi32(kInt32Max));
    const __m512i y = _mm512_mask_blend_epi32(fits, sat, y0);
    // Eq. (9) with multiplier >= 0: bits 31..62 of y*m + 2^30, for the even and the odd lanes.
    const __m512i c30 = _mm512_set1_epi64(int64_t{1} << 30);
    const __m512i pe = _mm512_add_epi64(_mm512_mul_epi32(y, p.mult), c30);
    const __m512i po =
        _mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(y, 32), _mm512_srli_epi64(p.mult, 32)), c30);
    const __m512i z = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 31), _mm512_slli_epi64(po, 1));
    // Eq. (10): rounding divide by 2^right, ties away from zero (threshold + 1 for negative z).
    const __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, right), one);
    const __m512i rem = _mm512_and_si512(z, mask);
    const __m512i thr = _mm512_sub_epi32(_mm512_srai_epi32(mask, 1), _mm512_srai_epi32(z, 31));
    r = _mm512_srav_epi32(z, right);
    r = _mm512_mask_add_epi32(r, _mm512_cmpgt_epi32_mask(rem, thr), r, one);
    r = _mm512_min_epi32(_mm512_max_epi32(r, lo), hi);
  } else {
    // Eq. (12): (x*m + 2^(total-1)) >> total, total = 31 - shift in [1, 62], exact in int64 lanes; clamped
    // there to [qmin - zp, qmax - zp] before narrowing.
    const __m512i total = _mm512_sub_epi32(_mm512_set1_epi32(31), p.shift);
    const __m512i low32 = _mm512_set1_epi64(0xFFFFFFFF);
    const __m512i one64 = _mm512_set1_epi64(1);
    const __m512i lo64 = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(lo));
    const __m512i hi64 = _mm512_cvtepi32_epi64(_mm512_castsi512_si256(hi));
    __m512i half[2];
    for (int odd = 0; odd < 2; ++odd) {
      const __m512i xs = odd ? _mm512_srli_epi64(x, 32) : x;
      const __m512i ms = odd ? _mm512_srli_epi64(p.mult, 32) : p.mult;
      const __m512i ts = odd ? _mm512_srli_epi64(total, 32) : _mm512_and_si512(total, low32);
      const __m512i round = _mm512_sllv_epi64(one64, _mm512_sub_epi64(ts, one64));
      const __m512i v = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(xs, ms), round), ts);
      half[odd] = _mm512_min_epi64(_mm512_max_epi64(v, lo64), hi64);
    }
    r = _mm512_mask_blend_epi32(0xAAAA, half[0], _mm512_slli_epi64(half[1], 32));
  }
  return _mm512_add_epi32(r, zp);
}

template <RequantMode M, bool kBroadcast, bool kBias, typename T>
void requantize_t(const int32_t* acc, int64_t n, const int32_t* bias, const OutputStage& os, T* out) {
  const __m512i zp = _mm512_set1_epi32(os.zero_point);
  const __m512i lo = _mm512_set1_epi32(os.qmin - os.zero_point), hi = _mm512_set1_epi32(os.qmax - os.zero_point);
  const __m512 flo = _mm512_set1_ps(static_cast<float>(os.qmin - os.zero_point));
  const __m512 fhi = _mm512_set1_ps(static_cast<float>(os.qmax - os.zero_point));
  Lanes p{};
  if (kBroadcast) {
    if (M == RequantMode::kFp32) {
      p.fmult = _mm512_set1_ps(os.fmultiplier[0]);
    } else {
      p.mult = _mm512_set1_epi32(os.multiplier[0]);
      p.shift = _mm512_set1_epi32(os.shift[0]);
    }
  }
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    __m512i x = _mm512_loadu_si512(acc + j);
    if (kBias) x = _mm512_add_epi32(x, _mm512_loadu_si512(bias + j));  // wraps
    if (!kBroadcast) {
      if (M == RequantMode::kFp32) {
        p.fmult = _mm512_loadu_ps(os.fmultiplier + j);
      } else {
        p.mult = _mm512_loadu_si512(os.multiplier + j);
        p.shift = _mm512_loadu_si512(os.shift + j);
      }
    }
    store16(out + j, requant16<M>(x, p, zp, lo, hi, flo, fhi));
  }
  for (; j < n; ++j)
    out[j] = static_cast<T>(requantize_one(kBias ? wrap_add(acc[j], bias[j]) : acc[j], os, kBroadcast ? 0 : j));
}

template <RequantMode M, typename T>
void requantize_mode(const int32_t* acc, int64_t n, const int32_t* bias, const OutputStage& os, bool broadcast,
                     T* out) {
  if (broadcast) {
    if (bias) requantize_t<M, true, true>(acc, n, bias, os, out);
    else requantize_t<M, true, false>(acc, n, bias, os, out);
  } else {
    if (bias) requantize_t<M, false, true>(acc, n, bias, os, out);
    else requantize_t<M, false, false>(acc, n, bias, os, out);
  }
}

template <typename T>
void requantize_dt(const int32_t* acc, int64_t n, const int32_t* bias, const OutputStage& os, bool broadcast, T* out) {
  switch (os.mode) {
    case RequantMode::kGemmlowp: requantize_mode<RequantMode::kGemmlowp>(acc, n, bias, os, broadcast, out); return;
    case RequantMode::kSingle: requantize_mode<RequantMode::kSingle>(acc, n, bias, os, broadcast, out); return;
    case RequantMode::kFp32: requantize_mode<RequantMode::kFp32>(acc, n, bias, os, broadcast, out); return;
    case RequantMode::kRaw:
    case RequantMode::kFloat: break;  // not integer requantization: the GEMM's own output forms
  }
  throw ArgumentError("requantize: the stage must be gemmlowp, single or fp32");
}

void requantize(const int32_t* acc, int64_t n, const int32_t* bias, const OutputStage& os, bool broadcast,
                void* out) {
  if (os.out_dtype == DType::kUint8) requantize_dt(acc, n, bias, os, broadcast, static_cast<uint8_t*>(out));
  else requantize_dt(acc, n, bias, os, broadcast, static_cast<int8_t*>(out));
}

bool min_max(const float* x, int64_t n, float* mn, float* mx) {
  int64_t i = 0;
  float lo = x[0], hi = x[0];
  bool any_nan = false;
  if (n >= 16) {
    __m512 vlo = _mm512_loadu_ps(x), vhi = vlo;
    __mmask16 nan = 0;
    for (; i + 16 <= n; i += 16) {
      const __m512 v = _mm512_loadu_ps(x + i);
      nan = static_cast<__mmask16>(nan | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q));
      vlo = _mm512_min_ps(vlo, v);
      vhi = _mm512_max_ps(vhi, v);
    }
    alignas(64) float l[16], h[16];
    _mm512_store_ps(l, vlo);
    _mm512_store_ps(h, vhi);
    for (int k = 0; k < 16; ++k) {
      lo = l[k] < lo ? l[k] : lo;
      hi = h[k] > hi ? h[k] : hi;
    }
    any_nan = nan != 0;
  }
  for (; i < n; ++i) {
    any_nan |= std::isnan(x[i]);
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  *mn = lo;
  *mx = hi;
  return any_nan;
}

constexpr ElemKernels kAvx512Kernels = {quantize_fma, quantize_mul_add, quantize_mul_add_each, dequantize,
                                        dequantize_f64, dequantize_f64_each, requantize, min_max};

}  // namespace

// Reached only on the avx512vnni level (AVX-512F/BW/VL present); FMA is checked like on the AVX2 level.
const ElemKernels& elem_kernels_avx512() {
  static const bool fma = __builtin_cpu_supports("fma");
  return fma ? kAvx512Kernels : elem_kernels_scalar();
}

}  // namespace qk
