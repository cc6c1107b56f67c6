// kernel_list.h: the kernel contract: what the drivers know about each GEMM microkernel (rows of kernels.inc).
// Drivers ask the packed weights' KernelInfo, never which ISA they run on.
#pragma once

#include <cstdint>
#include <vector>

#include "qkern/gemm.h"
#include "qkern/isa.h"

namespace qk {

// The output forms a kernel stores (KernelInfo::outputs bits).
enum OutputForm : unsigned {
  kOutputInt32 = 1u << 0,  // RequantMode::kRaw: the int32 accumulators
  kOutput8Bit = 1u << 1,   // gemmlowp / single / fp32 requantized to uint8 or int8
  kOutputFloat = 1u << 2,  // RequantMode::kFloat: eqs. (19)-(20)
  kOutputSplit = 1u << 3,  // columns >= TileArgs::split to the second row pointers (conv_transpose2x2)
};
constexpr unsigned kAllOutputForms = kOutputInt32 | kOutput8Bit | kOutputFloat | kOutputSplit;

using PackFn = void (*)(PackedB&, const BSource&);
using ByteSumFn = void (*)(const uint8_t* p, int64_t rows, int64_t stride, int64_t n, uint8_t flip, uint32_t* out);
// Writes the windows of n consecutive output pixels of a 3x3 conv with C <= kPatchCinMax channels as the
// kernel's int16 patch rows (conv3x3's one-tap path): pixel i's window has its top-left input byte at
// corner + i * step and its kernel rows row_bytes apart; row i (dst + i * dst_stride bytes, dst_stride >= 128)
// gets its 9*C bytes as int16 (sign-extended when is_signed), kernel row dy from element 3*C*dy; a few
// elements past 9*C get the next input bytes (they meet B's zero rows). Stops before the first pixel whose
// loads would reach `end` (the input's end) and returns how many pixels it wrote; the caller writes the rest.
using PatchRowsFn = int (*)(int channels, bool is_signed, const uint8_t* corner, int64_t step, int64_t row_bytes,
                            int n, const uint8_t* end, uint8_t* dst, int64_t dst_stride);

struct KernelInfo {
  const char* name;     // the tile function's name: `_core.kernels()`, test ids, benchmark labels
  Isa isa;              // the CPU level it needs
  TileKernel tile;
  PackFn pack;          // packs B into the panels the tile reads (shared by the ISA's kernels)
  ByteSumFn byte_sums;  // eq. (7)'s row sums of A bytes (u8 after xor with the flip)
  PatchRowsFn patch_rows;  // a_int16 kernels: the first layer's int16 patch rows; null: written byte by byte
  int mr, nr, kr;       // tile rows, panel columns it computes, k-group of the packed layout
  int elem_bytes;       // bytes per packed B element
  bool flip_u8_b;       // u8 B stored as s8: its zero point moves by -128
  bool flip_s8_a;       // s8 A read as u8: its zero point moves by +128
  bool a_int16;         // multiplies A as int16 pairs: accepts rows already widened (TileArgs::a_wide)
  int a_bits;           // 8, or 7: exact only for uint8 A below 128 (weights packed for it promise that)
  bool wide_stage;      // reads OutputStage::wide (requant.h) where the mode has that form
  unsigned outputs;     // OutputForm bits
  int64_t max_n;        // 0: the general kernel (defines the layout); else chosen for outputs <= max_n columns
};

// Every row of kernels.inc built into this binary (none in a scalar-only build), in the file's order.
const std::vector<KernelInfo>& kernel_list();
// The general kernel of `isa` for A of `a_bits` (it defines the packed layout): the row for exactly a_bits if
// there is one, else the 8-bit one; null: the ISA runs the scalar driver.
const KernelInfo* general_kernel(Isa isa, int a_bits = 8);
// The general kernel whose layout pack_b uses for weights of n columns and A of a_bits: general_kernel(isa,
// a_bits), except that a 7-bit layout gives way to the 8-bit one when the latter has a narrower kernel for
// n columns (a 1-4 column head keeps the 8-bit 12x4 kernel, which computes no padding columns).
const KernelInfo* packing_kernel(Isa isa, int a_bits, int64_t n);
// The row named `name`, or null.
const KernelInfo* find_kernel(const char* name);
// The kernel for weights packed as `pb` and an output of n columns: the narrowest row that reads pb's panels
// and accepts n (a max_n >= n), else pb's general kernel.
const KernelInfo& tile_kernel_for(const PackedB& pb, int64_t n);

// Per-ISA packing, tile and row-sum routines (defined in csrc/kernels/<isa>/).
void pack_b_avx512vnni(PackedB& pb, const BSource& b);
void tile_gemm_6x64c4__avx512vnni(const TileArgs& t, int mr);
void tile_gemm_12x32c4__avx512vnni(const TileArgs& t, int mr);
void byte_sums__avx512vnni(const uint8_t* p, int64_t rows, int64_t stride, int64_t n, uint8_t flip, uint32_t* out);
void pack_b_avx2(PackedB& pb, const BSource& b);
void tile_gemm_6x16c2__avx2(const TileArgs& t, int mr);
void tile_gemm_12x8c2__avx2(const TileArgs& t, int mr);
void tile_gemm_12x4c2__avx2(const TileArgs& t, int mr);
void pack_b_avx2_c4(PackedB& pb, const BSource& b);
void tile_gemm_6x16c4u7__avx2(const TileArgs& t, int mr);
void tile_gemm_12x8c4u7__avx2(const TileArgs& t, int mr);
void byte_sums__avx2(const uint8_t* p, int64_t rows, int64_t stride, int64_t n, uint8_t flip, uint32_t* out);
int patch_rows__avx2(int channels, bool is_signed, const uint8_t* corner, int64_t step, int64_t row_bytes, int n,
                     const uint8_t* end, uint8_t* dst, int64_t dst_stride);

}  // namespace qk
