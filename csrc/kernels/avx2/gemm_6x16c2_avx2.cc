// gemm_6x16c2_avx2.cc: exact AVX2 6x16 tile: operands widened to int16, pairs multiplied with vpmaddwd.
//
// vpmaddubsw is never used: it saturates int16 (PyTorch #44939). With int16 operands each vpmaddwd
// lane is a0*b0 + a1*b1, at most 2*255*255 in magnitude: exact, and the int32 sums wrap (eq. (6)).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "qkern/gemm.h"
#include "qkern/scalar_common.h"

namespace qk {

namespace {

constexpr int kNR = 16;
constexpr int kKR = 2;

// Widens row bytes [k0, k0+n) to int16 (zero-filled to an even count).
void widen(const uint8_t* src, bool is_signed, int64_t n, int16_t* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m256i w = is_signed ? _mm256_cvtepi8_epi16(v) : _mm256_cvtepu8_epi16(v);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), w);
  }
  for (; i < n; ++i) dst[i] = is_signed ? static_cast<int8_t>(src[i]) : src[i];
  if (n % 2) dst[n] = 0;
}

// The widened rows of the last tile this thread saw: the driver runs every panel of an m-tile back to
// back, so all but the first panel reuse the widening. Each row is the concatenation of its taps, each
// widened to tap_kp int16 (zero-filled), matching the packed B rows.
struct WidenCache {
  const uint8_t* rows[kMaxTaps][kMaxMR] = {};
  int taps = 0;
  int64_t tap_k = -1;
  uint64_t a_version = 0;  // new bytes may sit at old addresses: never hit across versions
  bool is_signed = false;
  std::vector<int16_t> data;  // kMaxMR rows of `stride` int16
  int64_t stride = 0;
};

const int16_t* widened_rows(const TileArgs& t, int mr, int64_t* stride) {
  thread_local WidenCache cache;
  bool hit = cache.a_version == t.a_version && cache.taps == t.taps && cache.tap_k == t.tap_k &&
             cache.is_signed == t.a_signed;
  for (int tap = 0; tap < t.taps && hit; ++tap)
    for (int r = 0; r < mr && hit; ++r) hit = cache.rows[tap][r] == t.a[tap][r];
  if (!hit) {
    cache.stride = (t.taps * t.tap_kp + 31) / 32 * 32;
    const size_t need = static_cast<size_t>(kMaxMR * cache.stride);
    if (cache.data.size() < need) cache.data.resize(need);
    for (int tap = 0; tap < kMaxTaps; ++tap)
      for (int r = 0; r < kMaxMR; ++r) cache.rows[tap][r] = nullptr;
    for (int r = 0; r < mr; ++r)
      for (int tap = 0; tap < t.taps; ++tap) {
        widen(t.a[tap][r], t.a_signed, t.tap_k, cache.data.data() + r * cache.stride + tap * t.tap_kp);
        cache.rows[tap][r] = t.a[tap][r];
      }
    cache.taps = t.taps;
    cache.tap_k = t.tap_k;
    cache.a_version = t.a_version;
    cache.is_signed = t.a_signed;
  }
  *stride = cache.stride;
  return cache.data.data();
}

// The stage with its per-column arrays starting at column `col`.
OutputStage stage_at(const OutputStage& os, int64_t col) {
  OutputStage s = os;
  if (os.multiplier) s.multiplier += col;
  if (os.shift) s.shift += col;
  if (os.fmultiplier) s.fmultiplier += col;
  return s;
}

template <int MR>
void tile(const TileArgs& t) {
  int64_t stride = 0;
  const int16_t* abase = widened_rows(t, MR, &stride);
  __m256i c00 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.bias_eff));
  __m256i c01 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.bias_eff + 8));
  __m256i c10 = c00, c11 = c01, c20 = c00, c21 = c01, c30 = c00, c31 = c01, c40 = c00, c41 = c01, c50 = c00, c51 = c01;
  const uint8_t* bp = t.b;
  {
    const int64_t pairs = t.taps * t.tap_kp / 2;
    for (int64_t q = 0; q < pairs; ++q, bp += kNR * kKR * 2) {
      const __m256i b0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bp));
      const __m256i b1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(bp + 32));
#define QK_ROW(r)                                                                  \
  if constexpr (MR > r) {                                                          \
    int32_t pair;                                                                  \
    std::memcpy(&pair, abase + r * stride + 2 * q, 4);                                        \
    const __m256i av = _mm256_set1_epi32(pair);                                    \
    c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(av, b0));                \
    c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(av, b1));                \
  }
      QK_ROW(0) QK_ROW(1) QK_ROW(2) QK_ROW(3) QK_ROW(4) QK_ROW(5)
#undef QK_ROW
    }
  }
  alignas(32) int32_t acc[kMaxMR][kNR];
  const __m256i rows[kMaxMR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  for (int r = 0; r < MR; ++r) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(acc[r]), rows[r][0]);
    _mm256_store_si256(reinterpret_cast<__m256i*>(acc[r] + 8), rows[r][1]);
  }
  const OutputStage& os = *t.stage;
  // Columns before `split` go to c, the rest to c2 (the depth-to-space store of conv_transpose2x2).
  const int split = static_cast<int>(std::min<int64_t>(std::max<int64_t>(t.split - t.col0, 0), t.nc));
  for (int r = 0; r < MR; ++r) {
    uint32_t row[kNR];
    for (int j = 0; j < t.nc; ++j) {
      const uint32_t term = t.zb ? static_cast<uint32_t>(t.rowsum[r]) * static_cast<uint32_t>(t.zb[j]) : 0u;
      row[j] = static_cast<uint32_t>(acc[r][j]) - term;
    }
    // store_row's channel index is j % channel_count; offset the stage to the first column stored.
    if (split > 0) store_row(row, split, kNR, stage_at(os, t.col0), static_cast<char*>(t.c[r]));
    if (split < t.nc) store_row(row + split, t.nc - split, kNR, stage_at(os, t.col0 + split), t.c2[r]);
  }
}

}  // namespace

void tile_gemm_6x16c2__avx2(const TileArgs& t, int mr) {
  switch (mr) {
    case 1: return tile<1>(t);
    case 2: return tile<2>(t);
    case 3: return tile<3>(t);
    case 4: return tile<4>(t);
    case 5: return tile<5>(t);
    default: return tile<6>(t);
  }
}

// B[k, n] -> panels [kp/2][16][2] of int16 raw values (no flip needed: int16 holds u8 and s8).
void pack_b_avx2(PackedB& pb, const BSource& b) {
  int16_t* dst = reinterpret_cast<int16_t*>(pb.data.data());
  for (int64_t p = 0; p < pb.panels; ++p) {
    int16_t* panel = dst + p * pb.kp * kNR;
    for_each_packed_row(pb, b, [&](int64_t kk, int64_t row) {
      if (row < 0) return;  // padding rows stay 0 (the buffer is zeroed)
      int16_t* out = panel + (kk / kKR) * kNR * kKR + kk % kKR;
      for (int64_t j = 0; j < kNR && p * kNR + j < pb.n; ++j)
        out[j * kKR] = static_cast<int16_t>(load_q(b.data, b.type, row + (p * kNR + j) * b.ld_n));
    });
  }
}

}  // namespace qk
