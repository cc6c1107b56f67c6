// gemm.h: packed weights (B), the microkernel ABI shared by every ISA, and the packed-GEMM driver.
//
// Packed B layout (docs/kernels.md): panels of NR columns; inside a panel [Kp/KR][NR][KR] elements, one
// contiguous stream per k-step. K is `taps` segments of `tap_k` rows, each padded to `tap_kp` (a multiple
// of KR) with zero rows: a GEMM has one tap, conv3x3 nine (one per kernel position, docs/kernels.md).
// avx512vnni: NR=64, KR=4, int8; avx2: NR=16, KR=2, int8 (the kernels sign-extend to int16 as they load), or
// for 7-bit A NR=16, KR=4, int8.
// Both store u8 B as s8 (b ^ 0x80, zero point - 128). scalar: the unpacked K x N matrix.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "qkern/common.h"
#include "qkern/isa.h"
#include "qkern/requant.h"

namespace qk {

// 64-byte aligned byte buffer for packed panels.
struct AlignedBuffer {
  std::unique_ptr<uint8_t[], void (*)(uint8_t*)> ptr{nullptr, [](uint8_t*) {}};
  size_t size = 0;
  void allocate(size_t bytes);
  uint8_t* data() const { return ptr.get(); }
};

struct KernelInfo;  // kernel_list.h

struct PackedB {
  Isa isa = Isa::kScalar;
  const KernelInfo* kernel = nullptr;  // the general kernel whose layout `data` holds; null: unpacked (scalar)
  int64_t k = 0, n = 0;                         // real depth (taps * tap_k) and columns
  int taps = 1;                                  // K segments, each read from its own A row pointers
  int64_t tap_k = 0, tap_kp = 0;                 // real and padded rows per segment
  int64_t nr = 1, kr = 1, kp = 0, panels = 0;  // panel width, k-group, padded K (taps * tap_kp), panel count
  DType b_type = DType::kInt8;
  AlignedBuffer data;
  // Per padded column (panels * nr entries): sum_k of the packed B values, the zero point in the packed
  // representation, the int32 bias, and the output stage parameters.
  std::vector<int32_t> colsum, zb, bias, multiplier, shift;
  std::vector<float> fmultiplier;
  std::vector<float> fbias;          // kFloat: the float32 bias (zeros without one)
  std::vector<int32_t> zp_colsum;    // kFloat: OutputStage::zp_colsum
  std::vector<int64_t> wide;  // avx512vnni: OutputStage::wide (requant.h), when the mode has that form
  bool has_zb = false;  // any zb != 0: the kernel needs row sums of A
  // Convolutions (taps > 1): [taps][columns], colsum restricted to one tap. A tap that is padding in every
  // row of a tile is not multiplied; za' * tapsum goes into that tile's starting accumulator instead.
  std::vector<int32_t> tapsum;
  OutputStage stage;    // pointers refer to the vectors above
  int64_t columns() const { return panels * nr; }

  // Eq. (7) folded into the starting accumulator for one A zero point za' (as the kernel reads A):
  // bias - za'*colsum + K*za'*zb' per column, wrapping. The last one is kept: a model calls a layer with
  // the same activation zero point every time, and an O(N) pass is a visible share of an M = 1 call.
  struct EffectiveBias {
    int32_t za;
    std::vector<int32_t> values;
  };
  std::shared_ptr<const EffectiveBias> effective_bias(int32_t za) const;

  // Plain GEMM weights of at most kRowBlockMaxN columns: B as packed (int8, u8 flipped), K x N row-major, for
  // row_blocks(); empty otherwise.
  std::vector<int8_t> narrow_b;
  // The same weights as R = kRowBlockCols / n copies on the diagonal of a (R*K) x (R*n) B, for an A of
  // contiguous rows viewed R rows at a time (gemm.cc); null where that form does not apply (a weight zero
  // point, K too deep, the scalar ISA). Made on the first call that asks.
  const PackedB* row_blocks() const;

  // A first-layer kernel's own layout of these weights (KernelInfo::first_layer), made by make(*this) on the
  // first call that needs it and kept: a conv's packed weights are constant.
  template <class Make>
  const std::vector<int16_t>& first_layer_weights(const Make& make) const {
    std::call_once(first_layer_once_, [&] { first_layer_weights_ = make(*this); });
    return first_layer_weights_;
  }

