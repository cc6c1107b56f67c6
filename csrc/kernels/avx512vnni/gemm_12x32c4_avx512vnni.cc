// gemm_12x32c4_avx512vnni.cc: the narrow VNNI kernel: 12x32 tiles for outputs of at most 32 columns.
//
// Compiled with the AVX-512 VNNI target flags only; reached only when CPUID says so.
#include "kernels/avx512vnni/gemm_tile_avx512vnni.h"
#include "qkern/kernel_list.h"

namespace qk {

// Reads the same packed panels as the 6 x 64 kernel (its first 32 columns); chosen when N <= 32.
void tile_gemm_12x32c4__avx512vnni(const TileArgs& t, int mr) {
  if (mr <= 6) return tile_gemm_6x64c4__avx512vnni(t, mr);
  switch (mr) {
    case 7: return tile_nv<7>(t);
    case 8: return tile_nv<8>(t);
    case 9: return tile_nv<9>(t);
    case 10: return tile_nv<10>(t);
    case 11: return tile_nv<11>(t);
    default: return tile_nv<12>(t);
  }
}


}  // namespace qk
