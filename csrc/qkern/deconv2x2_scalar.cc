// deconv2x2_scalar.cc: the scalar 2x2 stride-2 transposed convolution, one GEMM row per input pixel
// (columns ordered (di, dj, o)) scattered depth-to-space into the output.
#include <vector>

#include "qkern/ops.h"
#include "qkern/scalar_common.h"

namespace qk {

void deconv2x2_scalar(const Deconv2x2Problem& p) {
  const int64_t c_in = p.in_channels, c_out = p.out_channels, cols = 4 * c_out;
  const std::vector<int32_t> wc = centre_matrix(p.w, p.w_type, c_in, cols, cols, p.w_zero_point, c_out);
  std::vector<int32_t> bias4;
  if (p.bias) {
    bias4.resize(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; ++j) bias4[j] = p.bias[j % c_out];
  }
  const int64_t esize = out_elem_size(p.stage.out_dtype);
  std::vector<uint32_t> acc(static_cast<size_t>(cols));
  char* out = static_cast<char*>(p.out);
  const int64_t out_w = 2 * p.width;
  for (int64_t n = 0; n < p.batch; ++n)
    for (int64_t i = 0; i < p.height; ++i)
      for (int64_t j = 0; j < p.width; ++j) {
        init_acc(acc.data(), p.bias ? bias4.data() : nullptr, cols);
        const int64_t pix = ((n * p.height + i) * p.width + j) * c_in;
        for (int64_t c = 0; c < c_in; ++c) {
          const int32_t a = load_q(p.x, p.x_type, pix + c) - p.x_zero_point;
          if (a != 0) axpy_wrap(acc.data(), a, wc.data() + c * cols, cols);
        }
        for (int di = 0; di < 2; ++di) {
          // For fixed di the columns (dj, o) are 2*O contiguous output elements at pixel (2i+di, 2j).
          const int64_t dst = ((n * 2 * p.height + 2 * i + di) * out_w + 2 * j) * c_out;
          store_row(acc.data() + di * 2 * c_out, 2 * c_out, c_out, p.stage, out + dst * esize);
        }
      }
}

}  // namespace qk
