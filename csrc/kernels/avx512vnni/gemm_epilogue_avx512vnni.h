// gemm_epilogue_avx512vnni.h: the VNNI tiles' output stage: eq. (7)'s row-sum term, requantization or the
// float32 form, and the stores (masked tails, the split store of conv_transpose2x2), plus the packed layout's
// constants that the tiles and the packer share.
#pragma once

#include <immintrin.h>

#include <cstdint>

#include "kernels/avx512vnni/requant_avx512.h"
#include "qkern/gemm.h"

namespace qk {
namespace {

// The packed layout (docs/kernels.md): panels of kNR columns, k-groups of kKR bytes.
constexpr int kNR = 64;
constexpr int kKR = 4;

// Requantizes 16 accumulators of columns [col, col+16): int32 lanes within [qmin, qmax], zero point added.
QK_INLINE __m512i requant16(__m512i v, const OutputStage& os, int64_t col) {
  const int32_t lo = os.qmin - os.zero_point, hi = os.qmax - os.zero_point;
  __m512i r;
  if (os.mode == RequantMode::kFp32) {
    r = fp32_requant_lanes(v, _mm512_loadu_ps(os.fmultiplier + col), _mm512_set1_ps(static_cast<float>(lo)),
                           _mm512_set1_ps(static_cast<float>(hi)));
  } else if (os.wide) {  // "single" always, "gemmlowp" without left shifts (pack_b builds the table)
    const int64_t* w = os.wide + col / 16 * kWideRows * 8;
    if (os.mode == RequantMode::kSingle) {
      r = wide_requant<RequantMode::kSingle>(v, w, _mm512_set1_epi64(lo), _mm512_set1_epi64(hi));
    } else {
      r = wide_requant<RequantMode::kGemmlowp>(v, w, v, v);  // lo, hi: unused by gemmlowp
      r = _mm512_min_epi32(_mm512_max_epi32(r, _mm512_set1_epi32(lo)), _mm512_set1_epi32(hi));
    }
  } else {  // "gemmlowp" with some left shift
    r = gemmlowp_requant_lanes(v, _mm512_loadu_si512(os.multiplier + col), _mm512_loadu_si512(os.shift + col),
                               _mm512_set1_epi32(lo), _mm512_set1_epi32(hi));
  }
  return _mm512_add_epi32(r, _mm512_set1_epi32(os.zero_point));
}

// Requantizes 16 accumulators and stores the first `lanes` of them (int32, or narrowed to 8 bits: the
// values are within [qmin, qmax], so truncation is exact). The narrowing is the register form of
// vpmovdb plus a masked byte store; vpmovdb to memory is slow on Zen 4.
QK_INLINE void store16(__m512i v, const OutputStage& os, int64_t col, void* dst, __mmask16 lanes) {
  if (os.mode == RequantMode::kRaw || os.mode == RequantMode::kFloat) {  // kFloat: float32 bits (store_row)
    _mm512_mask_storeu_epi32(dst, lanes, v);
    return;
  }
  _mm_mask_storeu_epi8(dst, lanes, _mm512_cvtepi32_epi8(requant16(v, os, col)));
}

// Four requantized vectors (columns col..col+63) packed to 64 bytes in column order and stored under
// `bytes` (one bit per column).
QK_INLINE void store64(const __m512i v[4], const OutputStage& os, int64_t col, void* dst, __mmask64 bytes) {
  const __m512i w01 = _mm512_packs_epi32(requant16(v[0], os, col), requant16(v[1], os, col + 16));
  const __m512i w23 = _mm512_packs_epi32(requant16(v[2], os, col + 32), requant16(v[3], os, col + 48));
  const __m512i b = os.out_dtype == DType::kUint8 ? _mm512_packus_epi16(w01, w23) : _mm512_packs_epi16(w01, w23);
  // The packs work per 128-bit lane: dword 4*L + s holds columns 16*s + 4*L .. +3. Put them in order.
  const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
  _mm512_mask_storeu_epi8(dst, bytes, _mm512_permutexvar_epi32(order, b));
}

QK_INLINE __mmask16 lane_mask(int nc, int j) {
  const int lanes = nc - 16 * j;
  return lanes >= 16 ? static_cast<__mmask16>(0xFFFF) : lanes <= 0 ? 0 : static_cast<__mmask16>((1u << lanes) - 1);
}

template <int NV>
inline void store_row(const TileArgs& t, int r, __m512i v0, __m512i v1, __m512i v2, __m512i v3) {
  const OutputStage& os = *t.stage;
  const int64_t esize = os.out_dtype == DType::kInt32 ? 4 : 1;
  const uintptr_t dst = reinterpret_cast<uintptr_t>(t.c[r]);
  __m512i v[4] = {v0, v1, v2, v3};
  if (t.zb) {
    for (int j = 0; j < NV; ++j)
      v[j] = _mm512_sub_epi32(v[j], _mm512_mullo_epi32(_mm512_set1_epi32(t.rowsum[r]), _mm512_loadu_si512(t.zb + 16 * j)));
  }
  if (os.mode == RequantMode::kFloat) {
    // Eq. (20) when each row has its own zero point, then eq. (19): f32(acc) * f32(s_a * s_w) + bias, three
    // separate float32 roundings (no FMA); the float32 bits are then stored like raw int32 lanes.
    const __m512i za = _mm512_set1_epi32(t.row_zp ? t.a_zp[r] : 0);
    const __m512 sa = _mm512_set1_ps(t.a_scale[r]);
    for (int j = 0; j < NV; ++j) {
      const int64_t col = t.col0 + 16 * j;
      __m512i x = v[j];
      if (t.row_zp) x = _mm512_sub_epi32(x, _mm512_mullo_epi32(za, _mm512_loadu_si512(os.zp_colsum + col)));
      const __m512 s = _mm512_mul_ps(sa, _mm512_loadu_ps(os.fmultiplier + col));
      const __m512 f = _mm512_cvt_roundepi32_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      v[j] = _mm512_castps_si512(_mm512_add_ps(_mm512_mul_ps(f, s), _mm512_loadu_ps(os.fbias + col)));
    }
  }
  if (NV == 4 && os.mode != RequantMode::kRaw && os.mode != RequantMode::kFloat && t.col0 + 64 <= t.split) {
    const __mmask64 bytes = t.nc >= 64 ? ~__mmask64{0} : (__mmask64{1} << t.nc) - 1;
    store64(v, os, t.col0, t.c[r], bytes);
    return;
  }
  for (int j = 0; j < NV; ++j) {
    const __m512i x = v[j];
    const int64_t col = t.col0 + 16 * j;
    const __mmask16 lanes = lane_mask(t.nc, j);
    if (col + 16 <= t.split) {
      store16(x, os, col, reinterpret_cast<void*>(dst + 16 * j * esize), lanes);
      continue;
    }
    // Depth-to-space: lanes at or past `split` belong to the second output run. A masked store never
    // touches masked-off lanes, so the base may point before the run (integer arithmetic, not pointers).
    const int64_t first = col < t.split ? t.split - col : 0;
    const __mmask16 low = static_cast<__mmask16>(lanes & ((1u << first) - 1));
    const uintptr_t dst2 = reinterpret_cast<uintptr_t>(t.c2[r]) + static_cast<uintptr_t>((col - t.split) * esize);
    if (low) store16(x, os, col, reinterpret_cast<void*>(dst + 16 * j * esize), low);
    store16(x, os, col, reinterpret_cast<void*>(dst2), static_cast<__mmask16>(lanes & ~low));
  }
}

// The output stage's constants for one panel of one tile, read once before its rows are stored: the
// stores go through void pointers that could alias the OutputStage, so read per row, every field was
// reloaded and every broadcast redone after each row's store (a fifth of a K = 128 tile's epilogue).
struct FastStage {
  const float* fm;      // fp32 multipliers from the panel's first column
  const int64_t* wide;  // the WideRow block of the panel's first 16 columns
  __m512 hi_f;
  __m512i hi64, lo64, zp16, qmin8, qmax8;
  bool to_u8, clamp_low, clamp_high;
};

QK_INLINE FastStage fast_stage(const OutputStage& os, int64_t col0) {
  FastStage f;
  const int32_t hi = os.qmax - os.zero_point;
  f.fm = os.fmultiplier + col0;
  f.wide = os.wide ? os.wide + col0 / 16 * kWideRows * 8 : nullptr;
  f.hi_f = _mm512_set1_ps(static_cast<float>(hi));
  f.hi64 = _mm512_set1_epi64(hi);
  f.lo64 = _mm512_set1_epi64(kInt32Min);
  f.zp16 = _mm512_set1_epi16(static_cast<int16_t>(os.zero_point));
  f.qmin8 = _mm512_set1_epi8(static_cast<char>(os.qmin));
  f.qmax8 = _mm512_set1_epi8(static_cast<char>(os.qmax));
  f.to_u8 = os.out_dtype == DType::kUint8;
  f.clamp_low = os.qmin > (f.to_u8 ? 0 : -128);
  f.clamp_high = os.qmax < (f.to_u8 ? 255 : 127);
  return f;
}

// Requantized vector j of the panel (columns 16j..16j+15) minus the zero point, as int32 lanes that the
// saturating packs narrow correctly: "fp32" clamped above in float unless kInRange (the product cannot
// reach 2^31), "single" clamped to [INT32_MIN, hi] in int64 (it may exceed int32), "gemmlowp" as it is
// (it fits int32).
template <RequantMode kMode, bool kInRange = false>
QK_INLINE __m512i requant_upper(__m512i v, const FastStage& f, int j) {
  if constexpr (kMode == RequantMode::kFp32) {
    const __m512 x = _mm512_cvt_roundepi32_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 p = _mm512_mul_ps(x, _mm512_loadu_ps(f.fm + 16 * j));
    return _mm512_cvt_roundps_epi32(kInRange ? p : _mm512_min_ps(p, f.hi_f),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  } else {
    return wide_requant<kMode>(v, f.wide + j * kWideRows * 8, f.lo64, f.hi64);
  }
}

// One tile row of 16*NV full columns (NV = 4 or 2) through the output stage, straight from the
// accumulators: the common case (full panel, no split store), inlined into the tile after
// its k-loop so the accumulators need no trip through memory. Raw int32 is stored as it is. The other
// modes produce int32 lanes that cannot have wrapped: fp32 clamped to qmax - zp in float unless every
// |multiplier| < 1 (kInRange: float(acc) <= 2^31 times m <= 1 - 2^-24 rounds to at most 2^31 - 128);
// single clamped in int64; gemmlowp fits int32 (eqs. (17)/(12) on 64-bit lanes, requant.h WideRow). The
// saturating packs then clamp to the type (a float conversion below the int32 range gives INT32_MIN,
// which saturates low), and one byte max / min applies a qmin / qmax inside the type's range. The zero
// point is added in int16 after the first pack, where it cannot overflow. The fp32 bounds are integers,
// so clamping before or after the round-half-even conversion is the same (tests:
// test_epilogue_extremes_every_isa, test_epilogue_fp32_products_beyond_int32_every_isa).
template <int NV, RequantMode kMode, bool kInRange = false>
QK_INLINE void store_row_fast(void* dst, const FastStage& f, __m512i v0, __m512i v1, __m512i v2, __m512i v3) {
  if constexpr (kMode == RequantMode::kRaw) {
    const __m512i v[4] = {v0, v1, v2, v3};
    for (int j = 0; j < NV; ++j) _mm512_storeu_si512(static_cast<int32_t*>(dst) + 16 * j, v[j]);
    return;
  } else {
    const __m512i w01 = _mm512_adds_epi16(
        _mm512_packs_epi32(requant_upper<kMode, kInRange>(v0, f, 0), requant_upper<kMode, kInRange>(v1, f, 1)), f.zp16);
    const __m512i w23 =
        NV == 4 ? _mm512_adds_epi16(
                      _mm512_packs_epi32(requant_upper<kMode, kInRange>(v2, f, 2), requant_upper<kMode, kInRange>(v3, f, 3)), f.zp16)
                : w01;
    __m512i b = f.to_u8 ? _mm512_packus_epi16(w01, w23) : _mm512_packs_epi16(w01, w23);
    if (f.clamp_low) b = f.to_u8 ? _mm512_max_epu8(b, f.qmin8) : _mm512_max_epi8(b, f.qmin8);
    if (f.clamp_high) b = f.to_u8 ? _mm512_min_epu8(b, f.qmax8) : _mm512_min_epi8(b, f.qmax8);
    // After the packs, dword 4*L + s holds columns 16*s + 4*L .. +3: put them in column order.
    const __m512i order = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    b = _mm512_permutexvar_epi32(order, b);
    if constexpr (NV == 4) _mm512_storeu_si512(dst, b);
    else _mm256_storeu_si256(static_cast<__m256i*>(dst), _mm512_castsi512_si256(b));  // the 12 x 32 tile
  }
}

// The tile's output stage for every other case (partial panels, the depth-to-space split,
// gemmlowp with a left shift), all rows in one call: the accumulators come through a stack buffer (six calls
// with four zmm arguments each spilled them anyway).
template <int NV>
__attribute__((noinline)) void store_tile(const TileArgs& t, const int32_t* acc, int mr) {
  for (int r = 0; r < mr; ++r) {
    const int32_t* row = acc + r * kNR;
    const __m512i v0 = _mm512_load_si512(row);
    const __m512i v1 = NV > 1 ? _mm512_load_si512(row + 16) : v0;
    const __m512i v2 = NV > 2 ? _mm512_load_si512(row + 32) : v0;
    const __m512i v3 = NV > 3 ? _mm512_load_si512(row + 48) : v0;
    store_row<NV>(t, r, v0, v1, v2, v3);
  }
}

}  // namespace
}  // namespace qk
