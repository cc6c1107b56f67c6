// conv3x3.cc: NHWC 3x3 convolution as an implicit GEMM: M = N*OH*OW, K = 9*C, N = O (docs/speed-design.md S8).
//
// Each tile of pixels (6, or 12 for O <= 32) gets a table of input-row pointers per tap; a tap outside
// the image points at a row of x_zero_point bytes (real 0). No im2col buffer: extra memory is one row.
// With C <= kSmallCinMax nine C-deep taps would be mostly tap overhead, so K is split into three taps of
// 3*C bytes (one kernel row each, contiguous in NHWC) instead; with C <= kPatchCinMax the tile's windows
// are copied into a patch of 9*C-byte rows and K is one tap.
#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#include "qkern/conv.h"
#include "qkern/tile_driver.h"

namespace qk {

namespace {

// Where each output pixel's taps are in the input.
struct ConvTaps {
  const ConvInput* in;
  const uint8_t* x;
  const uint8_t* za_row;  // 3 * in->channels bytes of x_zero_point
  int64_t oh, ow;
  int64_t row_bytes, image_bytes;  // of the input
  int64_t tap_offset[kMaxTaps];    // tap (dy, dx) from the window's top-left input pixel, in bytes

  ConvTaps(const ConvInput* input, const uint8_t* xb, const uint8_t* zeros)
      : in(input), x(xb), za_row(zeros), oh(input->out_height()), ow(input->out_width()),
        row_bytes(input->width * input->channels), image_bytes(input->height * row_bytes) {
    for (int tap = 0; tap < kMaxTaps; ++tap) tap_offset[tap] = (tap / 3) * row_bytes + (tap % 3) * in->channels;
  }

  // Output row `row` as (image, oy, ox). Kept in a task's scratch: the next tile of the task continues
  // from it by stepping ox, so only a task's first tile pays the divisions.
  struct Pos {
    int64_t row = -1, img = 0, oy = 0, ox = 0;
  };
  Pos seek(const Pos& cursor, int64_t row) const {
    if (cursor.row == row) return cursor;
    return {row, row / (oh * ow), row % (oh * ow) / ow, row % ow};
  }
  void next(Pos& p) const {
    ++p.row;
    if (++p.ox == ow) {
      p.ox = 0;
      if (++p.oy == oh) p.oy = 0, ++p.img;
    }
  }
  // Whether the n pixels from p are in one output row with every window inside the image; then pixel r's
  // window starts at p's corner + r * stride * C. The first and the last window suffice (ix0 grows with
  // ox), and the last one inside already implies p.ox + n <= ow, which skip() relies on.
  bool run_inside(const Pos& p, int64_t n) const {
    return p.ox + n <= ow && inside(p) && (p.ox + n - 1) * in->stride - in->padding + 2 < in->width;
  }
  // Steps p by n pixels within its output row (p.ox + n <= ow).
  void skip(Pos& p, int64_t n) const {
    p.row += n - 1, p.ox += n - 1;
    next(p);
  }
  // The window's top-left input pixel (may be outside) and whether the whole window is inside.
  int64_t iy0(const Pos& p) const { return p.oy * in->stride - in->padding; }
  int64_t ix0(const Pos& p) const { return p.ox * in->stride - in->padding; }
  bool inside(const Pos& p) const {
    return iy0(p) >= 0 && iy0(p) + 2 < in->height && ix0(p) >= 0 && ix0(p) + 2 < in->width;
  }
  const uint8_t* corner(const Pos& p) const {
    return x + p.img * image_bytes + iy0(p) * row_bytes + ix0(p) * in->channels;
  }

