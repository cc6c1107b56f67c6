// gemm_6x16c2_avx2.cc: the general AVX2 kernel: exact 6x16 tiles, operands widened to int16, pairs
// multiplied with vpmaddwd (gemm_common_avx2.h), and the packer of its panels.
#include "kernels/avx2/gemm_common_avx2.h"
#include "qkern/kernel_list.h"

namespace qk {

namespace {

template <int MR>
void tile(const TileArgs& t) {
  const WideRows w = widened_rows(t, MR);
  __m256i c00 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.bias_eff));
  __m256i c01 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.bias_eff + 8));
  __m256i c10 = c00, c11 = c01, c20 = c00, c21 = c01, c30 = c00, c31 = c01, c40 = c00, c41 = c01, c50 = c00, c51 = c01;
  // Each tap's widened rows multiply that tap's packed rows of B.
  for (int tap = 0; tap < t.taps; ++tap) {
    const int64_t pairs = t.tap_kp / 2;
    const uint8_t* bp = t.b + t.tap_b[tap] * t.tap_kp * kNR;
    const int16_t* const* at = w.row[tap];
    for (int64_t q = 0; q < pairs; ++q, bp += kNR * kKR) {
      const __m256i b0 = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(bp)));
      const __m256i b1 = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(bp + 16)));
#define QK_ROW(r)                                                                  \
  if constexpr (MR > r) {                                                          \
    int32_t pair;                                                                  \
    std::memcpy(&pair, at[r] + 2 * q, 4);                                          \
    const __m256i av = _mm256_set1_epi32(pair);                                    \
    c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(av, b0));                \
    c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(av, b1));                \
  }
      QK_ROW(0) QK_ROW(1) QK_ROW(2) QK_ROW(3) QK_ROW(4) QK_ROW(5)
#undef QK_ROW
    }
  }
  __m256i rows[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  store_tile<2>(t, MR, rows);
}

}  // namespace

void tile_gemm_6x16c2__avx2(const TileArgs& t, int mr) {
  dispatch_rows<1, 6>(mr, [&](auto rows) { tile<decltype(rows)::value>(t); });
}

// The general AVX2 kernel's panels: [kp/2][16][2] int8 (gemm_common_avx2.h).
void pack_b_avx2(PackedB& pb, const BSource& b) { pack_int8_panels<kKR>(pb, b); }

}  // namespace qk
