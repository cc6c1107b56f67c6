// conv3x3.cc: NHWC 3x3 convolution as an implicit GEMM: M = N*OH*OW, K = 9*C, N = O (performance.md 3.8).
//
// Each 6-pixel tile gets a table of 9 x 6 input-row pointers built on the stack; a tap outside the
// image points at a row of x_zero_point bytes (real 0). No im2col buffer: extra memory is one row.
// With C <= kSmallCinMax the tap overhead dominates, so the tile's patches are copied into a 6-row
// buffer and the kernel sees one contiguous 9*C-deep row per pixel instead.
#include <cstring>
#include <vector>

#include "qkern/conv.h"
#include "qkern/tile_driver.h"

namespace qk {

namespace {

// The 9 input-pixel pointers of an output pixel's taps.
struct ConvTaps {
  const ConvInput* in;
  const uint8_t* x;
  const uint8_t* za_row;  // in->channels bytes of x_zero_point
  const uint8_t* x_end;   // one past the input
  int64_t oh, ow;

  // Output row -> (image, oy, ox), then the next rows by stepping ox (no division per row).
  struct Pos {
    int64_t img, oy, ox;
  };
  Pos pos(int64_t row) const { return {row / (oh * ow), row % (oh * ow) / ow, row % ow}; }
  void next(Pos& p) const {
    if (++p.ox == ow) {
      p.ox = 0;
      if (++p.oy == oh) p.oy = 0, ++p.img;
    }
  }

  // Byte offset of tap (dy, dx) from the window's top-left input pixel.
  int64_t tap_offset(int tap) const { return ((tap / 3) * in->width + tap % 3) * in->channels; }

  void taps_of(const Pos& p, const uint8_t* ptrs[kMaxTaps]) const {
    const uint8_t* image = x + p.img * in->height * in->width * in->channels;
    const int64_t iy0 = p.oy * in->stride - in->padding, ix0 = p.ox * in->stride - in->padding;
    if (iy0 >= 0 && iy0 + 2 < in->height && ix0 >= 0 && ix0 + 2 < in->width) {
      // The whole window is inside (most pixels): nine fixed offsets, no per-tap bounds checks.
      const uint8_t* corner = image + (iy0 * in->width + ix0) * in->channels;
      for (int tap = 0; tap < kMaxTaps; ++tap) ptrs[tap] = corner + tap_offset(tap);
      return;
    }
    for (int dy = 0; dy < 3; ++dy) {
      const int64_t iy = iy0 + dy;
      for (int dx = 0; dx < 3; ++dx) {
        const int64_t ix = ix0 + dx;
        const bool inside = iy >= 0 && iy < in->height && ix >= 0 && ix < in->width;
        ptrs[dy * 3 + dx] = inside ? image + (iy * in->width + ix) * in->channels : za_row;
      }
    }
  }
};

struct OutRows {
  char* out;
  int64_t row_bytes, esize;
  template <class Scratch>
  void fill_c(TileArgs& t, int64_t r0, int rows, const Scratch&) const {
    for (int r = 0; r < kMaxMR; ++r) t.c[r] = out + (r0 + (r < rows ? r : 0)) * row_bytes + t.col0 * esize;
  }
};

// Nine taps read in place.
struct TableRows : OutRows {
  struct Scratch {};
  ConvTaps taps;
  void fill_a(TileArgs& t, int64_t, int64_t r0, int rows, Scratch&) const {
    const uint8_t* ptrs[kMaxTaps];
    ConvTaps::Pos p = taps.pos(r0);
    for (int r = 0; r < rows; ++r, taps.next(p)) {
      taps.taps_of(p, ptrs);
      for (int tap = 0; tap < kMaxTaps; ++tap) t.a[tap][r] = ptrs[tap];
    }
    for (int r = rows; r < kMaxMR; ++r)
      for (int tap = 0; tap < kMaxTaps; ++tap) t.a[tap][r] = t.a[tap][0];
  }
};

// One 9*C-deep row per pixel, gathered into a per-task buffer (C <= kSmallCinMax).
struct PatchRows : OutRows {
  struct Scratch {
    alignas(64) uint8_t rows[kMaxMR][9 * kSmallCinMax];
  };
  ConvTaps taps;