  // The nine tap pointers of a pixel; returns the mask of taps in the padding (pointing at za_row).
  uint32_t taps_of(const Pos& p, const uint8_t* ptrs[kMaxTaps]) const {
    if (inside(p)) {  // most pixels: nine fixed offsets, no per-tap bounds checks
      const uint8_t* c = corner(p);
      for (int tap = 0; tap < kMaxTaps; ++tap) ptrs[tap] = c + tap_offset[tap];
      return 0;
    }
    const uint8_t* image = x + p.img * image_bytes;
    uint32_t padded = 0;
    for (int dy = 0; dy < 3; ++dy) {
      const int64_t iy = iy0(p) + dy;
      for (int dx = 0; dx < 3; ++dx) {
        const int64_t ix = ix0(p) + dx;
        const bool in_image = iy >= 0 && iy < in->height && ix >= 0 && ix < in->width;
        ptrs[dy * 3 + dx] = in_image ? image + iy * row_bytes + ix * in->channels : za_row;
        if (!in_image) padded |= 1u << (dy * 3 + dx);
      }
    }
    return padded;
  }
};

struct OutRows {
  char* out;
  int64_t row_bytes, esize;
  template <class Scratch>
  void fill_c(TileArgs& t, int64_t r0, int rows, const Scratch&) const {
    for (int r = 0; r < rows; ++r) t.c[r] = out + (r0 + r) * row_bytes + t.col0 * esize;
  }
};

// Nine taps read in place.
struct TableRows : OutRows {
  struct Scratch {
    ConvTaps::Pos cursor;
  };
  ConvTaps taps;
  bool wide = false;  // taps reads widened_input's int16 copy (TileArgs::a_wide)
  uint32_t fill_a(TileArgs& t, int64_t, int64_t r0, int rows, Scratch& s) const {
    t.a_wide = wide;
    const uint8_t* ptrs[kMaxTaps];
    ConvTaps::Pos p = taps.seek(s.cursor, r0);
    if (taps.run_inside(p, rows)) {  // most tiles: nine fixed offsets from pointers in steps
      const uint8_t* corner = taps.corner(p);
      const int64_t step = taps.in->stride * taps.in->channels;
      for (int r = 0; r < rows; ++r, corner += step)
        for (int tap = 0; tap < kMaxTaps; ++tap) t.a[tap][r] = corner + taps.tap_offset[tap];
      taps.skip(p, rows);
      s.cursor = p;
      return 0;
    }
    uint32_t all_padded = ~0u;
    for (int r = 0; r < rows; ++r, taps.next(p)) {
      all_padded &= taps.taps_of(p, ptrs);
      for (int tap = 0; tap < kMaxTaps; ++tap) t.a[tap][r] = ptrs[tap];
    }
    s.cursor = p;
    return all_padded;
  }
};

// Three taps, one per kernel row: the 3*C bytes of a kernel row are three adjacent input pixels, so they
// are read in place. Only a kernel row that crosses the left or right border is assembled, in the tile's
// scratch, from its pixels and x_zero_point bytes; a kernel row above or below the image is the za_row.
struct KernelRowTaps : OutRows {
  struct Scratch {
    alignas(64) uint8_t rows[kMaxMR][3][3 * kSmallCinMax];
    ConvTaps::Pos cursor;
  };
  ConvTaps taps;
  bool wide = false;  // taps reads widened_input's int16 copy (TileArgs::a_wide); every window is inside

