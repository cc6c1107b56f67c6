// gemm_tile_avx512vnni.h: the VNNI microkernel template: MR rows x 16*NV columns of vpdpbusd over the whole
// K in registers, then the epilogue (gemm_epilogue_avx512vnni.h). The 6x64 and 12x32 kernels instantiate it.
//
// vpdpbusd (not the saturating vpdpbusds) wraps like the int32 reference (docs/quantization.md eq. (6)).
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/avx512vnni/gemm_epilogue_avx512vnni.h"
#include "qkern/gemm.h"

namespace qk {
namespace {

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
}  // namespace qk
