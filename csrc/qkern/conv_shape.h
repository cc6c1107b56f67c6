// conv_shape.h: output sizes of the conv ops, the one C++ statement of each formula (docs/quantization.md §7).
#pragma once

#include <cstdint>

namespace qk {

// Whether an h x w input padded by `padding` on each side holds at least one 3x3 window.
inline bool conv3x3_fits(int64_t h, int64_t w, int padding) { return h + 2 * padding >= 3 && w + 2 * padding >= 3; }

// Output rows (or columns) of a 3x3 convolution over `size` input rows: (size + 2*padding - 3) / stride + 1.
inline int64_t conv3x3_out_size(int64_t size, int stride, int padding) { return (size + 2 * padding - 3) / stride + 1; }

// Output rows (or columns) of a 2x2 stride-2 transposed convolution without padding.
inline int64_t deconv2x2_out_size(int64_t size) { return 2 * size; }

}  // namespace qk
