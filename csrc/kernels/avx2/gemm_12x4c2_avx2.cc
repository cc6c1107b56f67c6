// gemm_12x4c2_avx2.cc: the AVX2 kernel for outputs of at most 4 columns (1-3 channel heads, a 1-channel
// transposed conv), reading the 6x16 kernel's panels.
//
// The 12x8 tile would compute 8 columns of which 1-4 are real. Here the vector runs along K instead: each
// row multiplies 16 int16 of its widened row by 16 of the column (vpmaddwd), and a hadd tree turns the
// partial sums of a group of 8 rows into one vector whose lane i is row g+i's dot product (the 12 rows are
// a group of 8 and one of 4: 8 accumulators live at a time). The column's packed
// int8 pairs are gathered, sign-extended, into a contiguous int16 copy once per call and thread. Rows and K follow WideRows, so the
// overlapping conv windows and a widened conv input are read as they are for the other tiles.
#include "kernels/avx2/gemm_common_avx2.h"
#include "qkern/kernel_list.h"

namespace qk {

namespace {

constexpr int kCols = 4;

// Columns 0..kCols-1 of one panel, each tap's tap_kp rows contiguous and zero-filled to a multiple of 16.
struct ColumnCache {
  const uint8_t* panel = nullptr;
  uint64_t call = ~uint64_t{0};  // TileArgs::a_version >> 32: one per driver call
  int64_t tap_kp = 0, kpad = 0;
  int taps = 0;
  std::vector<int16_t> data;  // [column][tap][kpad]
};

// The panel's columns as contiguous int16 runs: column j, packed tap p at result + (j * *layout_taps + p) *
// *kpad. `taps` bounds the packed taps this tile names (kept taps index them through TileArgs::tap_b).
const int16_t* panel_columns(const TileArgs& t, int taps, int* layout_taps, int64_t* kpad) {
  ColumnCache& cache = thread_cache<ColumnCache>();
  const uint64_t call = t.a_version >> 32;
  if (cache.panel != t.b || cache.call != call || cache.tap_kp != t.tap_kp || cache.taps < taps) {
    cache.kpad = (t.tap_kp + 15) / 16 * 16;
    cache.data.assign(static_cast<size_t>(kCols * taps * cache.kpad), 0);
    const int8_t* panel = reinterpret_cast<const int8_t*>(t.b);
    for (int j = 0; j < kCols; ++j)
      for (int p = 0; p < taps; ++p)
        for (int64_t k = 0; k < t.tap_kp; ++k) {
          const int64_t kk = p * t.tap_kp + k;  // row of the packed K: [kk / 2][16][2]
          cache.data[static_cast<size_t>((j * taps + p) * cache.kpad + k)] = panel[(kk / kKR) * kNR * kKR + j * kKR + kk % kKR];
        }
    cache.panel = t.b;
    cache.call = call;
    cache.tap_kp = t.tap_kp;
    cache.taps = taps;
  }
  *layout_taps = cache.taps;
  *kpad = cache.kpad;
  return cache.data.data();
}

// Lane r = the sum of acc[r]'s eight lanes (wrapping), r = 0..7.
inline __m256i row_sums(const __m256i (&acc)[8]) {
  const __m256i h01 = _mm256_hadd_epi32(acc[0], acc[1]), h23 = _mm256_hadd_epi32(acc[2], acc[3]);
  const __m256i h45 = _mm256_hadd_epi32(acc[4], acc[5]), h67 = _mm256_hadd_epi32(acc[6], acc[7]);
  const __m256i q0 = _mm256_hadd_epi32(h01, h23), q1 = _mm256_hadd_epi32(h45, h67);
  return _mm256_add_epi32(_mm256_permute2x128_si256(q0, q1, 0x20), _mm256_permute2x128_si256(q0, q1, 0x31));
}

// Rows [g, g + n) of column j (32-bit lanes, lane i = row g + i): row r's column j goes to c (j before the
// split) or c2. 8-bit results of 8 rows one byte apart (a 1-column output) leave as one 8-byte store.
inline void put_column(const TileArgs& t, int g, int n, int j, int split, __m256i v, int64_t esize) {
  if (esize == 1 && n == 8 && j < split) {
    bool adjacent = true;
    for (int i = 1; i < 8; ++i) adjacent = adjacent && static_cast<char*>(t.c[g + i]) == static_cast<char*>(t.c[g]) + i;
    if (adjacent) {  // each lane's low byte, as below: bytes 0-3 of each 128-bit half, then the halves joined
      const __m256i low = _mm256_shuffle_epi8(v, _mm256_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                                                  -1, -1, 0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1,
                                                                  -1, -1, -1, -1));
      const __m256i joined = _mm256_permutevar8x32_epi32(low, _mm256_setr_epi32(0, 4, 1, 1, 1, 1, 1, 1));
      return _mm_storel_epi64(reinterpret_cast<__m128i*>(static_cast<char*>(t.c[g]) + j), _mm256_castsi256_si128(joined));
    }
  }
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), v);
  for (int i = 0; i < n; ++i) {
    const int r = g + i;
    char* dst = j < split ? static_cast<char*>(t.c[r]) + j * esize : static_cast<char*>(t.c2[r]) + (j - split) * esize;
    if (esize == 4) std::memcpy(dst, &lanes[i], 4);
    else *dst = static_cast<char>(lanes[i]);  // an 8-bit result: its low byte
  }
}

