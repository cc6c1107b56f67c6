// gemm.cc: weight packing (shared by every op) and the GEMM driver. No ISA-specific code here: kernels
// come from kernels.inc, the tiling and threads from tile_driver.h.
#include "qkern/gemm.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "qkern/kernel_list.h"
#include "qkern/ops.h"
#include "qkern/scalar_common.h"
#include "qkern/threadpool.h"
#include "qkern/tile_driver.h"
#include "qkern/tuning.h"

namespace qk {

namespace {

inline uint32_t u32(int32_t v) { return static_cast<uint32_t>(v); }

// GEMM rows: A row r at a + r*lda, C row r at c + r*ldc. The float output form also hands each tile its
// rows' activation scales and (row_zp non-null) zero points.
struct GemmRows {
  struct Scratch {};
  const uint8_t* a;
  int64_t lda;
  char* c;
  int64_t ldc_bytes, esize;
  const float* row_scale = nullptr;
  const int32_t* row_zp = nullptr;
  // Columns >= split go to c2 (row stride ldc2_bytes, its first column is column `split`): the split store.
  int64_t split = std::numeric_limits<int64_t>::max();
  char* c2 = nullptr;
  int64_t ldc2_bytes = 0;
  uint32_t fill_a(TileArgs& t, int64_t, int64_t r0, int rows, Scratch&) const {
    for (int r = 0; r < rows; ++r) t.a[0][r] = a + (r0 + r) * lda;
    t.row_zp = row_zp != nullptr;
    // Copied as bytes: no float instruction of this file's (non-VEX) target between the AVX tiles.
    if (row_scale) std::memcpy(t.a_scale, row_scale + r0, static_cast<size_t>(rows) * sizeof(float));
    if (row_zp) std::memcpy(t.a_zp, row_zp + r0, static_cast<size_t>(rows) * sizeof(int32_t));
    return 0;
  }
  void fill_c(TileArgs& t, int64_t r0, int rows, const Scratch&) const {
    for (int r = 0; r < rows; ++r) t.c[r] = c + (r0 + r) * ldc_bytes + t.col0 * esize;
    if (!c2) return;
    t.split = split;
    for (int r = 0; r < rows; ++r) t.c2[r] = c2 + (r0 + r) * ldc2_bytes + std::max<int64_t>(t.col0 - split, 0) * esize;
  }
};

}  // namespace

namespace {

// A first layer's pixels (C <= 15): bytes added one by one (the count a constant, so the loop unrolls) beat
// a masked vector load and its reduction per pixel.
template <int kN>
void byte_sums_small(const uint8_t* p, int64_t rows, int64_t stride, uint8_t flip, uint32_t* __restrict out) {
  for (int64_t r = 0; r < rows; ++r, p += stride) {
    uint32_t s = 0;
    for (int j = 0; j < kN; ++j) s += static_cast<uint8_t>(p[j] ^ flip);
    out[r] = s;
  }
}

}  // namespace

void byte_sums(const KernelInfo& kernel, const uint8_t* p, int64_t rows, int64_t stride, int64_t n, uint8_t flip,
               uint32_t* out) {
  switch (n) {
#define QK_SMALL(N) \
  case N: return byte_sums_small<N>(p, rows, stride, flip, out);
    QK_SMALL(1) QK_SMALL(2) QK_SMALL(3) QK_SMALL(4) QK_SMALL(5) QK_SMALL(6) QK_SMALL(7) QK_SMALL(8)
    QK_SMALL(9) QK_SMALL(10) QK_SMALL(11) QK_SMALL(12) QK_SMALL(13) QK_SMALL(14) QK_SMALL(15)
#undef QK_SMALL
    default: return kernel.byte_sums(p, rows, stride, n, flip, out);
  }
}

std::vector<uint32_t> row_byte_sums(const KernelInfo& kernel, bool a_signed, const uint8_t* p, int64_t count, int64_t len) {
  const uint8_t flip = byte_sum_flip(a_signed);
  std::vector<uint32_t> sums(static_cast<size_t>(count));
  // Blocks of rows on the pool when there is enough to read (a 56x56x64 input: about 200 KB).
  const int64_t rows_per_block = std::max<int64_t>(1, kRowSumBlockBytes / std::max<int64_t>(len, 1));
  const int64_t blocks = (count + rows_per_block - 1) / rows_per_block;
  const auto run_block = [&](int64_t b) {
    const int64_t begin = b * rows_per_block, end = std::min(count, begin + rows_per_block);
    byte_sums(kernel, p + begin * len, end - begin, len, len, flip, sums.data() + begin);
  };
  if (blocks > 1) parallel_for(blocks, run_block);
  else if (blocks == 1) run_block(0);
  return sums;
}

uint64_t next_call_id() {
  static std::atomic<uint64_t> counter{0};
  return counter.fetch_add(1, std::memory_order_relaxed) + 1;
}

void AlignedBuffer::allocate(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64 + 64;
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(64, rounded));
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, rounded);
  ptr = std::unique_ptr<uint8_t[], void (*)(uint8_t*)>(p, [](uint8_t* q) { std::free(q); });
  size = rounded;
}

