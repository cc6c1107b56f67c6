// gemm.cc: the packed-GEMM driver: packing dispatch, zero-point folding, tiling, thread partition.
// No ISA-specific code here: kernels come from kernels.inc.
#include "qkern/gemm.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "qkern/ops.h"
#include "qkern/scalar_common.h"
#include "qkern/threadpool.h"

namespace qk {

namespace {

struct KernelInfo {
  Isa isa;
  TileKernel tile;
  void (*pack)(PackedB&, const void*, int64_t);
  int mr, nr, kr;
};

const KernelInfo kKernels[] = {
#define QK_KERNEL(isa, tile, pack, mr, nr, kr) {isa, tile, pack, mr, nr, kr},
#include "qkern/kernels.inc"
#undef QK_KERNEL
};

const KernelInfo* kernel_for(Isa isa) {
  for (const KernelInfo& k : kKernels)
    if (k.isa == isa) return &k;
  return nullptr;
}

inline uint32_t u32(int32_t v) { return static_cast<uint32_t>(v); }

// Below this many multiply-adds a call stays on one thread: splitting M=1, K=N=1024 (2^20) over two
// threads measured bimodal on the 2-vCPU VM (16-49 us against a stable 16-20 us on one thread).
constexpr int64_t kParallelMacs = int64_t{1} << 21;
// Budget for the K x NC block of B that the m-tiles of one task share (about half of a 1 MiB L2).
constexpr int64_t kL2BlockBytes = 512 * 1024;

}  // namespace

void AlignedBuffer::allocate(size_t bytes) {
  const size_t rounded = (bytes + 63) / 64 * 64 + 64;
  auto* p = static_cast<uint8_t*>(std::aligned_alloc(64, rounded));
  if (!p) throw std::bad_alloc();
  std::memset(p, 0, rounded);
  ptr = std::unique_ptr<uint8_t[], void (*)(uint8_t*)>(p, [](uint8_t* q) { std::free(q); });
  size = rounded;
}

std::unique_ptr<PackedB> pack_b(Isa isa, const void* b, DType b_type, int64_t k, int64_t n, int64_t ldb,
                                const int32_t* b_zp, const int32_t* bias, const OutputStage& stage) {
  auto pb = std::make_unique<PackedB>();
  pb->isa = isa;
  pb->k = k;
  pb->n = n;
  pb->b_type = b_type;
  const KernelInfo* info = isa == Isa::kScalar ? nullptr : kernel_for(isa);
  QK_REQUIRE(isa == Isa::kScalar || info != nullptr, "no GEMM kernel for this ISA");
  pb->nr = info ? info->nr : std::max<int64_t>(n, 1);
  pb->kr = info ? info->kr : 1;
  pb->kp = (k + pb->kr - 1) / pb->kr * pb->kr;
  pb->panels = info ? (n + pb->nr - 1) / pb->nr : 1;
  const bool flip_b = isa == Isa::kAvx512Vnni && b_type == DType::kUint8;  // u8 B stored as s8
  pb->flip_s8_a = isa == Isa::kAvx512Vnni;                                   // vpdpbusd wants u8 A
  const int64_t cols = pb->columns();
  pb->colsum.assign(cols, 0);
  pb->zb.assign(cols, 0);
  pb->bias.assign(cols, 0);
  pb->multiplier.assign(cols, 0);
  pb->shift.assign(cols, 0);
  pb->fmultiplier.assign(cols, 0.0f);
  for (int64_t j = 0; j < n; ++j) {
    uint32_t s = 0;
    for (int64_t kk = 0; kk < k; ++kk) s += u32(load_q(b, b_type, kk * ldb + j) - (flip_b ? 128 : 0));
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
  pb->stage = stage;
  pb->stage.multiplier = pb->multiplier.data();
  pb->stage.shift = pb->shift.data();
  pb->stage.fmultiplier = pb->fmultiplier.data();
  if (!info) {  // scalar: keep B unpacked
    pb->data.allocate(static_cast<size_t>(std::max<int64_t>(k * n, 1)));
    for (int64_t kk = 0; kk < k; ++kk)
      std::memcpy(pb->data.data() + kk * n, static_cast<const uint8_t*>(b) + kk * ldb, static_cast<size_t>(n));
    return pb;
  }
  const int64_t elem = isa == Isa::kAvx2 ? 2 : 1;
  pb->data.allocate(static_cast<size_t>(pb->panels * pb->kp * pb->nr * elem));
  info->pack(*pb, b, ldb);
  return pb;
}

void gemm_packed(const PackedB& pb, const void* a, DType a_type, int64_t m, int64_t lda, int32_t a_zero_point,
                 void* c, int64_t ldc) {
  const int64_t esize = out_elem_size(pb.stage.out_dtype);
  const bool parallel = m * pb.n * pb.k >= kParallelMacs;
  if (pb.isa == Isa::kScalar) {
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
      q.c = static_cast<char*>(c) + r0 * ldc * esize;
      gemm_scalar(q);
    };
    if (parallel) parallel_for(blocks, run);
    else for (int64_t blk = 0; blk < blocks; ++blk) run(blk);
    return;
  }
  const KernelInfo* info = kernel_for(pb.isa);
  QK_REQUIRE(info != nullptr, "packed for an ISA without a kernel");
  QK_REQUIRE(static_cast<int>(pb.isa) <= static_cast<int>(available_isas().front()),
             "weights were packed for an ISA this CPU cannot run");
  const bool a_signed = a_type == DType::kInt8;
  const bool flip_a = pb.flip_s8_a && a_signed;
  const int32_t za = a_zero_point + (flip_a ? 128 : 0);
  const int64_t cols = pb.columns();
  // Eq. (7) folded into the starting accumulator: bias - za'*colsum + K*za'*zb' (wrapping).
  std::vector<int32_t> bias_eff(static_cast<size_t>(cols));
  for (int64_t j = 0; j < cols; ++j)
    bias_eff[j] = static_cast<int32_t>(u32(pb.bias[j]) - u32(za) * u32(pb.colsum[j]) +
                                       u32(static_cast<int32_t>(pb.k)) * u32(za) * u32(pb.zb[j]));
  const int mr = info->mr;
  const int64_t m_tiles = (m + mr - 1) / mr;
  const int64_t elem = pb.isa == Isa::kAvx2 ? 2 : 1;
  const int64_t panel_bytes = std::max<int64_t>(pb.kp * pb.nr * elem, 1);
  // Small M: each task is one panel over all rows (threads split N). Otherwise: blocks of m-tiles times
  // blocks of panels that fit the L2 budget; the m-tile loop runs outside the panel loop.
  const bool small_m = m_tiles <= 8;
  const int64_t panels_per_block = small_m ? 1 : std::max<int64_t>(1, kL2BlockBytes / panel_bytes);
  const int64_t n_blocks = (pb.panels + panels_per_block - 1) / panels_per_block;
  // Blocks of at most 8 m-tiles, as equal as possible so that the static split stays balanced.
  const int64_t m_blocks = small_m ? 1 : (m_tiles + 7) / 8;
  const int64_t tiles_per_block = (m_tiles + m_blocks - 1) / m_blocks;
  const uint8_t* a_bytes = static_cast<const uint8_t*>(a);
  char* c_bytes = static_cast<char*>(c);

  static std::atomic<uint64_t> call_counter{0};
  const uint64_t call_id = call_counter.fetch_add(1, std::memory_order_relaxed) + 1;
  auto run_task = [&](int64_t task) {
    const int64_t mb = task / n_blocks, nb = task % n_blocks;
    const int64_t t_end = std::min(m_tiles, (mb + 1) * tiles_per_block);
    const int64_t p_end = std::min(pb.panels, (nb + 1) * panels_per_block);
    TileArgs t;
    t.k = pb.k;
    t.stage = &pb.stage;
    t.a_signed = a_signed;
    t.call_id = call_id;
    for (int64_t tile = mb * tiles_per_block; tile < t_end; ++tile) {
      const int64_t r0 = tile * mr;
      const int rows = static_cast<int>(std::min<int64_t>(mr, m - r0));
      for (int r = 0; r < kMaxMR; ++r) {
        const int64_t row = r0 + (r < rows ? r : 0);
        t.a[r] = a_bytes + row * lda;
        if (pb.has_zb && r < rows) {
          uint32_t s = 0;
          for (int64_t kk = 0; kk < pb.k; ++kk) s += u32(load_q(a, a_type, row * lda + kk));
          t.rowsum[r] = static_cast<int32_t>(s + (flip_a ? u32(128) * u32(static_cast<int32_t>(pb.k)) : 0u));
        } else {
          t.rowsum[r] = 0;
        }
      }
      for (int64_t p = nb * panels_per_block; p < p_end; ++p) {
        t.col0 = p * pb.nr;
        t.nc = static_cast<int>(std::min<int64_t>(pb.nr, pb.n - t.col0));
        t.b = pb.data.data() + p * panel_bytes;
        t.bias_eff = bias_eff.data() + t.col0;
        t.zb = pb.has_zb ? pb.zb.data() + t.col0 : nullptr;
        for (int r = 0; r < kMaxMR; ++r) t.c[r] = c_bytes + ((r0 + (r < rows ? r : 0)) * ldc + t.col0) * esize;
        info->tile(t, rows);
      }
    }
  };
  const int64_t tasks = m_blocks * n_blocks;
  if (parallel) parallel_for(tasks, run_task);
  else for (int64_t task = 0; task < tasks; ++task) run_task(task);
}

}  // namespace qk
