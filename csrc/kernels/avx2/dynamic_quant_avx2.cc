// dynamic_quant_avx2.cc: AVX2 + FMA min/max and eq. (4) quantization of float32 rows (built with -mfma).
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "qkern/dynamic_quant.h"

namespace qk {

void minmax_f32__avx2(const float* x, int64_t n, float* min_val, float* max_val, bool* nan_free) {
  __m256 lo0 = _mm256_set1_ps(INFINITY), hi0 = _mm256_set1_ps(-INFINITY), lo1 = lo0, hi1 = hi0;
  __m256 unordered = _mm256_setzero_ps();  // all-ones lanes once a NaN was seen (min/max drop NaNs)
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
    lo0 = _mm256_min_ps(lo0, a);
    hi0 = _mm256_max_ps(hi0, a);
    lo1 = _mm256_min_ps(lo1, b);
    hi1 = _mm256_max_ps(hi1, b);
    unordered = _mm256_or_ps(unordered, _mm256_cmp_ps(a, b, _CMP_UNORD_Q));
  }
  alignas(32) float lo[8], hi[8];
  _mm256_store_ps(lo, _mm256_min_ps(lo0, lo1));
  _mm256_store_ps(hi, _mm256_max_ps(hi0, hi1));
  bool clean = _mm256_movemask_ps(unordered) == 0;
  float mn = lo[0], mx = hi[0];
  for (int j = 1; j < 8; ++j) {
    mn = std::fmin(mn, lo[j]);
    mx = std::fmax(mx, hi[j]);
  }
  for (; i < n; ++i) {
    clean = clean && !std::isnan(x[i]);
    mn = std::fmin(mn, x[i]);
    mx = std::fmax(mx, x[i]);
  }
  *min_val = mn;
  *max_val = mx;
  *nan_free = clean;
}

void quantize_f32__avx2(const float* x, int64_t n, float inv, float zp, int32_t qmin, int32_t qmax, bool to_int8,
                        uint8_t* q) {
  const __m256 vinv = _mm256_set1_ps(inv), vzp = _mm256_set1_ps(zp);
  // The clamp bounds are integers, so clamping before the round-half-even conversion equals clamping after.
  const __m256 vlo = _mm256_set1_ps(static_cast<float>(qmin)), vhi = _mm256_set1_ps(static_cast<float>(qmax));
  // After the two packs, dword 4*L + v holds elements 8*v + 4*L .. +3 (L the 128-bit lane): back in order.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const auto one = [&](const float* p) {
    const __m256 f = _mm256_fmadd_ps(_mm256_loadu_ps(p), vinv, vzp);  // one rounding: eq. (4)
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(f, vlo), vhi));  // RNE (default MXCSR)
  };
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i ab = _mm256_packs_epi32(one(x + i), one(x + i + 8));
    const __m256i cd = _mm256_packs_epi32(one(x + i + 16), one(x + i + 24));
    const __m256i bytes = to_int8 ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i), _mm256_permutevar8x32_epi32(bytes, order));
  }
  for (; i < n; ++i) {
    const float f = std::fmin(std::fmax(std::fmaf(x[i], inv, zp), static_cast<float>(qmin)), static_cast<float>(qmax));
    const int32_t v = static_cast<int32_t>(std::nearbyint(f));
    q[i] = static_cast<uint8_t>(v);
  }
}

}  // namespace qk
