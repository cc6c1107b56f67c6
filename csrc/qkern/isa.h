// isa.h: instruction-set levels, CPUID/XGETBV detection and the process-wide selected level.
#pragma once

#include <string>
#include <vector>

// Whether this build links the AVX2 / AVX-512 VNNI kernel files (CMakeLists.txt defines both after checking
// that the compiler supports them; a build without CMake gets them on x86-64 only).
#ifndef QKERN_HAVE_AVX2
#if defined(__x86_64__)
#define QKERN_HAVE_AVX2 1
#else
#define QKERN_HAVE_AVX2 0
#endif
#endif
#ifndef QKERN_HAVE_AVX512VNNI
#define QKERN_HAVE_AVX512VNNI QKERN_HAVE_AVX2
#endif

namespace qk {

// Ordered from lowest to highest; a higher level may always be lowered (QKERN_ISA, set_isa).
enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512Vnni = 2 };

const char* isa_name(Isa isa);
bool parse_isa(const std::string& name, Isa* out);

// Levels this build has kernels for and this CPU (and OS) can run, best first.
std::vector<Isa> available_isas();

// The level used by new calls. Initialised from QKERN_ISA (if it names an available level) or the best.
Isa current_isa();
void set_current_isa(Isa isa);  // throws ArgumentError if not available

}  // namespace qk
