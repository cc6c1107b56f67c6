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
// A first layer: a 3x3 conv whose C <= kPatchCinMax input channels make one tap (pack_conv3x3), computed by
// the kernel straight from the input (conv3x3's first-layer path, docs/speed-design.md S8). Output rows
// [row_begin, row_end) of the batch (row = image * out_height + oy), every column, through pb's stage.
struct FirstLayerArgs {
  const PackedB* pb;
  const uint8_t* x;  // NHWC input of `channels` channels, int8 when x_signed
  bool x_signed;
  int32_t x_zero_point;  // also the value of the padding
  int64_t height, width, channels, out_height, out_width;
  int stride, padding;
  const int32_t* bias_eff;      // pb.effective_bias(x_zero_point): the starting accumulators, every column
  const uint32_t* window_sums;  // pb.has_zb: each output pixel's window sum (run_tiles' tap_sums), else null
  char* out;                    // [pixels, pb.n] of pb.stage.out_dtype
};
using FirstLayerFn = void (*)(const FirstLayerArgs& a, int64_t row_begin, int64_t row_end);

struct KernelInfo {
  const char* name;     // the tile function's name: `_core.kernels()`, test ids, benchmark labels
  Isa isa;              // the CPU level it needs
  TileKernel tile;
  PackFn pack;          // packs B into the panels the tile reads (shared by the ISA's kernels)
  ByteSumFn byte_sums;  // eq. (7)'s row sums of A bytes (u8 after xor with the flip)
  FirstLayerFn first_layer;  // a_int16 kernels: computes first layers (required); others: null (a byte patch)
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
void first_layer__avx2(const FirstLayerArgs& a, int64_t row_begin, int64_t row_end);

}  // namespace qk
