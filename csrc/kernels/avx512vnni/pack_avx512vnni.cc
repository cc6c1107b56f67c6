// pack_avx512vnni.cc: packs B into the VNNI kernels' panels ([Kp/4][64][4] int8, docs/kernels.md).
#include <cstdint>

#include "kernels/avx512vnni/gemm_epilogue_avx512vnni.h"
#include "qkern/gemm.h"
#include "qkern/kernel_list.h"

namespace qk {

// B[k, n] -> panels [kp/4][64][4] of int8; u8 B is stored as b ^ 0x80 (= b - 128 as int8).
void pack_b_avx512vnni(PackedB& pb, const BSource& b) {
  const uint8_t flip = pb.b_type == DType::kUint8 ? 0x80 : 0x00;
  const uint8_t* src = static_cast<const uint8_t*>(b.data);
  for (int64_t p = 0; p < pb.panels; ++p) {
    uint8_t* panel = pb.data.data() + p * pb.kp * kNR;
    for_each_packed_row(pb, b, [&](int64_t kk, int64_t row) {
      if (row < 0) return;  // padding rows stay 0 (the buffer is zeroed)
      uint8_t* dst = panel + (kk / kKR) * kNR * kKR + kk % kKR;
      for (int64_t j = 0; j < kNR && p * kNR + j < pb.n; ++j)
        dst[j * kKR] = static_cast<uint8_t>(src[row + (p * kNR + j) * b.ld_n] ^ flip);
    });
  }
}


}  // namespace qk