  uint32_t fill_a(TileArgs& t, int64_t tile, int64_t r0, int rows, Scratch& s) const {
    t.a_wide = wide;
    const ConvInput& in = *taps.in;
    const int64_t c = in.channels;
    bool scratch_used = false;
    uint32_t all_padded = ~0u;  // kernel rows above or below the image in every row of the tile
    ConvTaps::Pos p = taps.seek(s.cursor, r0);
    if (taps.run_inside(p, rows)) {  // most tiles: pointers in steps, no per-pixel bounds checks
      const uint8_t* corner = taps.corner(p);
      const int64_t step = in.stride * c, rb = taps.row_bytes;
      for (int r = 0; r < rows; ++r, corner += step) {
        t.a[0][r] = corner;
        t.a[1][r] = corner + rb;
        t.a[2][r] = corner + 2 * rb;
      }
      taps.skip(p, rows);
      s.cursor = p;
      return 0;
    }
    for (int r = 0; r < rows; ++r, taps.next(p)) {
      if (taps.inside(p)) {  // most pixels
        const uint8_t* corner = taps.corner(p);
        t.a[0][r] = corner;
        t.a[1][r] = corner + taps.row_bytes;
        t.a[2][r] = corner + 2 * taps.row_bytes;
        all_padded = 0;
        continue;
      }
      uint32_t padded = 0;
      const uint8_t* image = taps.x + p.img * taps.image_bytes;
      const int64_t ix0 = taps.ix0(p);
      const bool x_inside = ix0 >= 0 && ix0 + 2 < in.width;
      for (int dy = 0; dy < 3; ++dy) {
        const int64_t iy = taps.iy0(p) + dy;
        if (iy < 0 || iy >= in.height) {
          t.a[dy][r] = taps.za_row;
          padded |= 1u << dy;
          continue;
        }
        const uint8_t* row = image + iy * taps.row_bytes;
        if (x_inside) {
          t.a[dy][r] = row + ix0 * c;
          continue;
        }
        uint8_t* dst = s.rows[r][dy];
        for (int dx = 0; dx < 3; ++dx) {
          const int64_t ix = ix0 + dx;
          if (ix < 0 || ix >= in.width) std::memset(dst + dx * c, taps.za_row[0], static_cast<size_t>(c));
          else std::memcpy(dst + dx * c, row + ix * c, static_cast<size_t>(c));
        }
        t.a[dy][r] = dst;
        scratch_used = true;
      }
      all_padded &= padded;
    }
    s.cursor = p;
    if (scratch_used) t.a_version |= static_cast<uint64_t>(tile + 1) & 0xFFFFFFFFu;  // new bytes, same address
    return all_padded;
  }
};

// One tap of 9*C bytes per pixel (C <= kPatchCinMax), assembled in the tile's scratch: the three kernel
// rows of a window inside the image are three copies of 3*C bytes (constant sizes: C is a template
// argument), a window crossing the border is assembled pixel by pixel with x_zero_point bytes. Kernels that
// multiply A as int16 compute first layers themselves instead (KernelInfo::first_layer).
template <int C>
struct PatchRows : OutRows {
  static constexpr int kK = 9 * C;
  struct Scratch {
    static_assert(9 * kPatchCinMax <= 64, "a patch row is one cache line");
    alignas(64) uint8_t rows[kMaxMR][64];
    ConvTaps::Pos cursor;
  };
  ConvTaps taps;

  // The window's 9*C bytes of one pixel: element k of kernel row k / (3C) at k % (3C).
  void window_bytes(const ConvTaps::Pos& p, uint8_t* dst) const {
    const ConvInput& in = *taps.in;
    if (taps.inside(p)) {
      const uint8_t* corner = taps.corner(p);
      std::memcpy(dst, corner, 3 * C);
      std::memcpy(dst + 3 * C, corner + taps.row_bytes, 3 * C);
      std::memcpy(dst + 6 * C, corner + 2 * taps.row_bytes, 3 * C);
      return;
    }
    const uint8_t* image = taps.x + p.img * taps.image_bytes;
    for (int dy = 0; dy < 3; ++dy) {
      const int64_t iy = taps.iy0(p) + dy;
      for (int dx = 0; dx < 3; ++dx) {
        const int64_t ix = taps.ix0(p) + dx;
        uint8_t* d = dst + (dy * 3 + dx) * C;
        if (iy < 0 || iy >= in.height || ix < 0 || ix >= in.width) std::memset(d, taps.za_row[0], C);
        else std::memcpy(d, image + iy * taps.row_bytes + ix * C, C);
      }
    }
  }

