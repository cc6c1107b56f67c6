// gemm_12x8c4u7_avx2.cc: the 7-bit-activation AVX2 kernel for outputs of at most 8 columns (8-channel
// layers), reading the 6x16 7-bit kernel's panels (their first 8 columns).
//
// The arithmetic of gemm_6x16c4u7_avx2.cc (vpmaddubsw on uint8 A below 128, exact), with the shape of the
// 12x8 8-bit kernel: twelve rows of one ymm accumulator each, so an 8-channel output computes no padding
// columns and pays half as many tiles.
#include "kernels/avx2/gemm_common_avx2.h"
#include "qkern/kernel_list.h"

namespace qk {

namespace {

#define QK_EACH_ROW(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)

template <int MR>
void tile(const TileArgs& t) {
  const __m256i ones = _mm256_set1_epi16(1);
  const __m256i init = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.bias_eff));
#define QK_INIT(r) __m256i c##r = init;
  QK_EACH_ROW(QK_INIT)
#undef QK_INIT
  for (int tap = 0; tap < t.taps; ++tap) {
    const uint8_t* bp = t.b + t.tap_b[tap] * t.tap_kp * kNR;
    const uint8_t* a[12];
    for (int r = 0; r < 12; ++r) a[r] = t.a[tap][r < MR ? r : 0];
    // One k-group: each row's four bytes broadcast, times columns 0-7 of the panel.
    for_each_quad(t.tap_k, [&](int64_t q, auto load) {
      const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bp + q * kNR * kQuad));
#define QK_ROW(r)                                                                                        \
  if constexpr (MR > r)                                                                                  \
    c##r = _mm256_add_epi32(c##r, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi32(load(a[r])), b0), ones));
      QK_EACH_ROW(QK_ROW)
#undef QK_ROW
    });
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

void tile_gemm_12x8c4u7__avx2(const TileArgs& t, int mr) {
  dispatch_rows<1, 12>(mr, [&](auto rows) { tile<decltype(rows)::value>(t); });
}

}  // namespace qk
