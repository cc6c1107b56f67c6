// gemm_12x8c2_avx2.cc: the narrow AVX2 kernel: 12x8 tiles for outputs of at most 8 columns (a first
// layer's 8 channels, a 1-3 channel head), reading the 6x16 kernel's panels (their first 8 columns).
//
// Twelve rows of one ymm accumulator each: the general kernel's 12 accumulators, but every one of them
// useful where the 6x16 tile would compute 8 padding columns, and half as many tiles (each with its
// row widening, stores and call overhead). An 8-column row is stored with one instruction.
#include "kernels/avx2/gemm_common_avx2.h"
#include "qkern/kernel_list.h"

namespace qk {

namespace {

#define QK_EACH_ROW(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)

template <int MR>
void tile(const TileArgs& t) {
  const WideRows w = widened_rows(t, MR);
  const __m256i init = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.bias_eff));
#define QK_INIT(r) __m256i c##r = init;
  QK_EACH_ROW(QK_INIT)
#undef QK_INIT
  // Each tap's widened rows multiply that tap's packed rows of B.
  for (int tap = 0; tap < t.taps; ++tap) {
    const int64_t pairs = t.tap_kp / 2;
    const uint8_t* bp = t.b + t.tap_b[tap] * t.tap_kp * kNR;
    const int16_t* const* at = w.row[tap];
    for (int64_t q = 0; q < pairs; ++q, bp += kNR * kKR) {
      const __m256i b0 = _mm256_cvtepi8_epi16(_mm_load_si128(reinterpret_cast<const __m128i*>(bp)));  // columns 0-7 of the panel
#define QK_ROW(r)                                                       \
  if constexpr (MR > r) {                                               \
    int32_t pair;                                                       \
    std::memcpy(&pair, at[r] + 2 * q, 4);                               \
    c##r = _mm256_add_epi32(c##r, _mm256_madd_epi16(_mm256_set1_epi32(pair), b0)); \
  }
      QK_EACH_ROW(QK_ROW)
#undef QK_ROW
    }
  }
  __m256i rows[MR][1];
#define QK_STORE(r) \
  if constexpr (MR > r) rows[r][0] = c##r;
  QK_EACH_ROW(QK_STORE)
#undef QK_STORE
  store_tile<1>(t, MR, rows);
}

#undef QK_EACH_ROW

}  // namespace

void tile_gemm_12x8c2__avx2(const TileArgs& t, int mr) {
  dispatch_rows<1, 12>(mr, [&](auto rows) { tile<decltype(rows)::value>(t); });
}

}  // namespace qk
