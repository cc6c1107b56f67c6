// isa.h: instruction-set levels, CPUID/XGETBV detection and the process-wide selected level.
#pragma once

#include <string>
#include <vector>

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
