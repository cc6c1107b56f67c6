// gemm_common_avx2.h: what the AVX2 tiles share: the int16 widening of A rows (cached per thread), the
// tile's output stage (requant_avx2.h's arithmetic, once per tile) and the packed layout's constants.
//
// vpmaddubsw is never used: it saturates int16 (PyTorch #44939). With int16 operands each vpmaddwd
// lane is a0*b0 + a1*b1, at most 2*255*255 in magnitude: exact, and the int32 sums wrap (eq. (6)).
// Included only by files compiled with the AVX2 target flags; everything is in an unnamed namespace.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>
#include <vector>

#include "kernels/avx2/requant_avx2.h"
#include "qkern/gemm.h"
#include "qkern/scalar_common.h"

namespace qk {
namespace {

// The packed layout (docs/kernels.md): panels of kNR columns, [Kp/2][16][2] int8 (u8 B stored as b ^ 0x80),
// sign-extended to int16 as the tiles load it.
constexpr int kNR = 16;
constexpr int kKR = 2;

// B[k, n] -> panels [kp/kGroup][16][kGroup] of int8, u8 B as b - 128 (its zero point moved by pack_b): the
// 8-bit kernels' layout (kGroup 2, sign-extended as they load it) and the 7-bit kernels' (kGroup 4).
template <int kGroup>
void pack_int8_panels(PackedB& pb, const BSource& b) {
  int8_t* dst = reinterpret_cast<int8_t*>(pb.data.data());
  const int flip = b.type == DType::kUint8 ? 128 : 0;
  for (int64_t p = 0; p < pb.panels; ++p) {
    int8_t* panel = dst + p * pb.kp * kNR;
    for_each_packed_row(pb, b, [&](int64_t kk, int64_t row) {
      if (row < 0) return;  // padding rows stay 0 (the buffer is zeroed)
      int8_t* out = panel + (kk / kGroup) * kNR * kGroup + kk % kGroup;
      for (int64_t j = 0; j < kNR && p * kNR + j < pb.n; ++j)
        out[j * kGroup] = static_cast<int8_t>(load_q(b.data, b.type, row + (p * kNR + j) * b.ld_n) - flip);
    });
  }
}

// The 7-bit kernels' k-groups of four bytes ([Kp/4][16][4] panels).
constexpr int kQuad = 4;

// Calls group(q, load) for each k-group q of a tap_k-byte row, where load(row) is the row's four bytes of
// group q as one int32; the last, partial group is zero-filled and reads no byte past the row.
template <class Group>
inline void for_each_quad(int64_t tap_k, const Group& group) {
  const int64_t quads = tap_k / kQuad, tail = tap_k % kQuad;
  for (int64_t q = 0; q < quads; ++q)
    group(q, [q](const uint8_t* row) {
      int32_t v;
      std::memcpy(&v, row + q * kQuad, 4);
      return v;
    });
  if (tail)
    group(quads, [quads, tail](const uint8_t* row) {
      int32_t v = 0;
      std::memcpy(&v, row + quads * kQuad, static_cast<size_t>(tail));
      return v;
    });
}

// Widens row bytes [k0, k0+n) to int16 (zero-filled to an even count).
inline void widen(const uint8_t* src, bool is_signed, int64_t n, int16_t* dst) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m256i w = is_signed ? _mm256_cvtepi8_epi16(v) : _mm256_cvtepu8_epi16(v);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), w);
  }
  if (i + 8 <= n) {  // a narrow row (K of 8-15 bytes: a 1x1 conv of 8 channels)
    const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + i));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), is_signed ? _mm_cvtepi8_epi16(v) : _mm_cvtepu8_epi16(v));
    i += 8;
  }
  for (; i < n; ++i) dst[i] = is_signed ? static_cast<int8_t>(src[i]) : src[i];
  if (n % 2) dst[n] = 0;
}

// The tile's A as int16: row r of tap `tap` at row[tap][r], tap_kp elements (those past tap_k multiply
// B's zero rows, so their values do not matter; they are zeros or the next row's). Every row can be read
// up to the next multiple of 16 elements past tap_kp (those elements are finite and meet B's zeros).
struct WideRows {
  const int16_t* row[kMaxTaps][kMaxMR];
};

