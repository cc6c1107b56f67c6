// byte_sum_avx2.cc: eq. (7)'s row sums of A (when B has a zero point), 32 bytes per vpsadbw.
#include <immintrin.h>

#include "qkern/gemm.h"
#include "qkern/kernel_list.h"

namespace qk {

namespace {

inline uint32_t row_sum(const uint8_t* p, int64_t n, uint8_t flip, __m256i x) {
  const __m256i zero = _mm256_setzero_si256();
  __m256i acc = zero;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)), x);
    acc = _mm256_add_epi64(acc, _mm256_sad_epu8(v, zero));
  }
  const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  uint32_t s = static_cast<uint32_t>(_mm_cvtsi128_si64(_mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2))));
  for (; i < n; ++i) s += static_cast<uint8_t>(p[i] ^ flip);
  return s;
}

}  // namespace

void byte_sums__avx2(const uint8_t* p, int64_t rows, int64_t stride, int64_t n, uint8_t flip, uint32_t* out) {
  const __m256i x = _mm256_set1_epi8(static_cast<char>(flip));
  for (int64_t r = 0; r < rows; ++r) out[r] = row_sum(p + r * stride, n, flip, x);
}

}  // namespace qk
