// gemm_6x16c2_avx2.cc: exact AVX2 6x16 tile: operands widened to int16, pairs multiplied with vpmaddwd.
//
// vpmaddubsw is never used: it saturates int16 (PyTorch #44939). With int16 operands each vpmaddwd
// lane is a0*b0 + a1*b1, at most 2*255*255 in magnitude: exact, and the int32 sums wrap (eq. (6)).
#include <immintrin.h>

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
// back, so all but the first panel reuse the widening.
struct WidenCache {
  const uint8_t* rows[kMaxMR] = {};
  int64_t k = -1;
  uint64_t call_id = 0;  // a new call may reuse addresses with new contents: never hit across calls
  bool is_signed = false;
  std::vector<int16_t> data;  // kMaxMR rows of `stride` int16
  int64_t stride = 0;
};

const int16_t* widened_rows(const TileArgs& t, int mr, int64_t* stride) {
  thread_local WidenCache cache;
  bool hit = cache.call_id == t.call_id && cache.k == t.k && cache.is_signed == t.a_signed;
  for (int r = 0; r < mr && hit; ++r) hit = cache.rows[r] == t.a[r];
  if (!hit) {
    cache.stride = (t.k + 31) / 32 * 32;
    const size_t need = static_cast<size_t>(kMaxMR * cache.stride);
    if (cache.data.size() < need) cache.data.resize(need);
    for (int r = 0; r < kMaxMR; ++r) cache.rows[r] = nullptr;
    for (int r = 0; r < mr; ++r) {
      widen(t.a[r], t.a_signed, t.k, cache.data.data() + r * cache.stride);
      cache.rows[r] = t.a[r];
    }
    cache.k = t.k;
    cache.call_id = t.call_id;
    cache.is_signed = t.a_signed;
  }
  *stride = cache.stride;
  return cache.data.data();
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
    const int64_t pairs = (t.k + 1) / 2;
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
  for (int r = 0; r < MR; ++r) {
    uint32_t row[kNR];
    for (int j = 0; j < t.nc; ++j) {
      const uint32_t term = t.zb ? static_cast<uint32_t>(t.rowsum[r]) * static_cast<uint32_t>(t.zb[j]) : 0u;
      row[j] = static_cast<uint32_t>(acc[r][j]) - term;
    }
    // store_row's channel index is j % channel_count; offset the stage to this panel's first column.
    OutputStage panel = os;
    if (os.multiplier) panel.multiplier += t.col0;
    if (os.shift) panel.shift += t.col0;
    if (os.fmultiplier) panel.fmultiplier += t.col0;
    store_row(row, t.nc, kNR, panel, static_cast<char*>(t.c[r]));
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
void pack_b_avx2(PackedB& pb, const void* b, int64_t ldb) {
  int16_t* dst = reinterpret_cast<int16_t*>(pb.data.data());
  for (int64_t p = 0; p < pb.panels; ++p) {
    int16_t* panel = dst + p * pb.kp * kNR;
    for (int64_t kk = 0; kk < pb.kp; ++kk) {
      for (int64_t j = 0; j < kNR; ++j) {
        const int64_t col = p * kNR + j;
        const bool real = kk < pb.k && col < pb.n;
        panel[(kk / kKR) * kNR * kKR + j * kKR + kk % kKR] =
            real ? static_cast<int16_t>(load_q(b, pb.b_type, kk * ldb + col)) : int16_t{0};
      }
    }
  }
}

}  // namespace qk