// The widened rows of the last tile this thread saw: the driver runs every panel of an m-tile back to
// back, so all but the first panel reuse the widening. Two layouts: rows that overlap or touch (a conv's
// consecutive windows, a GEMM's contiguous rows: every tap's rows evenly spaced by at most tap_k bytes)
// are widened once per tap as one span, each row a window into it (3x-4x fewer bytes for a 3x3 conv at
// stride 1, one call instead of one per row for a short GEMM row); otherwise each row is the
// concatenation of its taps, each widened to tap_kp int16 (zero-filled).
struct WidenCache {
  const uint8_t* rows[kMaxTaps][kMaxMR] = {};  // rows [0, mr) of taps [0, taps) are the widened ones
  int mr = 0;
  int taps = 0;
  int64_t tap_k = -1;
  uint64_t a_version = 0;  // new bytes may sit at old addresses: never hit across versions
  bool is_signed = false;
  std::vector<int16_t> data;
  int64_t tap_offset[kMaxTaps] = {};  // where each tap's row 0 starts in data
  int64_t stride = 0;
};

// This thread's T (a kernel's cache). The pointer is in initial-exec TLS, one %fs-relative load per tile
// (the default model of a shared library calls __tls_get_addr on each access: a tenth of a 1->8 channel
// conv's time); the object is owned by a thread_local touched only on the thread's first call, freed at
// its exit.
template <class T>
inline T& thread_cache() {
  static thread_local T* cache __attribute__((tls_model("initial-exec"))) = nullptr;
  if (__builtin_expect(cache != nullptr, 1)) return *cache;
  static thread_local std::unique_ptr<T> owner;
  owner = std::make_unique<T>();
  cache = owner.get();
  return *cache;
}

// Calls tile(std::integral_constant<int, mr>) for mr in [R, kMaxRows), else with kMaxRows: a kernel's
// row count as a template argument.
template <int R, int kMaxRows, class Tile>
inline void dispatch_rows(int mr, const Tile& tile) {
  if constexpr (R < kMaxRows) {
    if (mr == R) return tile(std::integral_constant<int, R>{});
    return dispatch_rows<R + 1, kMaxRows>(mr, tile);
  } else {
    tile(std::integral_constant<int, R>{});
  }
}

// The byte distance between consecutive rows when every tap's rows are evenly spaced by the same
// 0 < step <= tap_k (overlapping conv windows, or a GEMM's contiguous rows), else 0.
inline int64_t overlap_step(const TileArgs& t, int mr) {
  if (mr < 2) return 0;
  const int64_t step = t.a[0][1] - t.a[0][0];
  if (step <= 0 || step > t.tap_k) return 0;
  for (int tap = 0; tap < t.taps; ++tap)
    for (int r = 1; r < mr; ++r)
      if (t.a[tap][r] != t.a[tap][0] + r * step) return 0;
  return step;
}

inline void widen_into(WidenCache& cache, const TileArgs& t, int mr) {
  const int64_t step = overlap_step(t, mr);
  if (step > 0) {
    // One span per tap: rows 0..mr-1, row mr-1's padding to tap_kp and 16 more elements (zeros): a tile
    // that reads K in runs of 16 reads up to 15 past tap_kp, where B is zero.
    const int64_t bytes = (mr - 1) * step + t.tap_k, span = ((mr - 1) * step + t.tap_kp + 31) / 16 * 16;
    const size_t need = static_cast<size_t>(t.taps * span);
    if (cache.data.size() < need) cache.data.resize(need);
    for (int tap = 0; tap < t.taps; ++tap) {
      int16_t* dst = cache.data.data() + tap * span;
      widen(t.a[tap][0], t.a_signed, bytes, dst);
      std::fill(dst + bytes, dst + span, int16_t{0});
      cache.tap_offset[tap] = tap * span;
    }
    cache.stride = step;
    return;
  }
  cache.stride = (t.taps * t.tap_kp + 31) / 32 * 32;
  const size_t need = static_cast<size_t>(kMaxMR * cache.stride);
  if (cache.data.size() < need) cache.data.resize(need);
  for (int r = 0; r < mr; ++r)
    for (int tap = 0; tap < t.taps; ++tap)
      widen(t.a[tap][r], t.a_signed, t.tap_k, cache.data.data() + r * cache.stride + tap * t.tap_kp);
  for (int tap = 0; tap < t.taps; ++tap) cache.tap_offset[tap] = tap * t.tap_kp;
}

