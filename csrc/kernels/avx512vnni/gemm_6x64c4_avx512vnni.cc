// gemm_6x64c4_avx512vnni.cc: 6x64 VNNI tile (24 zmm accumulators, vpdpbusd), B packing, fused output stage.
//
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512vnni only; reached only when CPUID says so.
// vpdpbusd (not the saturating vpdpbusds) wraps like the int32 reference (docs/quantization.md eq. (6)).
#include <immintrin.h>

#include <cstring>

#include "qkern/gemm.h"

namespace qk {

namespace {

// The output stage's helpers must inline into store_row: as calls they cost more than a first layer's
// arithmetic (GCC stopped inlining requant16 once tile<> grew).
#define QK_INLINE inline __attribute__((always_inline))

constexpr int kNR = 64;
constexpr int kKR = 4;

// Four A bytes broadcast to every lane, straight from memory (vpbroadcastd m32: a load-port uop, no
// ALU work); s8 A is flipped to u8 with one vector xor (docs/kernels.md).
template <bool kFlip>
QK_INLINE __m512i bcast_quad(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  const __m512i r = _mm512_set1_epi32(v);
  return kFlip ? _mm512_xor_si512(r, _mm512_set1_epi32(static_cast<int32_t>(0x80808080u))) : r;
}

// The last 1-3 bytes of a tap, zero-filled to four, with byte loads: a variable-length memcpy/memset is
// a library call, 36 of them per tile on a first layer.
QK_INLINE uint32_t tail_quad(const uint8_t* p, int64_t bytes) {
  uint32_t v = p[0];
  if (bytes > 1) v |= static_cast<uint32_t>(p[1]) << 8;
  if (bytes > 2) v |= static_cast<uint32_t>(p[2]) << 16;
  return v;
}

// Every lane: GCC 12 reports the unmasked intrinsics' undefined pass-through operand as uninitialized once
// they are inlined into the tile (PR 105593); the zero-masked forms with every lane selected are the same
// instructions.
constexpr __mmask8 kAll8 = 0xFF;
constexpr __mmask16 kAll16 = 0xFFFF;

// 64-bit signed products of the even and odd int32 lanes.
QK_INLINE __m512i odd_lanes(__m512i x) { return _mm512_maskz_srli_epi64(kAll8, x, 32); }
QK_INLINE __m512i merge_even_odd(__m512i even, __m512i odd) {
  return _mm512_mask_blend_epi32(0xAAAA, even, _mm512_maskz_slli_epi64(kAll8, odd, 32));
}

// Eq. (9) for a non-negative multiplier: floor((x*M + 2^30) / 2^31), per int32 lane.
QK_INLINE __m512i srdhm(__m512i x, __m512i m) {
  const __m512i half = _mm512_set1_epi64(int64_t{1} << 30);
  const __m512i e = _mm512_srai_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, m), half), 31);
  const __m512i o = _mm512_srai_epi64(_mm512_add_epi64(_mm512_mul_epi32(odd_lanes(x), odd_lanes(m)), half), 31);
  return merge_even_odd(e, o);
}

// Eq. (10) with a per-lane exponent in [0, 31].
QK_INLINE __m512i rounding_divide_by_pot(__m512i x, __m512i e) {
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, e), one);
  const __m512i rem = _mm512_and_si512(x, mask);
  __m512i thr = _mm512_srai_epi32(mask, 1);
  thr = _mm512_mask_add_epi32(thr, _mm512_cmplt_epi32_mask(x, _mm512_setzero_si512()), thr, one);
  const __m512i q = _mm512_srav_epi32(x, e);
  return _mm512_mask_add_epi32(q, _mm512_cmpgt_epi32_mask(rem, thr), q, one);
}

// Eq. (11) with a per-lane exponent in [0, 31].
QK_INLINE __m512i saturating_shift_left(__m512i x, __m512i e) {
  const __m512i shifted = _mm512_sllv_epi32(x, e);
  const __mmask16 overflow = _mm512_cmpneq_epi32_mask(_mm512_srav_epi32(shifted, e), x);
  const __m512i sat = _mm512_mask_blend_epi32(_mm512_cmplt_epi32_mask(x, _mm512_setzero_si512()),
                                              _mm512_set1_epi32(kInt32Max), _mm512_set1_epi32(kInt32Min));
  return _mm512_mask_blend_epi32(overflow, shifted, sat);
}

