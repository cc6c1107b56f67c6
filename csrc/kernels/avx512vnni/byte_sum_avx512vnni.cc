// byte_sum_avx512vnni.cc: eq. (7)'s row sums of A (when B has a zero point), 64 bytes per vpsadbw.
#include <immintrin.h>

#include "qkern/gemm.h"

namespace qk {

uint32_t byte_sum__avx512vnni(const uint8_t* p, int64_t n, uint8_t flip) {
  const __m512i x = _mm512_set1_epi8(static_cast<char>(flip)), zero = _mm512_setzero_si512();
  __m512i acc = zero;
  int64_t i = 0;
  for (; i + 64 <= n; i += 64)
    acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_xor_si512(_mm512_loadu_si512(p + i), x), zero));
  if (i < n) {  // the last n % 64 bytes under a mask: masked-off bytes are not read
    const __mmask64 rest = (__mmask64{1} << (n - i)) - 1;
    const __m512i v = _mm512_xor_si512(_mm512_maskz_loadu_epi8(rest, p + i), x);
    acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_maskz_mov_epi8(rest, v), zero));
  }
  // Halving adds in registers (_mm512_reduce_add_epi64 trips GCC 12's PR 105593 warning; a store and
  // eight scalar loads cost more than a 64-byte row's own arithmetic).
  const __m256i s4 = _mm256_add_epi64(_mm512_maskz_extracti64x4_epi64(0xFF, acc, 0),
                                      _mm512_maskz_extracti64x4_epi64(0xFF, acc, 1));
  const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
  return static_cast<uint32_t>(_mm_cvtsi128_si64(_mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2))));
}

}  // namespace qk