inline WideRows widened_rows(const TileArgs& t, int mr) {
  WideRows w;
  if (t.a_wide) {  // the driver's rows are already int16 (a widened conv input)
    for (int tap = 0; tap < t.taps; ++tap)
      for (int r = 0; r < mr; ++r) w.row[tap][r] = reinterpret_cast<const int16_t*>(t.a[tap][r]);
    return w;
  }
  WidenCache& cache = thread_cache<WidenCache>();
  bool hit = cache.a_version == t.a_version && cache.taps == t.taps && cache.tap_k == t.tap_k &&
             cache.is_signed == t.a_signed && mr <= cache.mr;
  for (int tap = 0; tap < t.taps && hit; ++tap)
    for (int r = 0; r < mr && hit; ++r) hit = cache.rows[tap][r] == t.a[tap][r];
  if (!hit) {
    widen_into(cache, t, mr);
    for (int tap = 0; tap < t.taps; ++tap)
      for (int r = 0; r < mr; ++r) cache.rows[tap][r] = t.a[tap][r];
    cache.mr = mr;
    cache.taps = t.taps;
    cache.tap_k = t.tap_k;
    cache.a_version = t.a_version;
    cache.is_signed = t.a_signed;
  }
  for (int tap = 0; tap < t.taps; ++tap)
    for (int r = 0; r < mr; ++r) w.row[tap][r] = cache.data.data() + cache.tap_offset[tap] + r * cache.stride;
  return w;
}

// Copies bytes [begin, end) of a row buffer (0 <= begin <= end <= kBytes, kBytes a power of two) to dst
// with constant-size moves: a partial row's store without a library call (GCC turns a byte loop back into
// memcpy). The stated bounds let the compiler see that no move reads past the buffer.
template <int kBytes>
inline void copy_row_part(void* dst, const unsigned char (&buf)[kBytes], int64_t begin, int64_t end) {
  static_assert((kBytes & (kBytes - 1)) == 0, "kBytes must be a power of two");
  if (begin < 0 || begin > end || end > kBytes) __builtin_unreachable();
  auto* d = static_cast<unsigned char*>(dst);
  for (int size = kBytes; size >= 1; size /= 2)
    if (end - begin >= size) {
      std::memcpy(d, buf + begin, static_cast<size_t>(size));
      d += size;
      begin += size;
    }
}

// Row r's output staged in buf (the tile's nc columns at esize bytes each): columns before split go to
// c[r], the rest to c2[r] (the depth-to-space store of conv_transpose2x2).
template <int kBytes>
inline void put_staged(const TileArgs& t, int r, const unsigned char (&buf)[kBytes], int split, int64_t esize) {
  if (split > 0) copy_row_part(t.c[r], buf, 0, split * esize);
  if (split < t.nc) copy_row_part(t.c2[r], buf, split * esize, t.nc * esize);
}

// Row r's 8*NV 32-bit results (int32, or float32 bits). whole: all columns go to c[r].
template <int NV>
inline void put_words(const TileArgs& t, int r, const __m256i* v, bool whole, int split) {
  if (whole) {
    for (int i = 0; i < NV; ++i) _mm256_storeu_si256(static_cast<__m256i*>(t.c[r]) + i, v[i]);
    return;
  }
  alignas(32) unsigned char buf[NV * 32];
  for (int i = 0; i < NV; ++i) _mm256_store_si256(reinterpret_cast<__m256i*>(buf) + i, v[i]);
  put_staged(t, r, buf, split, 4);
}

// 8*NV int32 results, each within the 8-bit output type, as bytes in column order (the low 8*NV bytes): the
// saturating packs are exact.
template <int NV, bool kSigned>
inline __m128i pack_bytes(const __m256i* q) {
  static_assert(NV == 1 || NV == 2, "one or two vectors a row");
  if constexpr (NV == 1) {
    const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q[0]), _mm256_extracti128_si256(q[0], 1));
    return kSigned ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w);
  } else {
    // packs works per 128-bit lane: the 64-bit quarters are put back in column order after each step.
    const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xD8);
    const __m256i p = kSigned ? _mm256_packs_epi16(w, w) : _mm256_packus_epi16(w, w);
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(p, 0x08));
  }
}

// The 8*NV bytes of pack_bytes at dst.
template <int NV>
inline void store_bytes(void* dst, __m128i b) {
  if constexpr (NV == 1) _mm_storel_epi64(static_cast<__m128i*>(dst), b);
  else _mm_storeu_si128(static_cast<__m128i*>(dst), b);
}

