// deconv2x2.cc: 2x2 stride-2 transposed convolution as one GEMM, x[N*H*W, C] @ w[C, (dy, dx, o)], with
// the depth-to-space scatter done by the tile's store (docs/speed-design.md S9).
//
// Kernel size == stride, so each output pixel receives exactly one input pixel. For a fixed dy the
// columns (dx, o) are 2*O contiguous output elements at pixel (2i+dy, 2j): a GEMM row writes two runs,
// and a panel that straddles the dy boundary stores its columns >= 2*O to the second run.
#include <vector>

#include "qkern/conv.h"
#include "qkern/tile_driver.h"

namespace qk {

namespace {

struct DeconvRows {
  struct Scratch {
    char* dy0[kMaxMR];  // per tile row: output of (2i, 2j), the first element of its dy = 0 run
    // Input pixel (img, i, j) of row `next`: a task's next tile continues from it without dividing.
    int64_t next = -1, img = 0, i = 0, j = 0;
  };
  const uint8_t* x;
  int64_t channels, height, width;
  char* out;
  int64_t out_channels, esize;

  uint32_t fill_a(TileArgs& t, int64_t, int64_t r0, int rows, Scratch& s) const {
    for (int r = 0; r < rows; ++r) t.a[0][r] = x + (r0 + r) * channels;
    const int64_t out_row = 2 * width * out_channels * esize;  // bytes per output image row
    if (s.next != r0) s.img = r0 / (height * width), s.i = r0 % (height * width) / width, s.j = r0 % width;
    int64_t img = s.img, i = s.i, j = s.j;
    for (int r = 0; r < rows; ++r) {
      s.dy0[r] = out + (img * 2 * height + 2 * i) * out_row + 2 * j * out_channels * esize;
      if (++j == width) {
        j = 0;
        if (++i == height) i = 0, ++img;
      }
    }
    s.next = r0 + rows, s.img = img, s.i = i, s.j = j;
    return 0;
  }
  void fill_c(TileArgs& t, int64_t, int rows, const Scratch& s) const {
    const int64_t run = 2 * out_channels;                  // columns per dy
    const int64_t out_row = 2 * width * out_channels * esize;
    const bool first = t.col0 < run;
    const int64_t offset = first ? t.col0 * esize : out_row + (t.col0 - run) * esize;
    for (int r = 0; r < rows; ++r) {
      t.c[r] = s.dy0[r] + offset;
      t.c2[r] = s.dy0[r] + out_row;
    }
    if (first) t.split = run;
  }
};

}  // namespace

std::unique_ptr<PackedB> pack_deconv2x2(Isa isa, const void* w, DType w_type, int64_t in_channels,
                                        int64_t out_channels, const int32_t* w_zp, const int32_t* bias,
                                        const OutputStage& stage, int a_bits) {
  // Per-output-channel values repeat for each of the 4 (dy, dx) column groups.
  const int64_t cols = 4 * out_channels;
  std::vector<int32_t> zp4(cols), bias4(bias ? cols : 0), mult4, shift4;
  std::vector<float> fmult4;
  OutputStage s4 = stage;
  if (stage.multiplier) mult4.resize(cols), s4.multiplier = mult4.data();
  if (stage.shift) shift4.resize(cols), s4.shift = shift4.data();
  if (stage.fmultiplier) fmult4.resize(cols), s4.fmultiplier = fmult4.data();
  for (int64_t j = 0; j < cols; ++j) {
    const int64_t o = j % out_channels;
    zp4[j] = w_zp[o];
    if (bias) bias4[j] = bias[o];
    if (stage.multiplier) mult4[j] = stage.multiplier[o];
    if (stage.shift) shift4[j] = stage.shift[o];
    if (stage.fmultiplier) fmult4[j] = stage.fmultiplier[o];
  }
  return pack_b(isa, BSource{w, w_type, cols, 1}, 1, in_channels, cols, zp4.data(), bias ? bias4.data() : nullptr,
                s4, a_bits);
}

void deconv2x2_packed(const PackedB& pb, const ConvInput& in, const void* x, DType x_type, int32_t x_zero_point,
                      void* out) {
  QK_REQUIRE(pb.k == in.channels && pb.n % 4 == 0, "deconv2x2_packed: channel count differs from the weights");
  const int64_t esize = out_elem_size(pb.stage.out_dtype);
  const DeconvRows rows{static_cast<const uint8_t*>(x), in.channels, in.height, in.width, static_cast<char*>(out),
                        pb.n / 4, esize};
  run_tiles(pb, x_type, in.batch * in.height * in.width, x_zero_point, rows);
}

}  // namespace qk