  uint32_t fill_a(TileArgs& t, int64_t tile, int64_t r0, int rows, Scratch& s) const {
    ConvTaps::Pos p = taps.seek(s.cursor, r0);
    for (int r = 0; r < rows; ++r, taps.next(p)) {
      t.a[0][r] = s.rows[r];
      window_bytes(p, s.rows[r]);
    }
    s.cursor = p;
    t.a_version |= static_cast<uint64_t>(tile + 1) & 0xFFFFFFFFu;  // new bytes, same address
    return 0;  // one tap: nothing to skip
  }
};

// A first layer on a kernel that computes it (KernelInfo::first_layer): blocks of output rows on the pool.
void run_first_layer(const PackedB& pb, const ConvInput& in, const uint8_t* x, DType x_type, int32_t x_zero_point,
                     void* out, const uint32_t* sums) {
  QK_REQUIRE(!pb.kernel->flip_s8_a && pb.stage.mode != RequantMode::kFloat,
             "conv3x3_packed: a first-layer kernel reads A unflipped and stores integers");
  const auto bias = pb.effective_bias(x_zero_point);
  FirstLayerArgs a{&pb, x, x_type == DType::kInt8, x_zero_point, in.height, in.width, in.channels,
                   in.out_height(), in.out_width(), in.stride, in.padding, bias->values.data(), sums,
                   static_cast<char*>(out)};
  const FirstLayerFn kernel = pb.kernel->first_layer;
  const int64_t rows = in.batch * a.out_height, m = rows * a.out_width;
  const int64_t tasks = std::min(rows, get_num_threads() * kFirstLayerTasksPerThread);
  if (tasks < 2 || m * (pb.n * pb.k + kRowCostMacs) < kParallelMacs) return kernel(a, 0, rows);
  parallel_for(tasks, [&](int64_t b) { kernel(a, b * rows / tasks, (b + 1) * rows / tasks); });
}

template <int C>
void run_patch_tiles(const PackedB& pb, DType x_type, int64_t m, int32_t x_zero_point, const OutRows& outs,
                     const ConvTaps& taps, const uint32_t* sums) {
  QK_REQUIRE(!pb.kernel->a_int16, "conv3x3_packed: a kernel that multiplies A as int16 must compute first layers");
  run_tiles(pb, x_type, m, x_zero_point, PatchRows<C>{outs, taps}, sums);
}

// Eq. (7)'s row sums of every output pixel, for a weight zero point (run_tiles' tap_sums): each input
// pixel's byte sum once (row_byte_sums), then per output pixel the nine of its window, a padding pixel
// counting as C bytes of x_zero_point (za_row). Each input pixel is in up to nine windows; tiles summing
// their own taps (a psadbw call per tap and row) made the whole conv 1.06-1.39x slower for C = 8-64.
std::vector<uint32_t> window_sums(const KernelInfo& kernel, const ConvInput& in, const uint8_t* x, bool x_signed,
                                  const uint8_t* za_row) {
  const int64_t h = in.height, w = in.width, oh = in.out_height(), ow = in.out_width();
  const int64_t stride = in.stride, pad = in.padding;
  const std::vector<uint32_t> pixel = row_byte_sums(kernel, x_signed, x, in.batch * h * w, in.channels);
  uint32_t pad_sum = 0;
  byte_sums(kernel, za_row, 1, 0, in.channels, byte_sum_flip(x_signed), &pad_sum);
  // Output columns whose window is inside the image horizontally: [ox_in, ox_out).
  const int64_t ox_in = std::min(ow, (pad + stride - 1) / stride);
  const int64_t ox_out = std::max(ox_in, std::min(ow, w - 3 + pad >= 0 ? (w - 3 + pad) / stride + 1 : 0));
  std::vector<uint32_t> sums(static_cast<size_t>(in.batch * oh * ow));
  const auto out_row = [&](int64_t row) {  // row = image * oh + oy
    const int64_t img = row / oh, oy = row % oh;
    uint32_t* out = sums.data() + row * ow;
    for (int64_t ox = 0; ox < ow; ++ox) out[ox] = 0;
    for (int64_t iy = oy * stride - pad; iy < oy * stride - pad + 3; ++iy) {
      if (iy < 0 || iy >= h) {
        for (int64_t ox = 0; ox < ow; ++ox) out[ox] += 3 * pad_sum;
        continue;
      }
      const uint32_t* px = pixel.data() + (img * h + iy) * w;
      const auto border = [&](int64_t ox) {
        uint32_t s = 0;
        for (int64_t ix = ox * stride - pad; ix < ox * stride - pad + 3; ++ix) s += ix >= 0 && ix < w ? px[ix] : pad_sum;
        return s;
      };
      for (int64_t ox = 0; ox < ox_in; ++ox) out[ox] += border(ox);
      for (int64_t ox = ox_in; ox < ox_out; ++ox) {
        const uint32_t* q = px + ox * stride - pad;
        out[ox] += q[0] + q[1] + q[2];
      }
      for (int64_t ox = ox_out; ox < ow; ++ox) out[ox] += border(ox);
    }
  };
  // Blocks of output rows on the pool once there are enough of them.
  const int64_t rows = in.batch * oh, rows_per_block = std::max<int64_t>(1, 4096 / std::max<int64_t>(ow, 1));
  const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
  const auto run_block = [&](int64_t b) {
    for (int64_t row = b * rows_per_block; row < std::min(rows, (b + 1) * rows_per_block); ++row) out_row(row);
  };
  if (blocks > 1) parallel_for(blocks, run_block);
  else if (blocks == 1) run_block(0);
  return sums;
}

// The input with its one-pixel border made real: x_zero_point bytes around each image, so that a padding-1
// conv becomes a padding-0 conv on it with every window inside the image (same outputs: a padding tap
// reads x_zero_point either way).
std::vector<uint8_t> with_border(const ConvInput& in, const uint8_t* x, uint8_t za) {
  const int64_t c = in.channels, row = in.width * c, prow = (in.width + 2) * c, ph = in.height + 2;
  std::vector<uint8_t> padded(static_cast<size_t>(in.batch * ph * prow));
  const auto fill_image = [&](int64_t img) {
    uint8_t* dst = padded.data() + img * ph * prow;
    const uint8_t* src = x + img * in.height * row;
    std::memset(dst, za, static_cast<size_t>(prow));
    for (int64_t y = 0; y < in.height; ++y) {
      uint8_t* d = dst + (y + 1) * prow;
      std::memset(d, za, static_cast<size_t>(c));
      std::memcpy(d + c, src + y * row, static_cast<size_t>(row));
      std::memset(d + c + row, za, static_cast<size_t>(c));
    }
    std::memset(dst + (ph - 1) * prow, za, static_cast<size_t>(prow));
  };
  if (in.batch > 1 && in.batch * ph * prow >= kRowSumBlockBytes) parallel_for(in.batch, fill_image);
  else for (int64_t img = 0; img < in.batch; ++img) fill_image(img);
  return padded;
}

// The input as the int16 kernels (KernelInfo::a_int16) multiply it, for their in-place reads, with its
// padding made real (`border` pixels of x_zero_point around each image, as with_border does for bytes):
// each byte is widened once per call instead of once per tile and tap (consecutive windows overlap, so a
// tile's kernel rows span up to 3x its own pixels' bytes at stride 1). 32 zero elements follow, for
// kernels that read K in runs of 16 past a row's end. Elements are int8 or uint8 values as int16.
std::unique_ptr<int16_t[]> widened_input(const ConvInput& in, const uint8_t* x, bool is_signed, uint8_t za,
                                         int64_t border) {
  const int64_t c = in.channels, row = in.width * c, wrow = (in.width + 2 * border) * c;
  const int64_t wh = in.height + 2 * border, image = wh * wrow, total = in.batch * image;
  std::unique_ptr<int16_t[]> wide(new int16_t[static_cast<size_t>(total + 32)]);
  const int16_t zero = is_signed ? static_cast<int8_t>(za) : za;
  const auto widen = [is_signed](const uint8_t* src, int64_t n, int16_t* dst) {
    if (is_signed)
      for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<int8_t>(src[i]);
    else
      for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  };
  // Row r of the copy (image r / wh, padded row r % wh): border rows are all x_zero_point.
  const auto widen_row = [&](int64_t r) {
    int16_t* d = wide.get() + r * wrow;
    const int64_t y = r % wh - border;
    if (y < 0 || y >= in.height) return std::fill(d, d + wrow, zero);
    std::fill(d, d + border * c, zero);
    widen(x + (r / wh * in.height + y) * row, row, d + border * c);
    std::fill(d + border * c + row, d + wrow, zero);
  };
  // Blocks of rows on the pool once the copy is large enough (a single large image included).
  const int64_t rows = in.batch * wh, rows_per_block = std::max<int64_t>(1, kRowSumBlockBytes / (2 * wrow));
  const int64_t blocks = (rows + rows_per_block - 1) / rows_per_block;
  const auto widen_block = [&](int64_t b) {
    for (int64_t r = b * rows_per_block; r < std::min(rows, (b + 1) * rows_per_block); ++r) widen_row(r);
  };
  if (blocks > 1) parallel_for(blocks, widen_block);
  else if (blocks == 1) widen_block(0);
  std::fill(wide.get() + total, wide.get() + total + 32, int16_t{0});
  return wide;
}

}  // namespace

std::unique_ptr<PackedB> pack_conv3x3(Isa isa, const void* w, DType w_type, int64_t out_channels,
                                      int64_t in_channels, const int32_t* w_zp, const int32_t* bias,
                                      const OutputStage& stage, int a_bits) {
  // B[(tap, c), o] = w[o, tap, c]: row stride 1, column stride 9*C.
  const BSource b{w, w_type, 1, 9 * in_channels};
  const int taps = in_channels <= kPatchCinMax ? 1 : in_channels <= kSmallCinMax ? 3 : 9;
  // A first layer is packed for the 8-bit kernels: an int16 kernel computes it from its own widened bands
  // (KernelInfo::first_layer), where the 7-bit kernels would read a byte patch, which costs more than their
  // arithmetic saves.
  if (taps == 1) a_bits = 8;
  return pack_b(isa, b, taps, 9 * in_channels / taps, out_channels, w_zp, bias, stage, a_bits);
}

void conv3x3_packed(const PackedB& pb, const ConvInput& in, const void* x, DType x_type, int32_t x_zero_point,
                    void* out) {
  QK_REQUIRE(pb.k == 9 * in.channels, "conv3x3_packed: channel count differs from the weights");
  const uint8_t* xb = static_cast<const uint8_t*>(x);
  // A first layer on a kernel that computes it: the kernel makes the padding real in its own widened bands.
  if (pb.taps == 1 && pb.kernel->first_layer && in.channels > 0) {
    std::vector<uint32_t> sums;
    if (pb.has_zb) {
      const std::vector<uint8_t> za_row(static_cast<size_t>(3 * in.channels), static_cast<uint8_t>(x_zero_point));
      sums = window_sums(*pb.kernel, in, xb, x_type == DType::kInt8, za_row.data());
    }
    return run_first_layer(pb, in, xb, x_type, x_zero_point, out, pb.has_zb ? sums.data() : nullptr);
  }
  // On the int16 kernels, narrow images and few-channel stride-1 convs: the taps walk a widened copy of the
  // input with a real border (widened_input), whose pixels are 2*C bytes, and the kernel reads its rows in place.
  const int64_t wide_bytes =
      2 * in.batch * (in.height + 2 * in.padding) * (in.width + 2 * in.padding) * in.channels;
  const bool wide = pb.kernel->a_int16 && pb.taps != 1 && in.channels > 0 && wide_bytes <= kWideInputMaxBytes &&
                    (in.width <= kBorderCopyMaxWidth || (in.stride == 1 && in.channels <= kWideInputMaxCin));
  if (in.padding == 1 && in.width <= kBorderCopyMaxWidth && in.channels > 0 && !wide) {
    const std::vector<uint8_t> padded = with_border(in, xb, static_cast<uint8_t>(x_zero_point));
    const ConvInput inner{in.batch, in.height + 2, in.width + 2, in.channels, in.stride, 0};
    return conv3x3_packed(pb, inner, padded.data(), x_type, x_zero_point, out);
  }
  const int64_t oh = in.out_height(), ow = in.out_width();
  const int64_t esize = out_elem_size(pb.stage.out_dtype);
  // One kernel row (3*C bytes) of x_zero_point: the padding tap of the kernel-row and nine-tap paths.
  std::vector<uint8_t> za_row(static_cast<size_t>(3 * in.channels), static_cast<uint8_t>(x_zero_point));
  const ConvTaps taps(&in, xb, za_row.data());
  const OutRows outs{static_cast<char*>(out), pb.n * esize, esize};
  const int64_t m = in.batch * oh * ow;
  // C = 0 makes K = 0: every output is the stage applied to the bias alone, a GEMM whose A has no columns.
  if (in.channels == 0) return gemm_packed(pb, x, x_type, m, 0, x_zero_point, out, pb.n);
  // With a weight zero point, row sums from the input's pixel sums (window_sums), except on the patch path
  // with stride 2 (a first layer): four input pixels per output pixel there, against one call over the
  // 9*C <= 54 patch bytes per tile row. One core, against the tiles' own sums: 224x224x3->64 s2 0.90x;
  // patch path s1 C = 4, 6 1.07x; C = 8 1.26-1.39x, 16 1.19-1.25x, 32 1.15x, 64 s2 1.06x.
  std::vector<uint32_t> tap_sums;
  if (pb.has_zb && (pb.taps != 1 || in.stride == 1)) tap_sums = window_sums(*pb.kernel, in, xb, x_type == DType::kInt8, za_row.data());
  const uint32_t* sums = tap_sums.empty() ? nullptr : tap_sums.data();
  if (pb.taps == 1) {
    switch (in.channels) {
      case 1: return run_patch_tiles<1>(pb, x_type, m, x_zero_point, outs, taps, sums);
      case 2: return run_patch_tiles<2>(pb, x_type, m, x_zero_point, outs, taps, sums);
      case 3: return run_patch_tiles<3>(pb, x_type, m, x_zero_point, outs, taps, sums);
      case 4: return run_patch_tiles<4>(pb, x_type, m, x_zero_point, outs, taps, sums);
      case 5: return run_patch_tiles<5>(pb, x_type, m, x_zero_point, outs, taps, sums);
      case 6: return run_patch_tiles<6>(pb, x_type, m, x_zero_point, outs, taps, sums);
      default: QK_REQUIRE(false, "conv3x3_packed: weights packed for the patch path (C <= kPatchCinMax)");
    }
  }
  QK_REQUIRE(pb.taps == 9 || in.channels <= kSmallCinMax, "conv3x3_packed: weights packed for the small-C path");
  if (wide) {
    const std::unique_ptr<int16_t[]> wx = widened_input(in, xb, x_type == DType::kInt8,
                                                        static_cast<uint8_t>(x_zero_point), in.padding);
    const ConvInput wide_in{in.batch, in.height + 2 * in.padding, in.width + 2 * in.padding, 2 * in.channels,
                            in.stride, 0};
    const ConvTaps wide_taps(&wide_in, reinterpret_cast<const uint8_t*>(wx.get()), nullptr);
    if (pb.taps == 3) return run_tiles(pb, x_type, m, x_zero_point, KernelRowTaps{outs, wide_taps, true}, sums);
    return run_tiles(pb, x_type, m, x_zero_point, TableRows{outs, wide_taps, true}, sums);
  }
  if (pb.taps == 3) run_tiles(pb, x_type, m, x_zero_point, KernelRowTaps{outs, taps}, sums);
  else run_tiles(pb, x_type, m, x_zero_point, TableRows{outs, taps}, sums);
}

}  // namespace qk
