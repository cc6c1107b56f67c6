// gemm_6x64c4_avx512vnni.cc: the general VNNI kernel: 6x64 tiles (24 zmm accumulators, vpdpbusd).
//
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni only; reached only when CPUID says so.
#include "kernels/avx512vnni/gemm_tile_avx512vnni.h"
#include "qkern/kernel_list.h"

namespace qk {

void tile_gemm_6x64c4__avx512vnni(const TileArgs& t, int mr) {
  switch (mr) {
    case 1: return tile_nv<1>(t);
    case 2: return tile_nv<2>(t);
    case 3: return tile_nv<3>(t);
    case 4: return tile_nv<4>(t);
    case 5: return tile_nv<5>(t);
    default: return tile_nv<6>(t);
  }
}


}  // namespace qk
