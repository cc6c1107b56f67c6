// conv_first_layer_avx2.cc: a first layer (3x3 conv, C <= kPatchCinMax) computed straight from a widened band
// of its input, without patches or tile pointer tables (docs/speed-design.md S8).
//
// Each call widens the input rows its output rows read to int16, with the padding made real (x_zero_point
// elements around the image), into a per-thread buffer. Kernel row dy of a window is then 3*C consecutive
// elements at the window's corner + dy band rows; its element pairs (2j, 2j+1) are broadcast as one 32-bit
// load each and multiplied (vpmaddwd) by that pair's weights of 8 output channels. A pair reaching past the
// kernel row (3*C odd) takes the next element of the band, whose weight is zero. Three or four pixels at a
// time, 8 or 16 columns a pass, then the tiles' output stage arithmetic (requant8 / store_tile): the same
// integers as the GEMM tiles.
#include "kernels/avx2/gemm_common_avx2.h"
#include "qkern/kernel_list.h"
#include "qkern/tuning.h"

namespace qk {

namespace {

// Pixels a pass computes before one call of the output stage.
constexpr int kStorePixels = kMaxMR;
// Pixels whose accumulators are live at a time, for NV vectors a pixel: 4 x 1 or 3 x 2 accumulators, with
// the weights, the broadcast and the products within the 16 ymm registers (4 x 2 spilled).
template <int NV>
constexpr int kPixelBlock = NV == 1 ? 4 : 3;
// Elements past a band's last row that a last pair may read (zeros).
constexpr int64_t kBandSlack = 16;

// The per-thread buffer of widened bands.
struct FirstLayerCache {
  std::vector<int16_t> band;
};

// The weights as pair vectors, [group of 8 columns][3][pairs][8][2]: pair j of kernel row dy, column group g
// holds 8 columns x (weight of element 2j, weight of element 2j+1), read from the packed panels ([kp/2][16][2]
// int8, K index dy*3C + e); elements past 3*C and columns past n are 0. Made once per packed weights.
std::vector<int16_t> pair_weights(const PackedB& pb) {
  const int64_t channels = pb.k / 9, row = 3 * channels, pairs = (row + 1) / 2, groups = (pb.n + 7) / 8;
  std::vector<int16_t> out(static_cast<size_t>(groups * 3 * pairs * 16), 0);
  const int8_t* data = reinterpret_cast<const int8_t*>(pb.data.data());
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t dy = 0; dy < 3; ++dy)
      for (int64_t j = 0; j < pairs; ++j)
        for (int64_t c = 0; c < 8 && g * 8 + c < pb.n; ++c)
          for (int64_t h = 0; h < 2; ++h) {
            const int64_t e = 2 * j + h, col = g * 8 + c;
            if (e >= row) continue;
            const int64_t kk = dy * row + e;
            const int8_t w = data[(col / kNR) * pb.kp * kNR + (kk / kKR) * kNR * kKR + (col % kNR) * kKR + kk % kKR];
            out[static_cast<size_t>((((g * 3 + dy) * pairs + j) * 8 + c) * 2 + h)] = w;
          }
  return out;
}

// Input rows [iy0, iy0 + rows) of image `img` as int16, padding*C elements of x_zero_point on either side of
// each row and whole rows of it outside the image, then kBandSlack zeros.
void widen_band(const FirstLayerArgs& a, int64_t img, int64_t iy0, int64_t rows, std::vector<int16_t>& band) {
  const int64_t c = a.channels, row = a.width * c, border = a.padding * c, band_row = row + 2 * border;
  const size_t need = static_cast<size_t>(rows * band_row + kBandSlack);
  if (band.size() < need) band.resize(need);
  // The padding byte as the kernel reads x (the byte window_sums and the byte paths use), widened.
  const int16_t zero = a.x_signed ? static_cast<int8_t>(a.x_zero_point) : static_cast<uint8_t>(a.x_zero_point);
  for (int64_t r = 0; r < rows; ++r) {
    int16_t* d = band.data() + r * band_row;
    const int64_t iy = iy0 + r;
    if (iy < 0 || iy >= a.height) {
      std::fill(d, d + band_row, zero);
      continue;
    }
    std::fill(d, d + border, zero);
    widen(a.x + (img * a.height + iy) * row, a.x_signed, row, d + border);
    std::fill(d + border + row, d + band_row, zero);
  }
  std::fill(band.data() + rows * band_row, band.data() + rows * band_row + kBandSlack, int16_t{0});
}

// The 32-bit word at p (two int16).
inline int32_t pair_at(const int16_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Accumulators of N <= kPixelBlock<NV> pixels (corners `step` elements apart), 8*NV columns from w's group.
// Named accumulators, not an array: GCC keeps an array of vectors on the stack (docs/speed-design.md S3); not
// inlined and the loops not unrolled: otherwise GCC schedules the products of several blocks ahead and spills.
template <int C, int NV, int N>
__attribute__((noinline)) void pixel_block(const int16_t* corner, int64_t step, int64_t band_row, const int16_t* w,
                                           const __m256i* init, __m256i (*acc)[NV]) {
  static_assert(N >= 1 && N <= 4 && (NV == 1 || NV == 2), "four pixels of two vectors at most");
  constexpr int kPairs = (3 * C + 1) / 2;
  // Each weight is loaded where it is used: hoisted out of the pixel loop, 3*kPairs*NV of them would spill.
  asm("" : "+r"(w));
  const auto weight = [w](int v, int dy, int j) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + ((v * 3 + dy) * kPairs + j) * 16));
  };
  __m256i c0 = init[0], c1 = init[0], c2 = init[0], c3 = init[0];
  __m256i d0 = init[NV - 1], d1 = init[NV - 1], d2 = init[NV - 1], d3 = init[NV - 1];
