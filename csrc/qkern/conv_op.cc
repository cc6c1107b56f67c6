// conv_op.cc: runs a conv layer on its packed weights, or on the scalar kernels where the ISA has no packed form.
#include "qkern/conv_op.h"

#include "qkern/kernel_list.h"

namespace qk {

namespace {

// The scalar kernels' problem descriptor (Conv3x3Problem or Deconv2x2Problem) for one call.
template <class Problem>
Problem scalar_problem(const ConvWeights& w, const ConvInput& in, const void* x, DType x_type, int32_t x_zero_point,
                       void* out) {
  Problem p;
  p.batch = in.batch;
  p.height = in.height;
  p.width = in.width;
  p.in_channels = w.in_channels;
  p.out_channels = w.out_channels;
  p.x = x;
  p.x_type = x_type;
  p.w = w.w;
  p.w_type = w.w_type;
  p.x_zero_point = x_zero_point;
  p.w_zero_point = w.w_zero_point;
  p.bias = w.bias;
  p.stage = w.stage;
  p.out = out;
  return p;
}

}  // namespace

Conv3x3Op::Conv3x3Op(Isa isa, const ConvWeights& weights, int stride, int padding, int a_bits)
    : isa_(isa), weights_(weights), stride_(stride), padding_(padding) {
  QK_REQUIRE((stride == 1 || stride == 2) && (padding == 0 || padding == 1),
             "conv3x3: stride must be 1 or 2 and padding 0 or 1");
  if (!general_kernel(isa_)) return;  // no tile kernel: the scalar kernels on unpacked weights
  packed_ = pack_conv3x3(isa_, weights_.w, weights_.w_type, weights_.out_channels, weights_.in_channels,
                         weights_.w_zero_point, weights_.bias, weights_.stage, a_bits);
}

ConvInput Conv3x3Op::input(int64_t batch, int64_t height, int64_t width) const {
  return ConvInput{batch, height, width, weights_.in_channels, stride_, padding_};
}

void Conv3x3Op::run(const ConvInput& in, const void* x, DType x_type, int32_t x_zero_point, void* out) const {
  if (packed_) return conv3x3_packed(*packed_, in, x, x_type, x_zero_point, out);
  auto p = scalar_problem<Conv3x3Problem>(weights_, in, x, x_type, x_zero_point, out);
  p.stride = stride_;
  p.padding = padding_;
  conv3x3_scalar(p);
}

Deconv2x2Op::Deconv2x2Op(Isa isa, const ConvWeights& weights, int a_bits) : isa_(isa), weights_(weights) {
  if (!general_kernel(isa_)) return;  // no tile kernel: the scalar kernels on unpacked weights
  packed_ = pack_deconv2x2(isa_, weights_.w, weights_.w_type, weights_.in_channels, weights_.out_channels,
                           weights_.w_zero_point, weights_.bias, weights_.stage, a_bits);
}

ConvInput Deconv2x2Op::input(int64_t batch, int64_t height, int64_t width) const {
  return ConvInput{batch, height, width, weights_.in_channels, 2, 0};
}

void Deconv2x2Op::run(const ConvInput& in, const void* x, DType x_type, int32_t x_zero_point, void* out) const {
  if (packed_) return deconv2x2_packed(*packed_, in, x, x_type, x_zero_point, out);
  deconv2x2_scalar(scalar_problem<Deconv2x2Problem>(weights_, in, x, x_type, x_zero_point, out));
}

}  // namespace qk
