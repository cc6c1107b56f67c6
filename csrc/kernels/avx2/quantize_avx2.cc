// quantize_avx2.cc: AVX2 + FMA elementwise kernels: quantize, dequantize, requantize, min/max (8 lanes).
#include <immintrin.h>

#include <cmath>
#include <type_traits>

#include "kernels/avx2/requant_avx2.h"
#include "qkern/quantize.h"

namespace qk {

namespace {

enum class QForm { kFma, kMulAdd, kMulAddEach };

// 32 int32 lanes, each already within the output type's range -> 32 bytes in order.
template <bool kSigned>
inline __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i ab = _mm256_packs_epi32(a, b);  // per 128-bit half: 4 of a, 4 of b
  const __m256i cd = _mm256_packs_epi32(c, d);
  const __m256i abcd = kSigned ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
  // dwords now: a0-3 b0-3 c0-3 d0-3 a4-7 b4-7 c4-7 d4-7
  return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline int32_t round_clamp(float f, float lo, float hi) {
  f = std::nearbyint(f);
  if (!(f >= lo)) f = lo;
  if (f > hi) f = hi;
  return static_cast<int32_t>(f);
}

template <QForm F, typename T>
bool quantize_t(const float* x, int64_t n, const float* inv, const float* zp, float lo, float hi, T* out) {
  constexpr bool kSigned = std::is_same<T, int8_t>::value;
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  __m256 vinv = _mm256_set1_ps(inv[0]), vzp = _mm256_set1_ps(zp[0]);
  __m256 nan = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i r[4];
    for (int k = 0; k < 4; ++k) {
      const __m256 v = _mm256_loadu_ps(x + i + 8 * k);
      __m256 f;
      if (F == QForm::kFma) {
        f = _mm256_fmadd_ps(v, vinv, vzp);  // eq. (4): one rounding
      } else {
        if (F == QForm::kMulAddEach) {
          vinv = _mm256_loadu_ps(inv + i + 8 * k);
          vzp = _mm256_loadu_ps(zp + i + 8 * k);
        }
        f = _mm256_add_ps(_mm256_mul_ps(v, vinv), vzp);  // eq. (5): two roundings (no contraction)
      }
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(f, f, _CMP_UNORD_Q));
      f = _mm256_round_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      f = _mm256_min_ps(_mm256_max_ps(f, vlo), vhi);  // max_ps returns vlo for a NaN f
      r[k] = _mm256_cvttps_epi32(f);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), pack32<kSigned>(r[0], r[1], r[2], r[3]));
  }
  bool any_nan = _mm256_movemask_ps(nan) != 0;
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

// 8 quantized values widened to int32.
template <typename T>
inline __m256i widen8(const T* q) {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
  return std::is_same<T, int8_t>::value ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
}

// Ordinary stores at every size: non-temporal ones (measured for 16-128 MiB outputs against torch with a
// pause before each sample) took 1.04-1.38x as long.
template <typename T>
void dequantize_t(const T* q, int64_t n, float scale, int32_t zp, float* out) {
  const __m256 vs = _mm256_set1_ps(scale);
  const __m256i vz = _mm256_set1_epi32(zp);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(widen8(q + i), vz)), vs));
  for (; i < n; ++i) out[i] = static_cast<float>(int32_t{q[i]} - zp) * scale;
}

void dequantize(const void* q, DType dt, int64_t n, float scale, int32_t zp, float* out) {
  if (dt == DType::kUint8) dequantize_t<uint8_t>(static_cast<const uint8_t*>(q), n, scale, zp, out);
  else dequantize_t<int8_t>(static_cast<const int8_t*>(q), n, scale, zp, out);
}

// f32(f64(scale) * (q - zp)) for 8 values; `each` loads one scale and zero point per value.
template <bool kEach, typename T>
void dequantize_f64_t(const T* q, int64_t n, const double* scale, const int32_t* zp, float* out) {
  __m256d s_lo = _mm256_set1_pd(scale[0]), s_hi = s_lo;
  __m256i vz = _mm256_set1_epi32(zp[0]);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    if (kEach) {
      s_lo = _mm256_loadu_pd(scale + i);
      s_hi = _mm256_loadu_pd(scale + i + 4);
      vz = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(zp + i));
    }
    const __m256i d = _mm256_sub_epi32(widen8(q + i), vz);
    const __m128 lo = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(d)), s_lo));
    const __m128 hi = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(d, 1)), s_hi));
    _mm256_storeu_ps(out + i, _mm256_set_m128(hi, lo));
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

template <RequantMode M, bool kBroadcast, bool kBias, typename T>
void requantize_t(const int32_t* acc, int64_t n, const int32_t* bias, const OutputStage& os, T* out) {
  constexpr bool kSigned = std::is_same<T, int8_t>::value;
  const StageBounds bounds(os);
  StageLanes p{};
  if (kBroadcast) p = broadcast_lanes<M>(os, 0);
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m256i r[4];
    for (int k = 0; k < 4; ++k) {
      const int64_t c = j + 8 * k;
      __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + c));
      if (kBias) x = _mm256_add_epi32(x, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bias + c)));  // wraps
      if (!kBroadcast) p = load_lanes<M>(os, c);
      r[k] = requant8<M>(x, p, bounds);
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + j), pack32<kSigned>(r[0], r[1], r[2], r[3]));
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
  if (n >= 8) {
    __m256 vlo = _mm256_loadu_ps(x), vhi = vlo, nan = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
      const __m256 v = _mm256_loadu_ps(x + i);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
      vlo = _mm256_min_ps(vlo, v);
      vhi = _mm256_max_ps(vhi, v);
    }
    alignas(32) float l[8], h[8];
    _mm256_store_ps(l, vlo);
    _mm256_store_ps(h, vhi);
    for (int k = 0; k < 8; ++k) {
      lo = l[k] < lo ? l[k] : lo;
      hi = h[k] > hi ? h[k] : hi;
    }
    any_nan = _mm256_movemask_ps(nan) != 0;
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

constexpr ElemKernels kAvx2Kernels = {quantize_fma,        quantize_mul_add, quantize_mul_add_each,
                                      dequantize,          dequantize_f64,   dequantize_f64_each,
                                      requantize,          min_max};

}  // namespace

// The quantize kernel needs FMA, which the AVX2 level does not imply: without it, the scalar kernels.
const ElemKernels& elem_kernels_avx2() {
  static const bool fma = __builtin_cpu_supports("fma");
  return fma ? kAvx2Kernels : elem_kernels_scalar();
}

}  // namespace qk