#pragma GCC unroll 1
  for (int dy = 0; dy < 3; ++dy) {
    const int16_t* row = corner + dy * band_row;
#pragma GCC unroll 1
    for (int j = 0; j < kPairs; ++j) {
      const __m256i w0 = weight(0, dy, j);
      const __m256i w1 = NV == 2 ? weight(1, dy, j) : w0;
#define QK_PIXEL(i)                                                                    \
  if constexpr (N > i) {                                                               \
    const __m256i a = _mm256_set1_epi32(pair_at(row + i * step + 2 * j));              \
    c##i = _mm256_add_epi32(c##i, _mm256_madd_epi16(a, w0));                          \
    if constexpr (NV == 2) d##i = _mm256_add_epi32(d##i, _mm256_madd_epi16(a, w1));   \
  }
      QK_PIXEL(0) QK_PIXEL(1) QK_PIXEL(2) QK_PIXEL(3)
#undef QK_PIXEL
    }
  }
#define QK_SAVE(i)                     \
  if constexpr (N > i) {               \
    acc[i][0] = c##i;                  \
    if constexpr (NV == 2) acc[i][NV - 1] = d##i; \
  }
  QK_SAVE(0) QK_SAVE(1) QK_SAVE(2) QK_SAVE(3)
#undef QK_SAVE
}

// The tiles' output stage for kStorePixels pixels at a time: every mode and output form, weight zero points.
template <int NV>
struct TileStore {
  TileArgs& t;
  const FirstLayerArgs& a;
  int64_t col0;
  void operator()(__m256i (*acc)[NV], int n, int64_t pixel) const {
    const int64_t esize = out_elem_size(a.pb->stage.out_dtype), out_row = a.pb->n * esize;
    const uint32_t sum_base = a.x_signed ? 0u - 128u * static_cast<uint32_t>(a.pb->k) : 0u;
    t.col0 = col0;
    t.nc = static_cast<int>(std::min<int64_t>(8 * NV, a.pb->n - col0));
    t.zb = a.pb->has_zb ? a.pb->zb.data() + col0 : nullptr;
    for (int r = 0; r < n; ++r) {
      t.c[r] = a.out + (pixel + r) * out_row + col0 * esize;
      if (t.zb) t.rowsum[r] = static_cast<int32_t>(sum_base + a.window_sums[pixel + r]);
    }
    store_tile<NV>(t, n, acc);
  }
};

// The common case: requantized to 8 bits, all 8*NV columns real, no weight zero point. store_tile's
// arithmetic (requant8, pack_bytes) with the parameters loaded once per pass and no pointer table.
template <int NV, RequantMode M, bool kSigned>
struct ByteStore {
  StageLanes lanes[NV];
  StageBounds bounds;
  char* out;  // column col0 of pixel 0
  int64_t out_row;
  ByteStore(const FirstLayerArgs& a, int64_t col0) : bounds(a.pb->stage), out(a.out + col0), out_row(a.pb->n) {
    for (int v = 0; v < NV; ++v) lanes[v] = load_lanes<M>(a.pb->stage, col0 + 8 * v);
  }
  void operator()(__m256i (*acc)[NV], int n, int64_t pixel) const {
    char* dst = out + pixel * out_row;
    for (int r = 0; r < n; ++r, dst += out_row) {
      __m256i q[NV];
      for (int v = 0; v < NV; ++v) q[v] = requant8<M>(acc[r][v], lanes[v], bounds);
      store_bytes<NV>(dst, pack_bytes<NV, kSigned>(q));
    }
  }
};

