// isa.cc: CPUID + XGETBV detection of AVX2 / AVX-512 VNNI and the selected ISA level.
#include "qkern/isa.h"

#include <atomic>
#include <cstdlib>

#include "qkern/common.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define QK_X86 1
#endif

namespace qk {

namespace {

#ifdef QK_X86
unsigned long long xgetbv0() {
  unsigned eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

struct Features {
  bool avx2 = false;
  bool avx512vnni = false;
};

Features detect() {
  Features f;
#ifdef QK_X86
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  const bool osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1;
  if (!osxsave || !avx) return f;
  const unsigned long long xcr0 = xgetbv0();
  const bool ymm_state = (xcr0 & 0x6) == 0x6;      // SSE + AVX state saved by the OS
  const bool zmm_state = (xcr0 & 0xE6) == 0xE6;    // + opmask, ZMM_Hi256, Hi16_ZMM
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, eax, ebx, ecx, edx);
  f.avx2 = ymm_state && ((ebx >> 5) & 1);
  const bool avx512f = (ebx >> 16) & 1, avx512bw = (ebx >> 30) & 1, avx512vl = (ebx >> 31) & 1;
  const bool vnni = (ecx >> 11) & 1;
  f.avx512vnni = zmm_state && f.avx2 && avx512f && avx512bw && avx512vl && vnni;
#endif
  return f;
}

const Features& features() {
  static const Features f = detect();
  return f;
}

Isa initial_isa() {
  const std::vector<Isa> avail = available_isas();
  Isa best = avail.front();
  if (const char* env = std::getenv("QKERN_ISA")) {
    Isa wanted;
    if (parse_isa(env, &wanted) && static_cast<int>(wanted) <= static_cast<int>(best)) return wanted;
  }
  return best;
}

std::atomic<int>& selected() {
  static std::atomic<int> isa{static_cast<int>(initial_isa())};
  return isa;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kAvx512Vnni: return "avx512vnni";
  }
  return "?";
}

bool parse_isa(const std::string& name, Isa* out) {
  for (Isa isa : {Isa::kScalar, Isa::kAvx2, Isa::kAvx512Vnni}) {
    if (name == isa_name(isa)) {
      *out = isa;
      return true;
    }
  }
  return false;
}

std::vector<Isa> available_isas() {
  std::vector<Isa> out;
  if (QKERN_HAVE_AVX512VNNI && features().avx512vnni) out.push_back(Isa::kAvx512Vnni);
  if (QKERN_HAVE_AVX2 && features().avx2) out.push_back(Isa::kAvx2);
  out.push_back(Isa::kScalar);
  return out;
}

Isa current_isa() { return static_cast<Isa>(selected().load(std::memory_order_relaxed)); }

void set_current_isa(Isa isa) {
  for (Isa a : available_isas()) {
    if (a == isa) {
      selected().store(static_cast<int>(isa), std::memory_order_relaxed);
      return;
    }
  }
  throw ArgumentError(std::string("ISA ") + isa_name(isa) + " is not available on this CPU/build");
}

}  // namespace qk
