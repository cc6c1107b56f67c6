// gemm_6x16c4u7_avx2.cc: the AVX2 kernel for 7-bit activations (uint8 A below 128, torch's reduce_range):
// exact 6x16 tiles on vpmaddubsw, reading A's bytes in place, and the packer of its panels.
//
// vpmaddubsw multiplies u8 by s8 and adds each pair in saturating int16. With A < 128 and B in [-128, 127]
// a pair is at most 2 * 127 * 128 = 32512 in magnitude, so it never saturates; vpmaddwd by ones then adds
// two pairs into int32 (exact), and the int32 sums wrap as eq. (6) says. Against the 8-bit kernel (A
// widened to int16, vpmaddwd) it does twice the multiply-adds per instruction and widens nothing; the
// driver guarantees uint8 A (run_tiles), and the weights' packer promised the values (pack_b's a_bits).
#include "kernels/avx2/gemm_common_avx2.h"
#include "qkern/kernel_list.h"

namespace qk {

namespace {

template <int MR>
void tile(const TileArgs& t) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i c00 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.bias_eff));
  __m256i c01 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.bias_eff + 8));
  __m256i c10 = c00, c11 = c01, c20 = c00, c21 = c01, c30 = c00, c31 = c01, c40 = c00, c41 = c01, c50 = c00, c51 = c01;
  for (int tap = 0; tap < t.taps; ++tap) {
    const uint8_t* bp = t.b + t.tap_b[tap] * t.tap_kp * kNR;
    const uint8_t* a0 = t.a[tap][0];
    const uint8_t* a1 = MR > 1 ? t.a[tap][1] : a0;
    const uint8_t* a2 = MR > 2 ? t.a[tap][2] : a0;
    const uint8_t* a3 = MR > 3 ? t.a[tap][3] : a0;
    const uint8_t* a4 = MR > 4 ? t.a[tap][4] : a0;
    const uint8_t* a5 = MR > 5 ? t.a[tap][5] : a0;
    // One k-group: each row's four bytes broadcast, times columns 0-7 (b0) and 8-15 (b1).
    for_each_quad(t.tap_k, [&](int64_t q, auto load) {
      const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bp + q * kNR * kQuad));
      const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bp + q * kNR * kQuad + 32));
#define QK_ROW(r)                                                                                       \
  if constexpr (MR > r) {                                                                               \
    const __m256i av = _mm256_set1_epi32(load(a##r));                                                   \
    c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones));         \
    c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones));         \
  }
      QK_ROW(0) QK_ROW(1) QK_ROW(2) QK_ROW(3) QK_ROW(4) QK_ROW(5)
#undef QK_ROW
    });
  }
  __m256i rows[6][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  store_tile<2>(t, MR, rows);
}

}  // namespace

void tile_gemm_6x16c4u7__avx2(const TileArgs& t, int mr) {
  dispatch_rows<1, 6>(mr, [&](auto rows) { tile<decltype(rows)::value>(t); });
}

// The 7-bit kernels' panels: [kp/4][16][4] int8 (gemm_common_avx2.h).
void pack_b_avx2_c4(PackedB& pb, const BSource& b) { pack_int8_panels<kQuad>(pb, b); }

}  // namespace qk