// The row-indexed quantities of rows [g, g + n) as lanes (zeros past n).
struct GroupRows {
  __m256i rowsum, a_zp;
  __m256 a_scale;
  GroupRows(const TileArgs& t, int g, int n) {
    const bool float_out = t.stage->mode == RequantMode::kFloat;  // a_scale and a_zp are set only then
    if (!t.zb && !float_out) {  // most tiles: nothing row-indexed (vector loads of scalar stores would stall)
      rowsum = a_zp = _mm256_setzero_si256();
      a_scale = _mm256_setzero_ps();
      return;
    }
    alignas(32) int32_t rs[8] = {}, zp[8] = {};
    alignas(32) float sc[8] = {};
    for (int i = 0; i < n; ++i) {
      if (t.zb) rs[i] = t.rowsum[g + i];
      if (float_out && t.row_zp) zp[i] = t.a_zp[g + i];
      if (float_out) sc[i] = t.a_scale[g + i];
    }
    rowsum = _mm256_load_si256(reinterpret_cast<const __m256i*>(rs));
    a_zp = _mm256_load_si256(reinterpret_cast<const __m256i*>(zp));
    a_scale = _mm256_load_ps(sc);
  }
};

template <RequantMode M>
inline __m256i requant_column(__m256i v, const OutputStage& os, const StageBounds& bounds, int64_t col) {
  return requant8<M>(v, broadcast_lanes<M>(os, col), bounds);
}

// Column j's accumulators of rows [g, g + n) (bias included) through the output stage: the row-indexed
// quantities (row sums, activation scales and zero points) are lanes, the column's parameters broadcast.
// Same operations, in the same order, as store_tile's per-row form (eqs. (7), (14)-(16), (19)-(20)).
inline void store_column(const TileArgs& t, const GroupRows& rows, const StageBounds& bounds, int g, int n, int j,
                         int split, __m256i v) {
  const OutputStage& os = *t.stage;
  const int64_t col = t.col0 + j;
  if (t.zb) v = _mm256_sub_epi32(v, _mm256_mullo_epi32(rows.rowsum, _mm256_set1_epi32(t.zb[j])));
  switch (os.mode) {
    case RequantMode::kRaw: return put_column(t, g, n, j, split, v, 4);
    case RequantMode::kFloat: {
      if (t.row_zp) v = _mm256_sub_epi32(v, _mm256_mullo_epi32(rows.a_zp, _mm256_set1_epi32(os.zp_colsum[col])));
      const __m256 s = _mm256_mul_ps(rows.a_scale, _mm256_set1_ps(os.fmultiplier[col]));
      const __m256 y = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v), s), _mm256_set1_ps(os.fbias[col]));
      return put_column(t, g, n, j, split, _mm256_castps_si256(y), 4);
    }
    case RequantMode::kFp32:
      return put_column(t, g, n, j, split, requant_column<RequantMode::kFp32>(v, os, bounds, col), 1);
    case RequantMode::kGemmlowp:
      return put_column(t, g, n, j, split, requant_column<RequantMode::kGemmlowp>(v, os, bounds, col), 1);
    case RequantMode::kSingle:
      return put_column(t, g, n, j, split, requant_column<RequantMode::kSingle>(v, os, bounds, col), 1);
  }
}

// Rows [G, G + N) of the tile (N <= 8), every column.
template <int G, int N>
inline void row_group(const TileArgs& t, const WideRows& w, const int16_t* columns, int layout_taps, int64_t kpad,
                      int split, const StageBounds& bounds) {
  const GroupRows rows(t, G, N);
  for (int j = 0; j < t.nc; ++j) {
    __m256i acc[8];
    for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_si256();
    for (int tap = 0; tap < t.taps; ++tap) {
      const int16_t* const* a = w.row[tap] + G;
      const int16_t* b = columns + (j * layout_taps + t.tap_b[tap]) * kpad;
      // Row elements past tap_kp (up to the next multiple of 16) meet the column's zero fill.
      for (int64_t k = 0; k < t.tap_kp; k += 16) {
        const __m256i bv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + k));
#define QK_ROW(i)                                                                                            \
  if constexpr (N > i)                                                                                       \
    acc[i] = _mm256_add_epi32(                                                                               \
        acc[i], _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a[i] + k)), bv));
        QK_ROW(0) QK_ROW(1) QK_ROW(2) QK_ROW(3) QK_ROW(4) QK_ROW(5) QK_ROW(6) QK_ROW(7)
#undef QK_ROW
      }
    }
    store_column(t, rows, bounds, G, N, j, split, _mm256_add_epi32(row_sums(acc), _mm256_set1_epi32(t.bias_eff[j])));
  }
}

template <int MR>
void tile(const TileArgs& t) {
  const WideRows w = widened_rows(t, MR);
  int packed_taps = 0;
  for (int tap = 0; tap < t.taps; ++tap) packed_taps = std::max(packed_taps, t.tap_b[tap] + 1);
  int layout_taps = 0;
  int64_t kpad = 0;
  const int16_t* columns = panel_columns(t, packed_taps, &layout_taps, &kpad);
  const int split = static_cast<int>(std::min<int64_t>(std::max<int64_t>(t.split - t.col0, 0), t.nc));
  const StageBounds bounds(*t.stage);
  row_group<0, (MR < 8 ? MR : 8)>(t, w, columns, layout_taps, kpad, split, bounds);
  if constexpr (MR > 8) row_group<8, MR - 8>(t, w, columns, layout_taps, kpad, split, bounds);
}

}  // namespace

void tile_gemm_12x4c2__avx2(const TileArgs& t, int mr) {
  dispatch_rows<1, 12>(mr, [&](auto rows) { tile<decltype(rows)::value>(t); });
}

}  // namespace qk
