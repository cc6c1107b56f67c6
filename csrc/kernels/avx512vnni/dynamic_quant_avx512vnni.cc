// dynamic_quant_avx512vnni.cc: AVX-512 min/max and eq. (4) quantization of float32 rows (the AVX2 file's
// twin with 16 lanes); reached only when the avx512vnni level is selected.
#include <immintrin.h>

#include <cmath>

#include "qkern/dynamic_quant.h"

namespace qk {

void minmax_f32__avx512vnni(const float* x, int64_t n, float* min_val, float* max_val, bool* nan_free) {
  __m512 lo = _mm512_set1_ps(INFINITY), hi = _mm512_set1_ps(-INFINITY);
  __mmask16 unordered = 0;  // min/max drop NaNs: remember them separately
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 a = _mm512_loadu_ps(x + i);
    lo = _mm512_min_ps(lo, a);
    hi = _mm512_max_ps(hi, a);
    unordered = static_cast<__mmask16>(unordered | _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q));
  }
  // Lane by lane (GCC 12's _mm512_reduce_* trip its own uninitialized-variable warning, PR 105593).
  alignas(64) float los[16], his[16];
  _mm512_store_ps(los, lo);
  _mm512_store_ps(his, hi);
  float mn = los[0], mx = his[0];
  for (int j = 1; j < 16; ++j) {
    mn = std::fmin(mn, los[j]);
    mx = std::fmax(mx, his[j]);
  }
  bool clean = unordered == 0;
  for (; i < n; ++i) {
    clean = clean && !std::isnan(x[i]);
    mn = std::fmin(mn, x[i]);
    mx = std::fmax(mx, x[i]);
  }
  *min_val = mn;
  *max_val = mx;
  *nan_free = clean;
}

void quantize_f32__avx512vnni(const float* x, int64_t n, float inv, float zp, int32_t qmin, int32_t qmax, bool,
                              uint8_t* q) {
  const __m512 vinv = _mm512_set1_ps(inv), vzp = _mm512_set1_ps(zp);
  // Integer bounds: clamping before the round-half-even conversion equals clamping after; the clamped
  // values fit the output type, so the truncating narrowing (vpmovdb) is exact for uint8 and int8 alike.
  const __m512 vlo = _mm512_set1_ps(static_cast<float>(qmin)), vhi = _mm512_set1_ps(static_cast<float>(qmax));
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 f = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), vinv, vzp);  // one rounding: eq. (4)
    const __m512i v = _mm512_cvt_roundps_epi32(_mm512_min_ps(_mm512_max_ps(f, vlo), vhi),
                                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(v));
  }
  for (; i < n; ++i) {
    const float f = std::fmin(std::fmax(std::fmaf(x[i], inv, zp), static_cast<float>(qmin)), static_cast<float>(qmax));
    q[i] = static_cast<uint8_t>(static_cast<int32_t>(std::nearbyint(f)));
  }
}

}  // namespace qk
