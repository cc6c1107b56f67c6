// kernel_list.cc: the KernelInfo table built from kernels.inc, and the lookups drivers use.
#include "qkern/kernel_list.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace qk {

const std::vector<KernelInfo>& kernel_list() {
  // A vector, not an array: a scalar-only build has no rows.
  static const std::vector<KernelInfo> kList = {
#define QK_KERNEL(isa, tile, pack, sums, first, mr, nr, kr, elem, flip_b, flip_a, a_int16, a_bits, wide, outputs, max_n) \
  {#tile, isa, tile, pack, sums, first, mr, nr, kr, elem, flip_b, flip_a, a_int16, a_bits, wide, outputs, max_n},
#include "qkern/kernels.inc"
#undef QK_KERNEL
  };
  return kList;
}

const KernelInfo* general_kernel(Isa isa, int a_bits) {
  const KernelInfo* eight = nullptr;
  for (const KernelInfo& k : kernel_list()) {
    if (k.isa != isa || k.max_n != 0) continue;
    if (k.a_bits == a_bits) return &k;
    if (k.a_bits == 8) eight = &k;
  }
  return eight;
}

namespace {

// The smallest max_n among the narrow kernels reading `general`'s panels that take n columns (none: the
// largest int64, the general kernel itself).
int64_t narrowest_for(const KernelInfo& general, int64_t n) {
  int64_t best = std::numeric_limits<int64_t>::max();
  for (const KernelInfo& k : kernel_list())
    if (k.pack == general.pack && k.max_n != 0 && n <= k.max_n) best = std::min(best, k.max_n);
  return best;
}

}  // namespace

const KernelInfo* packing_kernel(Isa isa, int a_bits, int64_t n) {
  const KernelInfo* info = general_kernel(isa, a_bits);
  if (info == nullptr || info->a_bits == 8) return info;
  const KernelInfo* eight = general_kernel(isa, 8);
  return narrowest_for(*eight, n) < narrowest_for(*info, n) ? eight : info;
}

const KernelInfo* find_kernel(const char* name) {
  for (const KernelInfo& k : kernel_list())
    if (std::strcmp(k.name, name) == 0) return &k;
  return nullptr;
}

const KernelInfo& tile_kernel_for(const PackedB& pb, int64_t n) {
  const KernelInfo* best = pb.kernel;
  for (const KernelInfo& k : kernel_list())
    if (k.pack == pb.kernel->pack && k.max_n != 0 && n <= k.max_n && (best->max_n == 0 || k.max_n < best->max_n))
      best = &k;
  return *best;
}

}  // namespace qk
