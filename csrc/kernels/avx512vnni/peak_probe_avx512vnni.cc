// peak_probe_avx512vnni.cc: the live vpdpbusd peak of one core, for "% of peak" figures on a noisy machine.
//
// Written as inline assembly on purpose: from intrinsics GCC merged or spilled the independent chains
// (16 chains measured 365-388 GOP/s, 24 chains 180-200), so the figure said more about the compiler than
// about the core. 24 accumulators, as in the 6 x 64 tile, hide the instruction's latency.
#include <chrono>

#include "qkern/peak_probe.h"

namespace qk {

double vnni_probe_seconds(int64_t iterations) {
  const auto start = std::chrono::steady_clock::now();
  if (iterations > 0) {
#define QK_DP(r) "vpdpbusd %%zmm30, %%zmm31, %%zmm" #r "\n\t"
    __asm__ volatile(
        "vpternlogd $0xff, %%zmm30, %%zmm30, %%zmm30\n\t"
        "vpabsb %%zmm30, %%zmm31\n\t"
        "1:\n\t"
        QK_DP(0) QK_DP(1) QK_DP(2) QK_DP(3) QK_DP(4) QK_DP(5) QK_DP(6) QK_DP(7)
        QK_DP(8) QK_DP(9) QK_DP(10) QK_DP(11) QK_DP(12) QK_DP(13) QK_DP(14) QK_DP(15)
        QK_DP(16) QK_DP(17) QK_DP(18) QK_DP(19) QK_DP(20) QK_DP(21) QK_DP(22) QK_DP(23)
        "dec %0\n\t"
        "jnz 1b\n\t"
        "vzeroupper"
        : "+r"(iterations)
        :
        : "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
          "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20", "xmm21",
          "xmm22", "xmm23", "xmm30", "xmm31");
#undef QK_DP
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace qk
