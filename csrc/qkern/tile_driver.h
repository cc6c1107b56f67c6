// tile_driver.h: the tiling and threading loop shared by the GEMM, conv3x3 and deconv2x2 drivers.
//
// A driver supplies a row map: which bytes of A feed each tile row (per tap) and where each output row
// goes. Everything else (zero-point folding, blocking, the static thread partition) lives here once.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "qkern/gemm.h"
#include "qkern/kernel_list.h"
#include "qkern/scalar_common.h"
#include "qkern/threadpool.h"
#include "qkern/tuning.h"

namespace qk {

// A process-wide counter: distinct for every driver call.
uint64_t next_call_id();


// Removes from t the taps in `skipped` (taps that are padding in every row of the tile: they would add
// za' * tapsum to every row, which the caller adds to the tile's bias instead); t.taps and t.tap_b (into
// `kept_taps`) then describe the rest. A tile of the top output row skips its kernel row above the image.
inline void drop_taps(TileArgs& t, int taps, int nrows, uint32_t skipped, uint8_t kept_taps[kMaxTaps]) {
  int kept = 0;
  for (int tap = 0; tap < taps; ++tap) {
    if (skipped >> tap & 1u) continue;
    if (kept != tap)
      for (int r = 0; r < nrows; ++r) t.a[kept][r] = t.a[tap][r];
    kept_taps[kept++] = static_cast<uint8_t>(tap);
  }
  t.taps = kept;
  t.tap_b = kept_taps;
}

// How row sums read A's bytes (eq. (7)): u8 as is, s8 biased by 128 (the driver adds the -128*K back when
// the kernel reads s8 unflipped).
inline uint8_t byte_sum_flip(bool a_signed) { return a_signed ? 0x80 : 0; }
// The row sums of the kernel that packed B (its byte_sums: psadbw; summing byte by byte took as long as the
// tile itself on a 64-channel conv), except rows of 1-15 bytes, added byte by byte.
void byte_sums(const KernelInfo& kernel, const uint8_t* p, int64_t rows, int64_t stride, int64_t n, uint8_t flip, uint32_t* out);
// byte_sums with byte_sum_flip(a_signed) of `count` rows of `len` bytes, row i at p + i*len, on the pool: a
// conv's per-pixel sums, from which each tile row's sum is nine additions.
std::vector<uint32_t> row_byte_sums(const KernelInfo& kernel, bool a_signed, const uint8_t* p, int64_t count, int64_t len);

// Adds to sums[r] the byte sums of one tap's tile rows, in one batched call: without tap_sums the row
// maps' rows are evenly spaced (GEMM and deconv rows, a byte patch's rows), which is checked.
inline void add_tap_sums(const KernelInfo& kernel, const uint8_t* const* rows, int nrows, int64_t len, bool a_signed,
                         uint32_t* sums) {
  const auto at = [&](int r) { return reinterpret_cast<uintptr_t>(rows[r]); };
  const uintptr_t step = nrows > 1 ? at(1) - at(0) : 0;
  bool even = true;
  for (int r = 2; r < nrows; ++r) even = even && at(r) - at(r - 1) == step;
  QK_REQUIRE(even, "run_tiles: row sums need evenly spaced rows or tap_sums");
  uint32_t part[kMaxMR];
  byte_sums(kernel, rows[0], nrows, static_cast<int64_t>(static_cast<intptr_t>(step)), len, byte_sum_flip(a_signed), part);
  for (int r = 0; r < nrows; ++r) sums[r] += part[r];
}

// RowMap provides
//   struct Scratch;  (per task, e.g. an im2col tile buffer)
//   uint32_t fill_a(TileArgs& t, int64_t tile, int64_t r0, int rows, Scratch& s) const;
//     sets t.a[tap][r] for tap < taps, r < rows (kernels read only the tile's rows); may refine t.a_version;
//     returns the taps that point at x_zero_point bytes in every row (0 if none, or no padding)
//   void fill_c(TileArgs& t, int64_t r0, int rows, const Scratch& s) const;
//     sets t.c[r] (column t.col0, r < rows) and, for a split store, t.split and t.c2[r]; called once per panel, so
//     anything per row (divisions) belongs in fill_a's scratch
// tap_sums (optional, m entries): each row's sum over taps of byte sums (byte_sum_flip, wrapping), made by
// the caller when that is cheaper (a conv: from per-pixel sums); null: each tile sums its own rows.
// forced (tests only): this row of kernels.inc instead of the shape's choice; it must read pb's panels.
template <class RowMap>
void run_tiles(const PackedB& pb, DType a_type, int64_t m, int32_t a_zero_point, const RowMap& rows,
               const uint32_t* tap_sums = nullptr, const KernelInfo* forced = nullptr) {
  QK_REQUIRE(pb.kernel != nullptr, "run_tiles: weights packed for the scalar driver");
  const KernelInfo& info = forced ? *forced : tile_kernel_for(pb, pb.n);
  QK_REQUIRE(info.pack == pb.kernel->pack, "run_tiles: the kernel does not read these packed panels");
  QK_REQUIRE(info.max_n == 0 || pb.n <= info.max_n, "run_tiles: the output is wider than the kernel computes");
  const TileKernel kernel = info.tile;
  QK_REQUIRE(pb.nr <= kMaxNR && pb.taps <= kMaxTaps, "packed panels wider than a tile");
  QK_REQUIRE(static_cast<int>(info.isa) <= static_cast<int>(available_isas().front()),
             "weights were packed for an ISA this CPU cannot run");
  QK_REQUIRE(info.a_bits == 8 || a_type == DType::kUint8, "weights packed for 7-bit activations need uint8 A");
  const auto u32 = [](int32_t v) { return static_cast<uint32_t>(v); };
  const bool a_signed = a_type == DType::kInt8;
  const bool flip_a = info.flip_s8_a && a_signed;
  const int32_t za = a_zero_point + (flip_a ? 128 : 0);
  const int64_t cols = pb.columns();
  const auto effective_bias = pb.effective_bias(za);
  const std::vector<int32_t>& bias_eff = effective_bias->values;
  const int mr = info.mr;
  const int64_t m_tiles = (m + mr - 1) / mr;
  const int64_t panel_bytes = std::max<int64_t>(pb.kp * pb.nr * info.elem_bytes, 1);
  // Blocks of m-tiles times blocks of panels that fit the L2 budget; in a task the m-tile loop runs
  // outside the panel loop, so a tile's rows are prepared (a kernel's widening) once per block of panels.
  // Small M: all rows in one block and the panels in kSmallMTasksPerThread blocks per thread (threads split
  // N: B is read once; the rows too if the panels do not divide among the threads).
  const int64_t threads = get_num_threads();
  const bool small_m = m_tiles <= kMaxTilesPerTask;
  const int64_t l2_blocks = (pb.panels * panel_bytes + kL2BlockBytes - 1) / kL2BlockBytes;
  const int64_t n_blocks =
      small_m ? std::min(pb.panels, (std::max(l2_blocks, threads * kSmallMTasksPerThread) + threads - 1) / threads * threads)
              : (pb.panels + std::max<int64_t>(1, kL2BlockBytes / panel_bytes) - 1) /
                    std::max<int64_t>(1, kL2BlockBytes / panel_bytes);
  // Blocks of at most kMaxTilesPerTask m-tiles. The task count is then rounded up to a multiple of the thread count:
  // 17 equal tasks on 2 threads are 9 + 8, one thread alone for the last ninth of the call.
  int64_t m_blocks = small_m ? 1 : (m_tiles + kMaxTilesPerTask - 1) / kMaxTilesPerTask;
  while (m_blocks < m_tiles && (m_blocks * n_blocks) % threads != 0 && m_blocks * n_blocks > 1) ++m_blocks;
  // Block b of n covers [b*count/n, (b+1)*count/n): sizes differ by at most one (4 panels that fit 3 at a
  // time run as 2 + 2, not 3 + 1).
  const auto block_begin = [](int64_t b, int64_t count, int64_t blocks) { return b * count / blocks; };
  const uint64_t version = next_call_id() << 32;

  auto run_task = [&](int64_t task) {
    const int64_t mb = task / n_blocks, nb = task % n_blocks;
    const int64_t t_begin = block_begin(mb, m_tiles, m_blocks), t_end = block_begin(mb + 1, m_tiles, m_blocks);
    const int64_t p_begin = block_begin(nb, pb.panels, n_blocks), p_end = block_begin(nb + 1, pb.panels, n_blocks);
    typename RowMap::Scratch scratch;
    TileArgs t;
    t.taps = pb.taps;
    uint8_t kept_taps[kMaxTaps];
    alignas(64) int32_t tile_bias[kMaxNR];
    t.tap_k = pb.tap_k;
    t.tap_kp = pb.tap_kp;
    t.stage = &pb.stage;
    t.a_signed = a_signed;
    for (int64_t tile = t_begin; tile < t_end; ++tile) {
      const int64_t r0 = tile * mr;
      const int nrows = static_cast<int>(std::min<int64_t>(mr, m - r0));
      t.a_version = version;
      const uint32_t skipped = rows.fill_a(t, tile, r0, nrows, scratch);
      // Row sums of A as the kernel reads it: u8 as is, s8 + 128 when flipped, s8 otherwise.
      if (pb.has_zb) {
        const uint32_t base = a_signed && !flip_a ? 0u - u32(128) * u32(static_cast<int32_t>(pb.k)) : 0u;
        uint32_t sums[kMaxMR] = {};
        if (tap_sums)
          for (int r = 0; r < nrows; ++r) sums[r] = tap_sums[r0 + r];
        else
          for (int tap = 0; tap < pb.taps; ++tap) add_tap_sums(info, t.a[tap], nrows, pb.tap_k, a_signed, sums);
        for (int r = 0; r < nrows; ++r) t.rowsum[r] = static_cast<int32_t>(base + sums[r]);
      }
      t.taps = pb.taps;
      t.tap_b = kAllTaps;
      if (skipped) drop_taps(t, pb.taps, nrows, skipped, kept_taps);
      for (int64_t p = p_begin; p < p_end; ++p) {
        t.col0 = p * pb.nr;
        t.nc = static_cast<int>(std::min<int64_t>(pb.nr, pb.n - t.col0));
        t.b = pb.data.data() + p * panel_bytes;
        t.bias_eff = bias_eff.data() + t.col0;
        if (skipped) {  // the dropped taps' products with the padding bytes: za' * tapsum (wrapping)
          for (int64_t j = 0; j < pb.nr; ++j) {
            uint32_t v = u32(t.bias_eff[j]);
            for (int tap = 0; tap < pb.taps; ++tap)
              if (skipped >> tap & 1u) v += u32(za) * u32(pb.tapsum[tap * cols + t.col0 + j]);
            tile_bias[j] = static_cast<int32_t>(v);
          }
          t.bias_eff = tile_bias;
        }
        t.zb = pb.has_zb ? pb.zb.data() + t.col0 : nullptr;
        t.split = std::numeric_limits<int64_t>::max();
        rows.fill_c(t, r0, nrows, scratch);
        kernel(t, nrows);
      }
    }
  };
  const int64_t tasks = m_blocks * n_blocks;
  if (m * (pb.n * pb.k + kRowCostMacs) >= kParallelMacs) parallel_for(tasks, run_task);
  else for (int64_t task = 0; task < tasks; ++task) run_task(task);
}

}  // namespace qk
