// quantize_avx512.cc: AVX-512F/BW elementwise kernels (16 lanes), the AVX2 ones widened: quantize,
// dequantize, requantize, min/max. Every lane computes exactly what the scalar code does.
#include <immintrin.h>

#include <cmath>
#include <type_traits>

#include "kernels/avx512vnni/requant_avx512.h"
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

// Eqs. (14)-(16) on 16 accumulators (bias included): int32 results within [qmin, qmax], by the output stage
// the GEMM epilogue uses (requant_avx512.h).
template <RequantMode M>
inline __m512i requant16(__m512i x, const Lanes& p, __m512i zp, __m512i lo, __m512i hi, __m512 flo, __m512 fhi) {
  if constexpr (M == RequantMode::kFp32) return _mm512_add_epi32(fp32_requant_lanes(x, p.fmult, flo, fhi), zp);
  if constexpr (M == RequantMode::kGemmlowp) return _mm512_add_epi32(gemmlowp_requant_lanes(x, p.mult, p.shift, lo, hi), zp);
  return _mm512_add_epi32(single_requant_lanes(x, p.mult, p.shift, lo, hi), zp);
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

constexpr ElemKernels kAvx512Kernels = {quantize_fma,        quantize_mul_add, quantize_mul_add_each,
                                        dequantize,          dequantize_f64,   dequantize_f64_each,
                                        requantize,          min_max};

}  // namespace

// Reached only on the avx512vnni level (AVX-512F/BW/VL present); FMA is checked like on the AVX2 level.
const ElemKernels& elem_kernels_avx512() {
  static const bool fma = __builtin_cpu_supports("fma");
  return fma ? kAvx512Kernels : elem_kernels_scalar();
}

}  // namespace qk
