// conv.h: packed-weight drivers of conv3x3 (implicit GEMM) and conv_transpose2x2 (GEMM + depth-to-space).
//
// Both reuse PackedB and the tile kernels of kernels.inc (docs/kernels.md, "Convolutions"). The scalar
// ISA has no packed form: callers use conv3x3_scalar / deconv2x2_scalar (ops.h) there.
#pragma once

#include <cstdint>
#include <memory>

#include "qkern/gemm.h"

namespace qk {

// The activation x[N, H, W, C] (NHWC, C-contiguous) and, for conv3x3, the stride and padding.
struct ConvInput {
  int64_t batch = 0, height = 0, width = 0, channels = 0;
  int stride = 1, padding = 0;
  int64_t out_height() const { return (height + 2 * padding - 3) / stride + 1; }
  int64_t out_width() const { return (width + 2 * padding - 3) / stride + 1; }
};

// Up to this many input channels conv3x3 packs B as three 3*C-deep taps, one per kernel row, read in place
// (first layers and narrow layers: short taps cost more in tap switches than in arithmetic); above it,
// nine C-deep taps read in place.
constexpr int64_t kSmallCinMax = 64;
// Up to this many input channels (first layers) the whole 9*C-deep window is copied into a per-tile patch
// and multiplied as one tap: three taps of 3*C <= 18 bytes cost more in tap switches and K tails than the
// copy; from C = 8 on, the copy costs more than it saves (docs/speed-design.md S8).
constexpr int64_t kPatchCinMax = 6;

// w[O, 3, 3, C] (OHWI) as B[(tap, c), o]; w_zp, bias and the stage's arrays have O entries.
std::unique_ptr<PackedB> pack_conv3x3(Isa isa, const void* w, DType w_type, int64_t out_channels,
                                      int64_t in_channels, const int32_t* w_zp, const int32_t* bias,
                                      const OutputStage& stage);
// out[N, OH, OW, O] (stage.out_dtype) = conv3x3(x, w).
void conv3x3_packed(const PackedB& pb, const ConvInput& in, const void* x, DType x_type, int32_t x_zero_point,
                    void* out);

// w[C, 2, 2, O] (IHWO) as B[c, (dy, dx, o)]; w_zp, bias and the stage's arrays have O entries.
std::unique_ptr<PackedB> pack_deconv2x2(Isa isa, const void* w, DType w_type, int64_t in_channels,
                                        int64_t out_channels, const int32_t* w_zp, const int32_t* bias,
                                        const OutputStage& stage);
// out[N, 2H, 2W, O] (stage.out_dtype) = conv_transpose2x2(x, w); in.stride/padding are unused.
void deconv2x2_packed(const PackedB& pb, const ConvInput& in, const void* x, DType x_type, int32_t x_zero_point,
                      void* out);

}  // namespace qk
