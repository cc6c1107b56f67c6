// peak_probe.h: a timed loop of independent vpdpbusd, the yardstick the benchmarks divide by.
#pragma once

#include <cstdint>

namespace qk {

// Seconds taken by `iterations` x 24 independent 512-bit vpdpbusd (64 multiply-adds each) on the calling
// thread. Only call it where available_isas() lists avx512vnni.
double vnni_probe_seconds(int64_t iterations);

}  // namespace qk