  // Copies n <= N bytes. A fixed-size copy (inlined as a few vector moves) replaces a memcpy call of
  // 3-48 bytes, which cost more than the tile's arithmetic at K = 27; the bytes past n that it writes
  // are overwritten by the next copy or never read (K is 9*C), and it reads past n only inside the input.
  // Rows are laid out so that the last copy of a row still ends within the row (9 * kSmallCinMax bytes).
  template <int64_t N>
  void copy_prefix(uint8_t* dst, const uint8_t* src, int64_t n) const {
    if (src + N <= taps.x_end) std::memcpy(dst, src, N);
    else std::memcpy(dst, src, static_cast<size_t>(n));
  }

  void fill_a(TileArgs& t, int64_t tile, int64_t r0, int rows, Scratch& s) const {
    const ConvInput& in = *taps.in;
    const int64_t c = in.channels;
    ConvTaps::Pos p = taps.pos(r0);
    for (int r = 0; r < rows; ++r, taps.next(p)) {
      const uint8_t* image = taps.x + p.img * in.height * in.width * c;
      const int64_t ix0 = p.ox * in.stride - in.padding;
      for (int dy = 0; dy < 3; ++dy) {
        const int64_t iy = p.oy * in.stride + dy - in.padding;
        uint8_t* dst = s.rows[r] + 3 * dy * c;
        if (iy < 0 || iy >= in.height) {
          std::memset(dst, taps.za_row[0], static_cast<size_t>(3 * c));
          continue;
        }
        const uint8_t* row = image + iy * in.width * c;
        if (ix0 >= 0 && ix0 + 2 < in.width) {  // the three taps of a kernel row are adjacent pixels
          copy_prefix<3 * kSmallCinMax>(dst, row + ix0 * c, 3 * c);
          continue;
        }
        for (int dx = 0; dx < 3; ++dx) {
          const int64_t ix = ix0 + dx;
          if (ix < 0 || ix >= in.width) std::memset(dst + dx * c, taps.za_row[0], static_cast<size_t>(c));
          else copy_prefix<kSmallCinMax>(dst + dx * c, row + ix * c, c);
        }
      }
    }
    for (int r = 0; r < kMaxMR; ++r) t.a[0][r] = s.rows[r < rows ? r : 0];
    t.a_version |= static_cast<uint64_t>(tile + 1) & 0xFFFFFFFFu;  // new bytes at the same addresses
  }
};

}  // namespace

std::unique_ptr<PackedB> pack_conv3x3(Isa isa, const void* w, DType w_type, int64_t out_channels,
                                      int64_t in_channels, const int32_t* w_zp, const int32_t* bias,
                                      const OutputStage& stage) {
  // B[(tap, c), o] = w[o, tap, c]: row stride 1, column stride 9*C.
  const BSource b{w, w_type, 1, 9 * in_channels};
  if (in_channels <= kSmallCinMax) return pack_b(isa, b, 1, 9 * in_channels, out_channels, w_zp, bias, stage);
  return pack_b(isa, b, 9, in_channels, out_channels, w_zp, bias, stage);
}

void conv3x3_packed(const PackedB& pb, const ConvInput& in, const void* x, DType x_type, int32_t x_zero_point,
                    void* out) {
  QK_REQUIRE(pb.k == 9 * in.channels, "conv3x3_packed: channel count differs from the weights");
  const int64_t oh = in.out_height(), ow = in.out_width();
  const int64_t esize = out_elem_size(pb.stage.out_dtype);
  std::vector<uint8_t> za_row(static_cast<size_t>(in.channels), static_cast<uint8_t>(x_zero_point));
  const uint8_t* xb = static_cast<const uint8_t*>(x);
  const ConvTaps taps{&in, xb, za_row.data(), xb + in.batch * in.height * in.width * in.channels, oh, ow};
  const OutRows outs{static_cast<char*>(out), pb.n * esize, esize};
  const int64_t m = in.batch * oh * ow;
  if (pb.taps == 1) {
    QK_REQUIRE(in.channels <= kSmallCinMax, "conv3x3_packed: weights packed for the small-C path");
    run_tiles(pb, x_type, m, x_zero_point, PatchRows{outs, taps});
  } else {
    run_tiles(pb, x_type, m, x_zero_point, TableRows{outs, taps});
  }
}

}  // namespace qk
