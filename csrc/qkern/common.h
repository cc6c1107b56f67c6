// common.h: fixed-width types, element-type tags and wrapping int32 arithmetic shared by the whole core.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace qk {

// Element types of quantized tensors. The values are part of the binding ABI (see register_ops.cc).
enum class DType : int { kUint8 = 0, kInt8 = 1, kInt32 = 2 };

inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kUint8: return "uint8";
    case DType::kInt8: return "int8";
    case DType::kInt32: return "int32";
  }
  return "?";
}

// Two's-complement wrapping arithmetic (docs/quantization.md eq. (6)): signed overflow is undefined in
// C++, so every accumulation goes through uint32_t, whose overflow is defined to wrap.
inline int32_t wrap_add(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}
inline int32_t wrap_mul(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b));
}

// Thrown on a broken precondition that the Python layer should already have rejected; pybind11 maps it
// to ValueError, so a bad call from a direct `_core` user is an exception, never a crash.
struct ArgumentError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

#define QK_REQUIRE(cond, msg)                         \
  do {                                                \
    if (!(cond)) throw ::qk::ArgumentError(msg);      \
  } while (0)

}  // namespace qk