// The fixed-point modes in their one-shift form (requant.h WideRow, eqs. (12) and (17)) on the even and
// the odd int32 lanes as int64, merged back to int32 lanes. `w` is the block of the 16 columns. A "single"
// result may exceed int32, so it is clamped to [lo, hi] (int64 lanes) first; a "gemmlowp" one always fits.
template <RequantMode kMode>
QK_INLINE __m512i wide_half(__m512i x, const int64_t* w, __m512i lo, __m512i hi) {
  const __m512i p = _mm512_maskz_mul_epi32(kAll8, x, _mm512_loadu_si512(w + kWideMultiplier * 8));
  __m512i r = _mm512_maskz_add_epi64(kAll8, p, _mm512_loadu_si512(w + kWideAddend * 8));
  if constexpr (kMode == RequantMode::kGemmlowp) {
    const __mmask8 neg = _mm512_cmplt_epi64_mask(p, _mm512_set1_epi64(-(int64_t{1} << 30)));
    r = _mm512_mask_sub_epi64(r, neg, r, _mm512_loadu_si512(w + kWideCorrection * 8));
  }
  r = _mm512_maskz_srav_epi64(kAll8, r, _mm512_loadu_si512(w + kWideShift * 8));
  if constexpr (kMode == RequantMode::kSingle)
    r = _mm512_maskz_min_epi64(kAll8, _mm512_maskz_max_epi64(kAll8, r, lo), hi);
  return r;
}
template <RequantMode kMode>
QK_INLINE __m512i wide_requant(__m512i v, const int64_t* w, __m512i lo, __m512i hi) {
  return merge_even_odd(wide_half<kMode>(v, w, lo, hi), wide_half<kMode>(odd_lanes(v), w + 8, lo, hi));
}

