// conv.h: packed-weight drivers of conv3x3 (implicit GEMM) and conv_transpose2x2 (GEMM + depth-to-space).
//
// Both reuse PackedB and the tile kernels of kernels.inc (docs/kernels.md, "Convolutions"). The scalar
// ISA has no packed form; conv_op.h chooses between these and the scalar kernels (ops.h).
#pragma once

#include <cstdint>
#include <memory>

#include "qkern/conv_shape.h"
#include "qkern/gemm.h"
#include "qkern/tuning.h"

namespace qk {

// The activation x[N, H, W, C] (NHWC, C-contiguous) and, for conv3x3, the stride and padding.
struct ConvInput {
  int64_t batch = 0, height = 0, width = 0, channels = 0;
  int stride = 1, padding = 0;
  int64_t out_height() const { return conv3x3_out_size(height, stride, padding); }
  int64_t out_width() const { return conv3x3_out_size(width, stride, padding); }
};

// w[O, 3, 3, C] (OHWI) as B[(tap, c), o]; w_zp, bias and the stage's arrays have O entries.
std::unique_ptr<PackedB> pack_conv3x3(Isa isa, const void* w, DType w_type, int64_t out_channels,
                                      int64_t in_channels, const int32_t* w_zp, const int32_t* bias,
                                      const OutputStage& stage, int a_bits = 8);
// out[N, OH, OW, O] (stage.out_dtype) = conv3x3(x, w).
void conv3x3_packed(const PackedB& pb, const ConvInput& in, const void* x, DType x_type, int32_t x_zero_point,
                    void* out);

// w[C, 2, 2, O] (IHWO) as B[c, (dy, dx, o)]; w_zp, bias and the stage's arrays have O entries.
std::unique_ptr<PackedB> pack_deconv2x2(Isa isa, const void* w, DType w_type, int64_t in_channels,
                                        int64_t out_channels, const int32_t* w_zp, const int32_t* bias,
                                        const OutputStage& stage, int a_bits = 8);
// out[N, 2H, 2W, O] (stage.out_dtype) = conv_transpose2x2(x, w); in.stride/padding are unused.
void deconv2x2_packed(const PackedB& pb, const ConvInput& in, const void* x, DType x_type, int32_t x_zero_point,
                      void* out);

}  // namespace qk