// Output rows [oy0, oy1) of image img from its band (band row 0 = input row oy0*stride - padding): columns
// [col0, col0 + 8*NV), through `store`.
template <int C, int NV, class Store>
void band_pass(const FirstLayerArgs& a, int64_t img, int64_t oy0, int64_t oy1, const int16_t* band,
               const int16_t* weights, int64_t col0, const Store& store) {
  constexpr int kPairs = (3 * C + 1) / 2;
  const int64_t band_row = (a.width + 2 * a.padding) * C, step = a.stride * C;
  // The group's pair vectors stay in L1; the compiler folds each load into its vpmaddwd.
  const int16_t* w = weights + col0 / 8 * 3 * kPairs * 16;
  __m256i init[NV];
  for (int v = 0; v < NV; ++v) init[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.bias_eff + col0 + 8 * v));
  __m256i acc[kStorePixels][NV];
  for (int64_t oy = oy0; oy < oy1; ++oy) {
    const int16_t* row = band + (oy - oy0) * a.stride * band_row;
    const int64_t pixel0 = (img * a.out_height + oy) * a.out_width;
    for (int64_t ox0 = 0; ox0 < a.out_width; ox0 += kStorePixels) {
      const int n = static_cast<int>(std::min<int64_t>(kStorePixels, a.out_width - ox0));
      const int16_t* corner = row + ox0 * step;
      int i = 0;
      for (; i + kPixelBlock<NV> <= n; i += kPixelBlock<NV>)
        pixel_block<C, NV, kPixelBlock<NV>>(corner + i * step, step, band_row, w, init, acc + i);
      for (; i < n; ++i) pixel_block<C, NV, 1>(corner + i * step, step, band_row, w, init, acc + i);
      store(acc, n, pixel0 + ox0);
    }
  }
}

// band_pass with ByteStore where it applies, else TileStore.
template <int C, int NV>
void column_pass(const FirstLayerArgs& a, TileArgs& t, int64_t img, int64_t oy0, int64_t oy1, const int16_t* band,
                 const int16_t* weights, int64_t col0) {
  const OutputStage& os = a.pb->stage;
  const auto pass = [&](const auto& store) { band_pass<C, NV>(a, img, oy0, oy1, band, weights, col0, store); };
  if (os.mode == RequantMode::kRaw || os.mode == RequantMode::kFloat || a.pb->has_zb || a.pb->n - col0 < 8 * NV)
    return pass(TileStore<NV>{t, a, col0});
  const bool s = os.out_dtype == DType::kInt8;
  switch (os.mode) {
    case RequantMode::kFp32:
      return s ? pass(ByteStore<NV, RequantMode::kFp32, true>(a, col0)) : pass(ByteStore<NV, RequantMode::kFp32, false>(a, col0));
    case RequantMode::kGemmlowp:
      return s ? pass(ByteStore<NV, RequantMode::kGemmlowp, true>(a, col0))
               : pass(ByteStore<NV, RequantMode::kGemmlowp, false>(a, col0));
    default:
      return s ? pass(ByteStore<NV, RequantMode::kSingle, true>(a, col0))
               : pass(ByteStore<NV, RequantMode::kSingle, false>(a, col0));
  }
}

template <int C>
void first_layer(const FirstLayerArgs& a, int64_t row_begin, int64_t row_end) {
  const PackedB& pb = *a.pb;
  const std::vector<int16_t>& weights = pb.first_layer_weights(pair_weights);
  FirstLayerCache& cache = thread_cache<FirstLayerCache>();
  TileArgs t;
  t.stage = &pb.stage;
  t.split = std::numeric_limits<int64_t>::max();
  t.a_signed = a.x_signed;
  t.row_zp = false;
  // Bands of at most band_rows output rows, each within one image: the band's bytes stay near kFirstLayerBandBytes.
  const int64_t band_row_bytes = 2 * (a.width + 2 * a.padding) * C;
  const int64_t band_rows = std::max<int64_t>(1, kFirstLayerBandBytes / (a.stride * band_row_bytes));
  for (int64_t r = row_begin; r < row_end;) {
    const int64_t img = r / a.out_height, oy0 = r % a.out_height;
    const int64_t oy1 = std::min({a.out_height, oy0 + band_rows, oy0 + (row_end - r)});
    widen_band(a, img, oy0 * a.stride - a.padding, (oy1 - oy0 - 1) * a.stride + 3, cache.band);
    int64_t col0 = 0;
    for (; col0 + 8 < pb.n; col0 += 16) column_pass<C, 2>(a, t, img, oy0, oy1, cache.band.data(), weights.data(), col0);
    if (col0 < pb.n) column_pass<C, 1>(a, t, img, oy0, oy1, cache.band.data(), weights.data(), col0);
    r += oy1 - oy0;
  }
}

}  // namespace

void first_layer__avx2(const FirstLayerArgs& a, int64_t row_begin, int64_t row_end) {
  switch (a.channels) {
    case 1: return first_layer<1>(a, row_begin, row_end);
    case 2: return first_layer<2>(a, row_begin, row_end);
    case 3: return first_layer<3>(a, row_begin, row_end);
    case 4: return first_layer<4>(a, row_begin, row_end);
    case 5: return first_layer<5>(a, row_begin, row_end);
    case 6: return first_layer<6>(a, row_begin, row_end);
    default: QK_REQUIRE(false, "first_layer__avx2: C must be 1..6");
  }
}

}  // namespace qk