 private:
  mutable std::mutex bias_mutex_;  // calls from several threads share the packed weights
  mutable std::shared_ptr<const EffectiveBias> last_bias_;
  mutable std::once_flag row_blocks_once_;
  mutable std::unique_ptr<PackedB> row_blocks_;
  mutable std::once_flag first_layer_once_;
  mutable std::vector<int16_t> first_layer_weights_;
};

// The logical B[K, N] to pack: element (k, n) at data[k * ld_k + n * ld_n].
struct BSource {
  const void* data = nullptr;
  DType type = DType::kInt8;
  int64_t ld_k = 0, ld_n = 1;
};

// Packs B (taps * tap_k rows, n columns) for `isa` with its zero point(s) b_zp[N], optional bias[N] and
// stage (per-column arrays of length N in `stage`, copied). The result owns everything it needs. The
// scalar ISA keeps B unpacked and supports one tap only. a_bits 7: the caller promises uint8 A below 128
// on every call (torch's reduce_range activations), which the ISA's 7-bit kernel, if any, needs to be exact.
std::unique_ptr<PackedB> pack_b(Isa isa, const BSource& b, int taps, int64_t tap_k, int64_t n,
                                const int32_t* b_zp, const int32_t* bias, const OutputStage& stage, int a_bits = 8);

// pack_b in the layout of `general` (a general kernel of `isa`, kernel_list.h; null: unpacked, for the scalar
// driver): what pack_b does after choosing it (packing_kernel).
std::unique_ptr<PackedB> pack_b_layout(Isa isa, const KernelInfo* general, const BSource& b, int taps,
                                       int64_t tap_k, int64_t n, const int32_t* b_zp, const int32_t* bias,
                                       const OutputStage& stage);

// The plain GEMM case: b[K, N] with row stride ldb.
inline std::unique_ptr<PackedB> pack_b(Isa isa, const void* b, DType b_type, int64_t k, int64_t n, int64_t ldb,
                                       const int32_t* b_zp, const int32_t* bias, const OutputStage& stage,
                                       int a_bits = 8) {
  return pack_b(isa, BSource{b, b_type, ldb, 1}, 1, k, n, b_zp, bias, stage, a_bits);
}

// C[M, N] (row stride ldc, element type stage.out_dtype) = stage(A B), A[M, K] row stride lda.
void gemm_packed(const PackedB& pb, const void* a, DType a_type, int64_t m, int64_t lda, int32_t a_zero_point,
                 void* c, int64_t ldc);

// The float32 output form (pb packed with RequantMode::kFloat), eqs. (19)-(20): C[M, N] float32 (row
// stride ldc) from A[M, K] with scale a_scale[r] and zero point a_zp[r] per row when per_row, else
// a_scale[0] and a_zp[0] for every row.
void gemm_packed_float(const PackedB& pb, const void* a, DType a_type, int64_t m, int64_t lda, const float* a_scale,
                       const int32_t* a_zp, bool per_row, float* c, int64_t ldc);

// Tests only (the generated per-kernel edge tests, tests/test_kernel_edges.py): gemm_packed and
// gemm_packed_float run by `kernel`, a row of kernels.inc that reads pb's panels, instead of the shape's
// choice. The integer form stores columns >= split to c2 (row stride ldc2, first column `split`) when c2 is
// set: conv_transpose2x2's split store.
void gemm_packed_with(const PackedB& pb, const KernelInfo& kernel, const void* a, DType a_type, int64_t m,
                      int64_t lda, int32_t a_zero_point, void* c, int64_t ldc, int64_t split, void* c2, int64_t ldc2);
void gemm_packed_float_with(const PackedB& pb, const KernelInfo& kernel, const void* a, DType a_type, int64_t m,
                            int64_t lda, const float* a_scale, const int32_t* a_zp, bool per_row, float* c,
                            int64_t ldc);

// ---- microkernel ABI (one POD for every ISA) ----
constexpr int kMaxMR = 12;  // the tallest tile (12 x 32); most kernels use 6 rows
constexpr int kMaxNR = 64;  // the widest panel
constexpr int kMaxTaps = 9;

// TileArgs::tap_b of a tile that multiplies every tap.
inline constexpr uint8_t kAllTaps[kMaxTaps] = {0, 1, 2, 3, 4, 5, 6, 7, 8};

struct TileArgs {
  const uint8_t* a[kMaxTaps][kMaxMR];  // per tap, the row pointers (tap_k bytes each); only rows < mr are set
  int taps;                            // 1 for a GEMM
  const uint8_t* tap_b;                // the packed tap each a[tap] multiplies (the driver drops padding taps)
  int64_t tap_k, tap_kp;               // as in PackedB: B holds tap_kp rows per tap, the last ones zero
  const uint8_t* b;          // start of this panel in PackedB::data
  const int32_t* bias_eff;   // [nr]: bias - za'*colsum + K*za'*zb (wrapped), this panel
  const int32_t* zb;         // [nr] or null: subtract rowsum[r] * zb[j] in the epilogue
  int32_t rowsum[kMaxMR];    // sum_k a'[r, k] for the rows of this tile
  const OutputStage* stage;  // full-width arrays; index with col0 + j
  int64_t col0;              // first column of this panel
  int nc;                    // valid columns in this panel (1..nr)
  void* c[kMaxMR];           // output row pointers at column col0
  int64_t split;             // columns >= split go to c2 instead (depth-to-space store); INT64_MAX if none
  void* c2[kMaxMR];          // output row pointers at column split
  bool a_signed;             // A is int8 (the kernel flips or sign-extends it)
  uint64_t a_version;        // changes whenever the bytes behind a[][] may have: kernel caches key on it
  // Kernels with KernelInfo::a_int16 only: the rows at a[][] already hold A as the kernel multiplies it
  // (int16, sign-extended; elements past tap_k finite, readable up to the next multiple of 16 elements past
  // tap_kp); the kernel reads them in place instead of widening its own copy.
  bool a_wide = false;
  // RequantMode::kFloat only (set by the GEMM row map): each tile row's activation scale s_a and, when
  // row_zp, its zero point, applied in the epilogue as eq. (20) (the driver then ran with zero point 0).
  float a_scale[kMaxMR];
  int32_t a_zp[kMaxMR];
  bool row_zp;
};

using TileKernel = void (*)(const TileArgs& t, int mr);

// Calls f(kk, src) for every row of the padded packed K (tap-major): src is the row's offset in the
// source (k * ld_k), or -1 for a padding row.
template <class F>
inline void for_each_packed_row(const PackedB& pb, const BSource& b, F f) {
  int64_t kk = 0;
  for (int tap = 0; tap < pb.taps; ++tap)
    for (int64_t c = 0; c < pb.tap_kp; ++c, ++kk) f(kk, c < pb.tap_k ? (tap * pb.tap_k + c) * b.ld_k : int64_t{-1});
}

}  // namespace qk