// Row r's 8*NV int32 results, each within the 8-bit output type.
template <int NV, bool kSigned>
inline void put_bytes(const TileArgs& t, int r, const __m256i* q, bool whole, int split) {
  const __m128i b = pack_bytes<NV, kSigned>(q);
  if (whole) return store_bytes<NV>(t.c[r], b);
  alignas(16) unsigned char buf[16];
  _mm_store_si128(reinterpret_cast<__m128i*>(buf), b);
  put_staged(t, r, buf, split, 1);
}

// Eqs. (14)-(16): the tile's rows requantized to 8 bits with the stage's parameters loaded once per tile.
template <int NV, RequantMode M, bool kSigned>
void store_requantized(const TileArgs& t, int mr, const __m256i (*acc)[NV], bool whole, int split) {
  const OutputStage& os = *t.stage;
  const StageBounds bounds(os);
  StageLanes lanes[NV];
  for (int i = 0; i < NV; ++i) lanes[i] = load_lanes<M>(os, t.col0 + 8 * i);
  for (int r = 0; r < mr; ++r) {
    __m256i q[NV];
    for (int i = 0; i < NV; ++i) q[i] = requant8<M>(acc[r][i], lanes[i], bounds);
    put_bytes<NV, kSigned>(t, r, q, whole, split);
  }
}

template <int NV, RequantMode M>
void store_requantized(const TileArgs& t, int mr, const __m256i (*acc)[NV], bool whole, int split) {
  if (t.stage->out_dtype == DType::kUint8) store_requantized<NV, M, false>(t, mr, acc, whole, split);
  else store_requantized<NV, M, true>(t, mr, acc, whole, split);
}

// Eq. (20) when each row has its own zero point, then eq. (19): f32(acc) * f32(s_a * s_w) + bias, each a
// separate float32 rounding (mul, mul, add: no FMA).
template <int NV>
void store_float(const TileArgs& t, int mr, const __m256i (*acc)[NV], bool whole, int split) {
  const OutputStage& os = *t.stage;
  __m256 fm[NV], fb[NV];
  __m256i zc[NV];
  for (int i = 0; i < NV; ++i) {
    fm[i] = _mm256_loadu_ps(os.fmultiplier + t.col0 + 8 * i);
    fb[i] = _mm256_loadu_ps(os.fbias + t.col0 + 8 * i);
    zc[i] = t.row_zp ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(os.zp_colsum + t.col0 + 8 * i))
                     : _mm256_setzero_si256();
  }
  for (int r = 0; r < mr; ++r) {
    const __m256 sa = _mm256_set1_ps(t.a_scale[r]);
    __m256i y[NV];
    for (int i = 0; i < NV; ++i) {
      __m256i v = acc[r][i];
      if (t.row_zp) v = _mm256_sub_epi32(v, _mm256_mullo_epi32(_mm256_set1_epi32(t.a_zp[r]), zc[i]));
      const __m256 f = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(sa, fm[i])), fb[i]);
      y[i] = _mm256_castps_si256(f);
    }
    put_words<NV>(t, r, y, whole, split);
  }
}

// The tile's mr rows of 8*NV accumulators (starting accumulator included) through the output stage:
// eq. (7)'s row-sum term for a weight zero point, then the stage's mode, once per tile.
template <int NV>
void store_tile(const TileArgs& t, int mr, __m256i (*acc)[NV]) {
  const int split = static_cast<int>(std::min<int64_t>(std::max<int64_t>(t.split - t.col0, 0), t.nc));
  const bool whole = t.nc == 8 * NV && split >= 8 * NV;
  if (t.zb) {
    __m256i zb[NV];
    for (int i = 0; i < NV; ++i) zb[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(t.zb) + i);
    for (int r = 0; r < mr; ++r) {
      const __m256i rs = _mm256_set1_epi32(t.rowsum[r]);
      for (int i = 0; i < NV; ++i) acc[r][i] = _mm256_sub_epi32(acc[r][i], _mm256_mullo_epi32(rs, zb[i]));
    }
  }
  switch (t.stage->mode) {
    case RequantMode::kRaw:
      for (int r = 0; r < mr; ++r) put_words<NV>(t, r, acc[r], whole, split);
      return;
    case RequantMode::kFloat: return store_float<NV>(t, mr, acc, whole, split);
    case RequantMode::kFp32: return store_requantized<NV, RequantMode::kFp32>(t, mr, acc, whole, split);
    case RequantMode::kGemmlowp: return store_requantized<NV, RequantMode::kGemmlowp>(t, mr, acc, whole, split);
    case RequantMode::kSingle: return store_requantized<NV, RequantMode::kSingle>(t, mr, acc, whole, split);
  }
}

}  // namespace
}  // namespace qk
