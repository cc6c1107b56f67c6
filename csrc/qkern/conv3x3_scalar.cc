// conv3x3_scalar.cc: the scalar NHWC 3x3 convolution (stride 1/2, padding 0/1), direct loops over taps.
#include <vector>

#include "qkern/ops.h"
#include "qkern/scalar_common.h"

namespace qk {

void conv3x3_scalar(const Conv3x3Problem& p) {
  const int64_t c_in = p.in_channels, c_out = p.out_channels;
  // w[O, 9*C] centred and transposed to [9*C, O] so that the inner loop runs over output channels.
  std::vector<int32_t> wt(static_cast<size_t>(9 * c_in * c_out));
  for (int64_t o = 0; o < c_out; ++o)
    for (int64_t t = 0; t < 9 * c_in; ++t) wt[t * c_out + o] = load_q(p.w, p.w_type, o * 9 * c_in + t) - p.w_zero_point[o];
  const int64_t oh = p.out_height(), ow = p.out_width();
  const int64_t esize = out_elem_size(p.stage.out_dtype);
  std::vector<uint32_t> acc(static_cast<size_t>(c_out));
  char* out = static_cast<char*>(p.out);
  for (int64_t n = 0; n < p.batch; ++n)
    for (int64_t y = 0; y < oh; ++y)
      for (int64_t x = 0; x < ow; ++x) {
        init_acc(acc.data(), p.bias, c_out);
        for (int dy = 0; dy < 3; ++dy) {
          const int64_t iy = y * p.stride + dy - p.padding;
          if (iy < 0 || iy >= p.height) continue;  // padding: x_zero_point - x_zero_point = 0
          for (int dx = 0; dx < 3; ++dx) {
            const int64_t ix = x * p.stride + dx - p.padding;
            if (ix < 0 || ix >= p.width) continue;
            const int64_t pix = ((n * p.height + iy) * p.width + ix) * c_in;
            const int32_t* wtap = wt.data() + (dy * 3 + dx) * c_in * c_out;
            for (int64_t c = 0; c < c_in; ++c) {
              const int32_t a = load_q(p.x, p.x_type, pix + c) - p.x_zero_point;
              if (a != 0) axpy_wrap(acc.data(), a, wtap + c * c_out, c_out);
            }
          }
        }
        store_row(acc.data(), c_out, c_out, p.stage, out + ((n * oh + y) * ow + x) * c_out * esize);
      }
}

}  // namespace qk
