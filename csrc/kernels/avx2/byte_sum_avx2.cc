// byte_sum_avx2.cc: eq. (7)'s row sums of A (when B has a zero point), 32 bytes per vpsadbw.
#include <immintrin.h>

#include "qkern/gemm.h"

namespace qk {

uint32_t byte_sum__avx2(const uint8_t* p, int64_t n, uint8_t flip) {
  const __m256i x = _mm256_set1_epi8(static_cast<char>(flip)), zero = _mm256_setzero_si256();
  __m256i acc = zero;
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)), x);
    acc = _mm256_add_epi64(acc, _mm256_sad_epu8(v, zero));
  }
  alignas(32) uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  uint32_t s = static_cast<uint32_t>(lanes[0] + lanes[1] + lanes[2] + lanes[3]);
  for (; i < n; ++i) s += static_cast<uint8_t>(p[i] ^ flip);
  return s;
}

}  // namespace qk