// Requantizes 16 accumulators of columns [col, col+16): int32 lanes within [qmin, qmax], zero point added.
QK_INLINE __m512i requant16(__m512i v, const OutputStage& os, int64_t col) {
  const int32_t lo = os.qmin - os.zero_point, hi = os.qmax - os.zero_point;
  __m512i r;
  if (os.mode == RequantMode::kFp32) {
    // Eq. (16): float32(v) (RNE), one float32 multiply, clamp in float (bounds are integers, so it
    // commutes with rounding), round half-even with an explicit rounding mode.
    const __m512 f = _mm512_cvt_roundepi32_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 p = _mm512_mul_ps(f, _mm512_loadu_ps(os.fmultiplier + col));
    p = _mm512_min_ps(_mm512_max_ps(p, _mm512_set1_ps(static_cast<float>(lo))), _mm512_set1_ps(static_cast<float>(hi)));
    r = _mm512_cvt_roundps_epi32(p, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  } else if (os.wide) {  // "single" always, "gemmlowp" without left shifts (pack_b builds the table)
    const int64_t* w = os.wide + col / 16 * kWideRows * 8;
    if (os.mode == RequantMode::kSingle) {
      r = wide_requant<RequantMode::kSingle>(v, w, _mm512_set1_epi64(lo), _mm512_set1_epi64(hi));
    } else {
      r = wide_requant<RequantMode::kGemmlowp>(v, w, v, v);  // lo, hi: unused by gemmlowp
      r = _mm512_min_epi32(_mm512_max_epi32(r, _mm512_set1_epi32(lo)), _mm512_set1_epi32(hi));
    }
  } else {  // "gemmlowp" with some left shift: eqs. (9)-(11), (13)
    const __m512i m = _mm512_loadu_si512(os.multiplier + col);
    const __m512i s = _mm512_loadu_si512(os.shift + col);
    const __m512i zero = _mm512_setzero_si512();
    const __m512i left = _mm512_max_epi32(s, zero), right = _mm512_max_epi32(_mm512_sub_epi32(zero, s), zero);
    r = rounding_divide_by_pot(srdhm(saturating_shift_left(v, left), m), right);
    r = _mm512_min_epi32(_mm512_max_epi32(r, _mm512_set1_epi32(lo)), _mm512_set1_epi32(hi));
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

#define QK_ROW_DOT(r)                                        \
  if constexpr (MR > r) {                                    \
    const __m512i av = A_LOAD(r);                            \
    c##r##0 = _mm512_dpbusd_epi32(c##r##0, av, b0);          \
    if constexpr (NV > 1) c##r##1 = _mm512_dpbusd_epi32(c##r##1, av, b1); \
    if constexpr (NV > 2) c##r##2 = _mm512_dpbusd_epi32(c##r##2, av, b2); \
    if constexpr (NV > 3) c##r##3 = _mm512_dpbusd_epi32(c##r##3, av, b3); \
  }

// The NV 16-column vectors of one k-step of the packed panel (unused ones alias the first).
#define QK_LOAD_B                                                  \
  const __m512i b0 = _mm512_load_si512(bp);                        \
  const __m512i b1 = NV > 1 ? _mm512_load_si512(bp + 64) : b0;     \
  const __m512i b2 = NV > 2 ? _mm512_load_si512(bp + 128) : b0;    \
  const __m512i b3 = NV > 3 ? _mm512_load_si512(bp + 192) : b0;

#define QK_ALL_ROWS                                                                          \
  QK_ROW_DOT(0) QK_ROW_DOT(1) QK_ROW_DOT(2) QK_ROW_DOT(3) QK_ROW_DOT(4) QK_ROW_DOT(5) QK_ROW_DOT(6) \
  QK_ROW_DOT(7) QK_ROW_DOT(8) QK_ROW_DOT(9) QK_ROW_DOT(10) QK_ROW_DOT(11)
// Applies M to every row index of the tallest tile (rows >= MR compile to nothing).
#define QK_EACH_ROW(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11)

// The microkernel: MR rows x (16*NV) columns, whole K in registers (named accumulators: GCC keeps
// them in zmm registers, an array of them it spilled; docs/speed-design.md S3).
// MR x 16*NV with MR * NV <= 24: 6 x 64 (NV = 4) for most outputs, 12 x 32 (NV <= 2) for N <= 32, where
// a 6-row tile would leave half the accumulators idle and pay its per-tile costs twice as often.
template <int MR, int NV, bool kFlip>
void tile(const TileArgs& t) {
  static_assert(MR * NV <= 24, "24 accumulators at most: the rest of the 32 zmm hold B and A");
  const __m512i i0 = _mm512_loadu_si512(t.bias_eff), i1 = _mm512_loadu_si512(t.bias_eff + 16),
                i2 = _mm512_loadu_si512(t.bias_eff + 32), i3 = _mm512_loadu_si512(t.bias_eff + 48);
#define QK_INIT(r) __m512i c##r##0 = i0, c##r##1 = i1, c##r##2 = i2, c##r##3 = i3;
  QK_EACH_ROW(QK_INIT)
#undef QK_INIT
  const int64_t quads = t.tap_k / kKR, tail = t.tap_k % kKR;
  alignas(16) uint8_t tails[kMaxMR][kKR];
  for (int tap = 0; tap < t.taps; ++tap) {
    const uint8_t* bp = t.b + t.tap_b[tap] * t.tap_kp * kNR;
#define QK_ROW_PTR(r) const uint8_t* a##r = t.a[tap][r];
    QK_EACH_ROW(QK_ROW_PTR)
#undef QK_ROW_PTR
#define A_LOAD(r) bcast_quad<kFlip>(a##r)
#define QK_ROW_STEP(r) \
  if constexpr (MR > r) a##r += kKR;
    // The loop runs on bp alone: with a separate step counter the 12-row tile ran out of general
    // registers and kept the counter and bp on the stack.
    const uint8_t* b_end = bp + quads * kNR * kKR;
    bool tail_done = tail == 0;
    for (;;) {
      for (; bp != b_end; bp += kNR * kKR) {
        _mm_prefetch(reinterpret_cast<const char*>(bp) + 1024, _MM_HINT_T0);
        QK_LOAD_B
        QK_ALL_ROWS
        QK_EACH_ROW(QK_ROW_STEP)
      }
      if (tail_done) break;
      // The tap's last tap_k % 4 bytes as one more pass of the same loop body, read from zero-filled
      // copies (B's padding rows are 0). A separate tail block made GCC spill all 24 accumulators
      // around it, which cost more than a first layer's whole k-loop.
#define QK_ROW_TAIL(r)                            \
  if constexpr (MR > r) {                         \
    const uint32_t quad = tail_quad(a##r, tail);  \
    std::memcpy(tails[r], &quad, kKR);            \
    a##r = tails[r];                              \
  }
      QK_EACH_ROW(QK_ROW_TAIL)
#undef QK_ROW_TAIL
      b_end += kNR * kKR;
      tail_done = true;
    }
#undef QK_ROW_STEP
#undef A_LOAD
  }
  const OutputStage& os = *t.stage;
  const bool fast_mode = os.mode == RequantMode::kRaw || os.mode == RequantMode::kFp32 || os.wide;
  if ((NV == 4 || NV == 2) && fast_mode && t.nc == 16 * NV && t.col0 + 16 * NV <= t.split) {
    if (t.zb) {  // eq. (7)'s row-sum term: acc -= rowsum[r] * zb'[j]
      const __m512i z0 = _mm512_loadu_si512(t.zb), z1 = _mm512_loadu_si512(t.zb + 16);
      const __m512i z2 = NV == 4 ? _mm512_loadu_si512(t.zb + 32) : z0, z3 = NV == 4 ? _mm512_loadu_si512(t.zb + 48) : z0;
#define QK_ROW_ZB(r)                                                                      \
  if constexpr (MR > r) {                                                                 \
    const __m512i rs = _mm512_set1_epi32(t.rowsum[r]);                                    \
    c##r##0 = _mm512_sub_epi32(c##r##0, _mm512_maskz_mullo_epi32(kAll16, rs, z0));        \
    c##r##1 = _mm512_sub_epi32(c##r##1, _mm512_maskz_mullo_epi32(kAll16, rs, z1));        \
    if constexpr (NV == 4) c##r##2 = _mm512_sub_epi32(c##r##2, _mm512_maskz_mullo_epi32(kAll16, rs, z2)); \
    if constexpr (NV == 4) c##r##3 = _mm512_sub_epi32(c##r##3, _mm512_maskz_mullo_epi32(kAll16, rs, z3)); \
  }
      QK_EACH_ROW(QK_ROW_ZB)
#undef QK_ROW_ZB
    }
    const FastStage fs = fast_stage(os, t.col0);
#define QK_ROW_OUT(r, ...) \
  if constexpr (MR > r) store_row_fast<NV, __VA_ARGS__>(t.c[r], fs, c##r##0, c##r##1, c##r##2, c##r##3);
#define QK_ROW_RAW(r) QK_ROW_OUT(r, RequantMode::kRaw)
#define QK_ROW_FP32(r) QK_ROW_OUT(r, RequantMode::kFp32)
#define QK_ROW_FP32_IN_RANGE(r) QK_ROW_OUT(r, RequantMode::kFp32, true)
#define QK_ROW_GEMMLOWP(r) QK_ROW_OUT(r, RequantMode::kGemmlowp)
#define QK_ROW_SINGLE(r) QK_ROW_OUT(r, RequantMode::kSingle)
    switch (os.mode) {
      case RequantMode::kRaw: QK_EACH_ROW(QK_ROW_RAW) break;
      case RequantMode::kFp32:
        if (os.fp32_in_range) {
          QK_EACH_ROW(QK_ROW_FP32_IN_RANGE)
        } else {
          QK_EACH_ROW(QK_ROW_FP32)
        }
        break;
      case RequantMode::kGemmlowp: QK_EACH_ROW(QK_ROW_GEMMLOWP) break;
      case RequantMode::kSingle: QK_EACH_ROW(QK_ROW_SINGLE) break;
      case RequantMode::kFloat: break;  // never fast_mode: store_tile below
    }
#undef QK_ROW_SINGLE
#undef QK_ROW_GEMMLOWP
#undef QK_ROW_FP32_IN_RANGE
#undef QK_ROW_FP32
#undef QK_ROW_RAW
#undef QK_ROW_OUT
    return;
  }
  alignas(64) int32_t acc[MR][kNR];
#define QK_SAVE(r)                                                \
  if constexpr (MR > r) {                                         \
    _mm512_store_si512(acc[r], c##r##0);                          \
    if constexpr (NV > 1) _mm512_store_si512(acc[r] + 16, c##r##1); \
    if constexpr (NV > 2) _mm512_store_si512(acc[r] + 32, c##r##2); \
    if constexpr (NV > 3) _mm512_store_si512(acc[r] + 48, c##r##3); \
  }
  QK_EACH_ROW(QK_SAVE)
#undef QK_SAVE
  store_tile<NV>(t, &acc[0][0], MR);
}

#undef QK_INLINE
#undef QK_EACH_ROW
#undef QK_ALL_ROWS
#undef QK_LOAD_B
#undef QK_ROW_DOT

template <int MR, bool kFlip>
void tile_nv(const TileArgs& t) {
  if constexpr (MR > 6) {  // the 12 x 32 kernel: N <= 32
    if (t.nc <= 16) return tile<MR, 1, kFlip>(t);
    return tile<MR, 2, kFlip>(t);
  } else {
    switch ((t.nc + 15) / 16) {
      case 1: return tile<MR, 1, kFlip>(t);
      case 2: return tile<MR, 2, kFlip>(t);
      case 3: return tile<MR, 3, kFlip>(t);
      default: return tile<MR, 4, kFlip>(t);
    }
  }
}

template <int MR>
void tile_nv(const TileArgs& t) {
  if (t.a_signed) return tile_nv<MR, true>(t);
  return tile_nv<MR, false>(t);
}

}  // namespace

void tile_gemm_6x64c4__avx512vnni(const TileArgs& t, int mr) {
  switch (mr) {
    case 1: return tile_nv<1>(t);
    case 2: return tile_nv<2>(t);
    case 3: return tile_nv<3>(t);
    case 4: return tile_nv<4>(t);
    case 5: return tile_nv<5>(t);
    default: return tile_nv<6>(t);
  }
}

// Reads the same packed panels as the 6 x 64 kernel (its first 32 columns); chosen when N <= 32.
void tile_gemm_12x32c4__avx512vnni(const TileArgs& t, int mr) {
  if (mr <= 6) return tile_gemm_6x64c4__avx512vnni(t, mr);
  switch (mr) {
    case 7: return tile_nv<7>(t);
    case 8: return tile_nv<8>(t);
    case 9: return tile_nv<9>(t);
    case 10: return tile_nv<10>(t);
    case 11: return tile_nv<11>(t);
    default: return tile_nv<12>(t);
  }
}

// B[k, n] -> panels [kp/4][64][4] of int8; u8 B is stored as b ^ 0x80 (= b - 128 as int8).
void pack_b_avx512vnni(PackedB& pb, const BSource& b) {
  const uint8_t flip = pb.b_type == DType::kUint8 ? 0x80 : 0x00;
  const uint8_t* src = static_cast<const uint8_t*>(b.data);
  for (int64_t p = 0; p < pb.panels; ++p) {
    uint8_t* panel = pb.data.data() + p * pb.kp * kNR;
    for_each_packed_row(pb, b, [&](int64_t kk, int64_t row) {
      if (row < 0) return;  // padding rows stay 0 (the buffer is zeroed)
      uint8_t* dst = panel + (kk / kKR) * kNR * kKR + kk % kKR;
      for (int64_t j = 0; j < kNR && p * kNR + j < pb.n; ++j)
        dst[j * kKR] = static_cast<uint8_t>(src[row + (p * kNR + j) * b.ld_n] ^ flip);
    });
  }
}

}  // namespace qk