std::unique_ptr<PackedB> pack_b(Isa isa, const BSource& b, int taps, int64_t tap_k, int64_t n,
                                const int32_t* b_zp, const int32_t* bias, const OutputStage& stage, int a_bits) {
  QK_REQUIRE(a_bits == 7 || a_bits == 8, "pack_b: a_bits must be 7 or 8");
  return pack_b_layout(isa, packing_kernel(isa, a_bits, n), b, taps, tap_k, n, b_zp, bias, stage);
}

std::unique_ptr<PackedB> pack_b_layout(Isa isa, const KernelInfo* info, const BSource& b, int taps, int64_t tap_k,
                                       int64_t n, const int32_t* b_zp, const int32_t* bias,
                                       const OutputStage& stage) {
  QK_REQUIRE(taps >= 1 && taps <= kMaxTaps, "pack_b: taps out of range");
  auto pb = std::make_unique<PackedB>();
  pb->isa = isa;
  pb->taps = taps;
  pb->tap_k = tap_k;
  pb->k = taps * tap_k;
  pb->n = n;
  pb->b_type = b.type;
  pb->kernel = info;
  QK_REQUIRE(info != nullptr || (taps == 1 && b.ld_n == 1), "the scalar ISA packs plain GEMM weights only");
  pb->nr = info ? info->nr : std::max<int64_t>(n, 1);
  pb->kr = info ? info->kr : 1;
  pb->tap_kp = (tap_k + pb->kr - 1) / pb->kr * pb->kr;
  pb->kp = taps * pb->tap_kp;
  pb->panels = info ? (n + pb->nr - 1) / pb->nr : 1;
  const bool flip_b = info && info->flip_u8_b && b.type == DType::kUint8;  // u8 B stored as s8
  const int64_t cols = pb->columns();
  pb->colsum.assign(cols, 0);
  pb->zb.assign(cols, 0);
  pb->bias.assign(cols, 0);
  pb->multiplier.assign(cols, 0);
  pb->shift.assign(cols, 0);
  pb->fmultiplier.assign(cols, 0.0f);
  if (taps > 1) pb->tapsum.assign(static_cast<size_t>(taps * cols), 0);
  for (int64_t j = 0; j < n; ++j) {
    uint32_t s = 0;
    for (int tap = 0; tap < taps; ++tap) {
      uint32_t st = 0;
      for (int64_t kk = tap * tap_k; kk < (tap + 1) * tap_k; ++kk)
        st += u32(load_q(b.data, b.type, kk * b.ld_k + j * b.ld_n) - (flip_b ? 128 : 0));
      if (taps > 1) pb->tapsum[tap * cols + j] = static_cast<int32_t>(st);
      s += st;
    }
    pb->colsum[j] = static_cast<int32_t>(s);
    pb->zb[j] = b_zp[j] - (flip_b ? 128 : 0);
    pb->has_zb |= pb->zb[j] != 0;
    pb->bias[j] = bias ? bias[j] : 0;
    if (stage.mode == RequantMode::kGemmlowp || stage.mode == RequantMode::kSingle) {
      pb->multiplier[j] = stage.multiplier[j];
      pb->shift[j] = stage.shift[j];
    } else if (stage.mode == RequantMode::kFp32) {
      pb->fmultiplier[j] = stage.fmultiplier[j];
    }
  }
  if (stage.mode == RequantMode::kFloat) {
    pb->fmultiplier.assign(stage.fmultiplier, stage.fmultiplier + n);
    pb->fmultiplier.resize(static_cast<size_t>(cols), 0.0f);
    pb->fbias.assign(static_cast<size_t>(cols), 0.0f);
    if (stage.fbias) std::copy(stage.fbias, stage.fbias + n, pb->fbias.begin());
    pb->zp_colsum.resize(static_cast<size_t>(cols));
    for (int64_t j = 0; j < cols; ++j)  // eq. (20), in B's packed representation (wrapping)
      pb->zp_colsum[j] = static_cast<int32_t>(u32(pb->colsum[j]) - u32(static_cast<int32_t>(pb->k)) * u32(pb->zb[j]));
  }
  pb->stage = stage;
  pb->stage.multiplier = pb->multiplier.data();
  pb->stage.shift = pb->shift.data();
  pb->stage.fmultiplier = pb->fmultiplier.data();
  pb->stage.wide = nullptr;
  pb->stage.fbias = pb->fbias.empty() ? nullptr : pb->fbias.data();
  pb->stage.zp_colsum = pb->zp_colsum.empty() ? nullptr : pb->zp_colsum.data();
  pb->stage.row_scale = nullptr;
  pb->stage.row_zp = nullptr;
  pb->stage.fp32_in_range = stage.mode == RequantMode::kFp32;
  for (int64_t j = 0; j < n; ++j)  // a NaN fails the comparison: the clamped path
    pb->stage.fp32_in_range = pb->stage.fp32_in_range && std::fabs(pb->fmultiplier[j]) < 1.0f;
  if (info && info->wide_stage && has_wide_form(stage.mode, pb->shift.data(), cols)) {
    pb->wide.resize(static_cast<size_t>(cols / 16 * kWideRows * 8));
    build_wide_stage(stage.mode, pb->multiplier.data(), pb->shift.data(), cols / 16, pb->wide.data());
    pb->stage.wide = pb->wide.data();
  }
  // For row_blocks(): the values as packed, which are int8 (u8 B only when stored flipped).
  if (info && taps == 1 && n <= kRowBlockMaxN && (b.type == DType::kInt8 || flip_b)) {
    pb->narrow_b.resize(static_cast<size_t>(pb->k * n));
    for (int64_t kk = 0; kk < pb->k; ++kk)
      for (int64_t j = 0; j < n; ++j)
        pb->narrow_b[kk * n + j] = static_cast<int8_t>(load_q(b.data, b.type, kk * b.ld_k + j * b.ld_n) - (flip_b ? 128 : 0));
  }
  if (!info) {  // scalar: keep B unpacked
    pb->data.allocate(static_cast<size_t>(std::max<int64_t>(pb->k * n, 1)));
    for (int64_t kk = 0; kk < pb->k; ++kk)
      std::memcpy(pb->data.data() + kk * n, static_cast<const uint8_t*>(b.data) + kk * b.ld_k, static_cast<size_t>(n));
    return pb;
  }
  pb->data.allocate(static_cast<size_t>(pb->panels * pb->kp * pb->nr * info->elem_bytes));
  info->pack(*pb, b);
  return pb;
}

