// gemm.h: packed weights (B), the microkernel ABI shared by every ISA, and the packed-GEMM driver.
//
// Packed B layout (docs/kernels.md): panels of NR columns; inside a panel [Kp/KR][NR][KR] elements, one
// contiguous stream per k-step. avx512vnni: NR=64, KR=4, int8 (u8 B flipped to s8 by ^0x80, zero point
// -128). avx2: NR=16, KR=2, int16 (raw values, no flip). scalar: the unpacked K x N matrix.
#pragma once

#include <cstdint>
#include <memory>
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

struct PackedB {
  Isa isa = Isa::kScalar;
  int64_t k = 0, n = 0;
  int64_t nr = 1, kr = 1, kp = 0, panels = 0;  // panel width, k-group, padded K, panel count
  DType b_type = DType::kInt8;
  bool flip_s8_a = false;  // the kernel reads s8 A as u8 (a ^ 0x80): its zero point moves by +128
  AlignedBuffer data;
  // Per padded column (panels * nr entries): sum_k of the packed B values, the zero point in the packed
  // representation, the int32 bias, and the output stage parameters.
  std::vector<int32_t> colsum, zb, bias, multiplier, shift;
  std::vector<float> fmultiplier;
  bool has_zb = false;  // any zb != 0: the kernel needs row sums of A
  OutputStage stage;    // pointers refer to the vectors above
  int64_t columns() const { return panels * nr; }
};

// Packs b[K, N] (row stride ldb) for `isa` with its zero point(s) b_zp[N], optional bias[N] and stage
// (per-column arrays of length N in `stage`, copied). The result owns everything it needs.
std::unique_ptr<PackedB> pack_b(Isa isa, const void* b, DType b_type, int64_t k, int64_t n, int64_t ldb,
                                const int32_t* b_zp, const int32_t* bias, const OutputStage& stage);

// C[M, N] (row stride ldc, element type stage.out_dtype) = stage(A B), A[M, K] row stride lda.
void gemm_packed(const PackedB& pb, const void* a, DType a_type, int64_t m, int64_t lda, int32_t a_zero_point,
                 void* c, int64_t ldc);

// ---- microkernel ABI (one POD for every ISA) ----
constexpr int kMaxMR = 6;

struct TileArgs {
  const uint8_t* a[kMaxMR];  // row pointers; rows >= mr alias row 0
  int64_t k;                 // true depth
  const uint8_t* b;          // start of this panel in PackedB::data
  const int32_t* bias_eff;   // [nr]: bias - za'*colsum + K*za'*zb (wrapped), this panel
  const int32_t* zb;         // [nr] or null: subtract rowsum[r] * zb[j] in the epilogue
  int32_t rowsum[kMaxMR];    // sum_k a'[r, k] for the rows of this tile
  const OutputStage* stage;  // full-width arrays; index with col0 + j
  int64_t col0;              // first column of this panel
  int nc;                    // valid columns in this panel (1..nr)
  void* c[kMaxMR];           // output row pointers at column col0
  bool a_signed;             // A is int8 (the kernel flips or sign-extends it)
  uint64_t call_id;          // unique per gemm_packed call: per-call caches in kernels key on it
};

using TileKernel = void (*)(const TileArgs& t, int mr);

// Per-ISA packing and tile kernels (defined in csrc/kernels/<isa>/).
void pack_b_avx512vnni(PackedB& pb, const void* b, int64_t ldb);
void tile_gemm_6x64c4__avx512vnni(const TileArgs& t, int mr);
void pack_b_avx2(PackedB& pb, const void* b, int64_t ldb);
void tile_gemm_6x16c2__avx2(const TileArgs& t, int mr);

}  // namespace qk
