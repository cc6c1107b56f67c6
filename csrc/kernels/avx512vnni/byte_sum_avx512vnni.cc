// byte_sum_avx512vnni.cc: eq. (7)'s row sums of A (when B has a zero point), 64 bytes per vpsadbw.
#include <immintrin.h>

#include "qkern/gemm.h"
#include "qkern/kernel_list.h"

namespace qk {

namespace {

// The sum of one row: `full` bytes (a multiple of 64) unmasked, then the bytes under `rest` (masked-off
// bytes are not read). Halving adds in registers: _mm512_reduce_add_epi64 trips GCC 12's PR 105593 warning,
// and a store with eight scalar reloads cost more than a 64-byte row's own arithmetic.
inline uint32_t row_sum(const uint8_t* p, int64_t full, __mmask64 rest, __m512i flip) {
  const __m512i zero = _mm512_setzero_si512();
  __m512i acc = zero;
  for (int64_t i = 0; i < full; i += 64)
    acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_xor_si512(_mm512_loadu_si512(p + i), flip), zero));
  if (rest) {
    const __m512i v = _mm512_xor_si512(_mm512_maskz_loadu_epi8(rest, p + full), flip);
    acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_maskz_mov_epi8(rest, v), zero));
  }
  const __m256i s4 = _mm256_add_epi64(_mm512_maskz_extracti64x4_epi64(0xFF, acc, 0),
                                      _mm512_maskz_extracti64x4_epi64(0xFF, acc, 1));
  const __m128i s2 = _mm_add_epi64(_mm256_castsi256_si128(s4), _mm256_extracti128_si256(s4, 1));
  return static_cast<uint32_t>(_mm_cvtsi128_si64(_mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2))));
}

inline __mmask64 tail_mask(int64_t n) { return n % 64 ? (__mmask64{1} << (n % 64)) - 1 : 0; }

}  // namespace

// Many rows in one call (a conv's pixels, a tile's rows): the mask is made once and the rows' reductions
// overlap; one call per 32-byte pixel cost about 70 cycles.
void byte_sums__avx512vnni(const uint8_t* p, int64_t rows, int64_t stride, int64_t n, uint8_t flip,
                           uint32_t* out) {
  const __m512i x = _mm512_set1_epi8(static_cast<char>(flip));
  const int64_t full = n / 64 * 64;
  const __mmask64 rest = tail_mask(n);
  for (int64_t r = 0; r < rows; ++r) out[r] = row_sum(p + r * stride, full, rest, x);
}

}  // namespace qk