const PackedB* PackedB::row_blocks() const {
  std::call_once(row_blocks_once_, [this] {
    const int64_t r = kRowBlockCols / std::max<int64_t>(n, 1);
    if (narrow_b.empty() || has_zb || n < 1 || r < 2 || r * k > kRowBlockMaxK) return;
    // B' = diag(B, ..., B) with column r*n + j a copy of column j: its bias, stage parameters and column sum;
    // zeros elsewhere (packed values, zero point 0, as narrow_b holds them).
    const int64_t kb = r * k, nb = r * n;
    std::vector<int8_t> b(static_cast<size_t>(kb * nb), 0);
    std::vector<int32_t> zp(static_cast<size_t>(nb), 0), bias_b(static_cast<size_t>(nb)), mult(static_cast<size_t>(nb)),
        sh(static_cast<size_t>(nb));
    std::vector<float> fmult(static_cast<size_t>(nb));
    for (int64_t i = 0; i < r; ++i) {
      for (int64_t kk = 0; kk < k; ++kk)
        for (int64_t j = 0; j < n; ++j) b[(i * k + kk) * nb + i * n + j] = narrow_b[kk * n + j];
      for (int64_t j = 0; j < n; ++j) {
        bias_b[i * n + j] = bias[j];
        mult[i * n + j] = multiplier[j];
        sh[i * n + j] = shift[j];
        fmult[i * n + j] = fmultiplier[j];
      }
    }
    OutputStage st = stage;
    st.multiplier = mult.data();
    st.shift = sh.data();
    st.fmultiplier = fmult.data();
    row_blocks_ = pack_b(isa, BSource{b.data(), DType::kInt8, nb, 1}, 1, kb, nb, zp.data(), bias_b.data(), st);
  });
  return row_blocks_.get();
}

