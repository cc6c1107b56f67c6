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

// One row of 8 columns through the output stage into c (columns before `split`, relative to the panel)
// and c2 (the rest: the depth-to-space store of conv_transpose2x2).
inline void store_row8(const TileArgs& t, int r, __m256i v, int split) {
  const OutputStage& os = *t.stage;
  const bool whole = t.nc == 8 && split >= 8;
  alignas(32) unsigned char tmp[8 * 4];
  int64_t esize = 4;
  if (os.mode == RequantMode::kFloat) {
    // Eqs. (20) and (19), as the 6x16 kernel: three separate float32 roundings (no FMA).
    if (t.row_zp)
      v = _mm256_sub_epi32(v, _mm256_mullo_epi32(_mm256_set1_epi32(t.a_zp[r]),
                                                 _mm256_loadu_si256(reinterpret_cast<const __m256i*>(os.zp_colsum + t.col0))));
    const __m256 s = _mm256_mul_ps(_mm256_set1_ps(t.a_scale[r]), _mm256_loadu_ps(os.fmultiplier + t.col0));
    const __m256 y = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v), s), _mm256_loadu_ps(os.fbias + t.col0));
    if (whole) return _mm256_storeu_ps(static_cast<float*>(t.c[r]), y);
    _mm256_store_ps(reinterpret_cast<float*>(tmp), y);
  } else if (os.mode == RequantMode::kRaw) {
    if (whole) return _mm256_storeu_si256(static_cast<__m256i*>(t.c[r]), v);
    _mm256_store_si256(reinterpret_cast<__m256i*>(tmp), v);
  } else {
    // Within [qmin, qmax] of the 8-bit type: the saturating packs are exact.
    const __m256i q = requant8(v, os, t.col0);
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    const __m128i b = os.out_dtype == DType::kUint8 ? _mm_packus_epi16(w, w) : _mm_packs_epi16(w, w);
    if (whole) return _mm_storel_epi64(static_cast<__m128i*>(t.c[r]), b);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(tmp), b);
    esize = 1;
  }
  if (split > 0) copy_row_part(t.c[r], tmp, 0, split * esize);
  if (split < t.nc) copy_row_part(t.c2[r], tmp, split * esize, t.nc * esize);
}

#define QK_EACH_ROW(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)

template <int MR>
void tile(const TileArgs& t) {
  int64_t stride = 0;
  const int16_t* abase = widened_rows(t, MR, &stride);
  const __m256i init = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.bias_eff));
#define QK_INIT(r) __m256i c##r = init;
  QK_EACH_ROW(QK_INIT)
#undef QK_INIT
  // The widened rows hold the tile's taps back to back; each tap multiplies its own packed tap of B.
  for (int tap = 0; tap < t.taps; ++tap) {
    const int64_t pairs = t.tap_kp / 2;
    const uint8_t* bp = t.b + t.tap_b[tap] * t.tap_kp * kNR * 2;
    const int16_t* at = abase + tap * t.tap_kp;
    for (int64_t q = 0; q < pairs; ++q, bp += kNR * kKR * 2) {
      const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bp));  // columns 0-7 of the panel
#define QK_ROW(r)                                                       \
  if constexpr (MR > r) {                                               \
    int32_t pair;                                                       \
    std::memcpy(&pair, at + r * stride + 2 * q, 4);                     \
    c##r = _mm256_add_epi32(c##r, _mm256_madd_epi16(_mm256_set1_epi32(pair), b0)); \
  }
      QK_EACH_ROW(QK_ROW)
#undef QK_ROW
    }
  }
  const int split = static_cast<int>(std::min<int64_t>(std::max<int64_t>(t.split - t.col0, 0), t.nc));
  const __m256i zb = t.zb ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.zb)) : _mm256_setzero_si256();
#define QK_STORE(r)                                                                           \
  if constexpr (MR > r) {                                                                     \
    __m256i v = c##r;                                                                         \
    if (t.zb) v = _mm256_sub_epi32(v, _mm256_mullo_epi32(_mm256_set1_epi32(t.rowsum[r]), zb)); \
    store_row8(t, r, v, split);                                                               \
  }
  QK_EACH_ROW(QK_STORE)
#undef QK_STORE
}

#undef QK_EACH_ROW

}  // namespace

void tile_gemm_12x8c2__avx2(const TileArgs& t, int mr) {
  switch (mr) {
    case 1: return tile<1>(t);
    case 2: return tile<2>(t);
    case 3: return tile<3>(t);
    case 4: return tile<4>(t);
    case 5: return tile<5>(t);
    case 6: return tile<6>(t);
    case 7: return tile<7>(t);
    case 8: return tile<8>(t);
    case 9: return tile<9>(t);
    case 10: return tile<10>(t);
    case 11: return tile<11>(t);
    default: return tile<12>(t);
  }
}

}  // namespace qk
