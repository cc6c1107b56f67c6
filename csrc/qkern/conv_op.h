// conv_op.h: a conv layer ready to run on one ISA: weights packed for the tile kernels, or, on the scalar
// ISA (which has no packed conv form), the caller's unpacked weights for the plain-loop kernels (ops.h).
#pragma once

#include <cstdint>
#include <memory>

#include "qkern/conv.h"
#include "qkern/ops.h"

namespace qk {

// The caller's weights (conv3x3: w[O, 3, 3, C]; deconv2x2: w[C, 2, 2, O]) and per-output-channel arrays.
// Everything pointed to must outlive the op: the scalar path reads it at every call.
struct ConvWeights {
  const void* w = nullptr;
  DType w_type = DType::kInt8;
  int64_t in_channels = 0, out_channels = 0;
  const int32_t* w_zero_point = nullptr;  // [O]
  const int32_t* bias = nullptr;          // [O] or null
  OutputStage stage;                      // its arrays have O entries
};

// conv3x3 with fixed weights, stride and padding. a_bits 7: every input is uint8 below 128 (pack_b).
class Conv3x3Op {
 public:
  Conv3x3Op(Isa isa, const ConvWeights& weights, int stride, int padding, int a_bits = 8);
  // The input descriptor of x[batch, height, width, C] (its out_height/out_width give the output's shape).
  ConvInput input(int64_t batch, int64_t height, int64_t width) const;
  // out[N, OH, OW, O] (stage.out_dtype) = conv3x3(x, w); `in` comes from input() and conv3x3_fits holds.
  void run(const ConvInput& in, const void* x, DType x_type, int32_t x_zero_point, void* out) const;
  Isa isa() const { return isa_; }

 private:
  Isa isa_;
  ConvWeights weights_;
  int stride_, padding_;
  std::unique_ptr<PackedB> packed_;  // null on the scalar ISA
};

// conv_transpose2x2 (stride 2, no padding) with fixed weights. a_bits as for Conv3x3Op.
class Deconv2x2Op {
 public:
  Deconv2x2Op(Isa isa, const ConvWeights& weights, int a_bits = 8);
  ConvInput input(int64_t batch, int64_t height, int64_t width) const;
  // out[N, 2H, 2W, O] (stage.out_dtype) = conv_transpose2x2(x, w); `in` comes from input().
  void run(const ConvInput& in, const void* x, DType x_type, int32_t x_zero_point, void* out) const;
  Isa isa() const { return isa_; }

 private:
  Isa isa_;
  ConvWeights weights_;
  std::unique_ptr<PackedB> packed_;  // null on the scalar ISA
};

}  // namespace qk