std::shared_ptr<const PackedB::EffectiveBias> PackedB::effective_bias(int32_t za) const {
  {
    std::lock_guard<std::mutex> lock(bias_mutex_);
    if (last_bias_ && last_bias_->za == za) return last_bias_;
  }
  auto e = std::make_shared<EffectiveBias>();
  e->za = za;
  e->values.resize(static_cast<size_t>(columns()));
  for (int64_t j = 0; j < columns(); ++j)
    e->values[j] = static_cast<int32_t>(u32(bias[j]) - u32(za) * u32(colsum[j]) +
                                        u32(static_cast<int32_t>(k)) * u32(za) * u32(zb[j]));
  std::lock_guard<std::mutex> lock(bias_mutex_);
  last_bias_ = e;
  return e;
}

namespace {

// The scalar ISA: the unpacked GEMM in blocks of 16 rows (on the pool when large). row_scale / row_zp: the
// float output form's per-row scales and zero points (null otherwise; row_zp null: a_zero_point for all).
void run_scalar(const PackedB& pb, const void* a, DType a_type, int64_t m, int64_t lda, int32_t a_zero_point, char* c,
                int64_t ldc, int64_t esize, const float* row_scale, const int32_t* row_zp) {
  GemmProblem p;
  p.n = pb.n;
  p.k = pb.k;
  p.a_type = a_type;
  p.lda = lda;
  p.b = pb.data.data();
  p.b_type = pb.b_type;
  p.ldb = pb.n;
  p.a_zero_point = a_zero_point;
  p.b_zero_point = pb.zb.data();
  p.bias = pb.bias.data();
  p.stage = pb.stage;
  p.ldc = ldc;
  const int64_t rows = 16, blocks = (m + rows - 1) / rows;
  auto run = [&](int64_t blk) {
    GemmProblem q = p;
    const int64_t r0 = blk * rows;
    q.m = std::min(rows, m - r0);
    q.a = static_cast<const uint8_t*>(a) + r0 * lda;
    q.c = c + r0 * ldc * esize;
    if (row_scale) q.stage.row_scale = row_scale + r0;
    if (row_zp) q.stage.row_zp = row_zp + r0;
    gemm_scalar(q);
  };
  if (m * pb.n * pb.k >= kParallelMacs) parallel_for(blocks, run);
  else for (int64_t blk = 0; blk < blocks; ++blk) run(blk);
}

}  // namespace

void gemm_packed(const PackedB& pb, const void* a, DType a_type, int64_t m, int64_t lda, int32_t a_zero_point,
                 void* c, int64_t ldc) {
  QK_REQUIRE(pb.stage.mode != RequantMode::kFloat, "gemm_packed: float output weights need gemm_packed_float");
  const int64_t esize = out_elem_size(pb.stage.out_dtype);
  if (!pb.kernel)
    return run_scalar(pb, a, a_type, m, lda, a_zero_point, static_cast<char*>(c), ldc, esize, nullptr, nullptr);
  QK_REQUIRE(pb.taps == 1, "gemm_packed: weights packed for a convolution");
  const auto* ab = static_cast<const uint8_t*>(a);
  auto* cb = static_cast<char*>(c);
  int64_t done = 0;
  // Contiguous rows of a narrow output: R rows at a time against the block-diagonal weights (kRowBlockMaxN).
  const PackedB* blocks = pb.n <= kRowBlockMaxN && lda == pb.k && ldc == pb.n && pb.stage.mode != RequantMode::kFloat
                              ? pb.row_blocks()
                              : nullptr;
  if (blocks && m >= blocks->n / pb.n) {
    const int64_t r = blocks->n / pb.n;
    done = m / r * r;
    run_tiles(*blocks, a_type, m / r, a_zero_point, GemmRows{ab, r * lda, cb, r * ldc * esize, esize});
    if (done == m) return;
  }
  run_tiles(pb, a_type, m - done, a_zero_point, GemmRows{ab + done * lda, lda, cb + done * ldc * esize, ldc * esize, esize});
}

void gemm_packed_with(const PackedB& pb, const KernelInfo& kernel, const void* a, DType a_type, int64_t m,
                      int64_t lda, int32_t a_zero_point, void* c, int64_t ldc, int64_t split, void* c2, int64_t ldc2) {
  QK_REQUIRE(pb.stage.mode != RequantMode::kFloat && pb.taps == 1, "gemm_packed_with: GEMM weights, integer output");
  QK_REQUIRE(pb.kernel != nullptr, "gemm_packed_with: weights packed for the scalar driver");
  const int64_t esize = out_elem_size(pb.stage.out_dtype);
  GemmRows rows{static_cast<const uint8_t*>(a), lda, static_cast<char*>(c), ldc * esize, esize};
  if (c2) {
    rows.split = split;
    rows.c2 = static_cast<char*>(c2);
    rows.ldc2_bytes = ldc2 * esize;
  }
  run_tiles(pb, a_type, m, a_zero_point, rows, nullptr, &kernel);
}

namespace {

void run_float(const PackedB& pb, const KernelInfo* forced, const void* a, DType a_type, int64_t m, int64_t lda,
               const float* a_scale, const int32_t* a_zp, bool per_row, float* c, int64_t ldc) {
  QK_REQUIRE(pb.stage.mode == RequantMode::kFloat, "gemm_packed_float: weights packed without the float output");
  QK_REQUIRE(pb.taps == 1, "gemm_packed_float: weights packed for a convolution");
  if (m <= 0) return;
  // The kernels run with zero point 0 and apply eq. (20) per row (skipped when every zero point is 0).
  // A per-tensor call repeats its scale and zero point per row: its zero point changes from call to call
  // with the input's range, and refolding it into the starting accumulators (eq. (7), O(N) and an
  // allocation) cost more than the epilogue's one multiply per 8 outputs at M = 1.
  std::vector<float> scales;
  std::vector<int32_t> zps;
  if (!per_row) {
    scales.assign(static_cast<size_t>(m), a_scale[0]);
    zps.assign(static_cast<size_t>(m), a_zp[0]);
  }
  const float* row_scale = per_row ? a_scale : scales.data();
  bool any_zp = false;
  for (int64_t r = 0; r < (per_row ? m : 1) && !any_zp; ++r) any_zp = a_zp[r] != 0;
  const int32_t* row_zp = !any_zp ? nullptr : per_row ? a_zp : zps.data();
  if (!pb.kernel)
    return run_scalar(pb, a, a_type, m, lda, 0, reinterpret_cast<char*>(c), ldc, 4, row_scale, row_zp);
  GemmRows rows{static_cast<const uint8_t*>(a), lda, reinterpret_cast<char*>(c), ldc * 4, 4};
  rows.row_scale = row_scale;
  rows.row_zp = row_zp;
  run_tiles(pb, a_type, m, 0, rows, nullptr, forced);
}

}  // namespace

void gemm_packed_float(const PackedB& pb, const void* a, DType a_type, int64_t m, int64_t lda, const float* a_scale,
                       const int32_t* a_zp, bool per_row, float* c, int64_t ldc) {
  run_float(pb, nullptr, a, a_type, m, lda, a_scale, a_zp, per_row, c, ldc);
}

void gemm_packed_float_with(const PackedB& pb, const KernelInfo& kernel, const void* a, DType a_type, int64_t m,
                            int64_t lda, const float* a_scale, const int32_t* a_zp, bool per_row, float* c,
                            int64_t ldc) {
  QK_REQUIRE(pb.kernel != nullptr, "gemm_packed_float_with: weights packed for the scalar driver");
  run_float(pb, &kernel, a, a_type, m, lda, a_scale, a_zp, per_row, c, ldc);
}

}  // namespace qk
