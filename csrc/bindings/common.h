// common.h: binding helpers: strict NumPy array access (no silent casts) and OutputStage assembly.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "qkern/common.h"
#include "qkern/requant.h"

namespace qk::bind {

namespace py = pybind11;

// Equal dtypes need not be one object (an unpickled array carries its own descriptor), so compare the
// type number and byte order, never identity.
template <typename T>
bool has_dtype(const py::array& a) {
  const py::dtype d = a.dtype();
  return d.normalized_num() == py::dtype::of<T>().normalized_num() && d.byteorder() != '>';
}

inline DType dtype_of(const py::array& a, const char* name) {
  if (has_dtype<uint8_t>(a)) return DType::kUint8;
  if (has_dtype<int8_t>(a)) return DType::kInt8;
  if (has_dtype<int32_t>(a)) return DType::kInt32;
  throw py::type_error(std::string(name) + " must have dtype uint8, int8 or int32");
}

inline void require_c_contiguous(const py::array& a, const char* name) {
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " must be C-contiguous");
}

// The hot paths of the Packed* calls check this here, not with np.may_share_memory in Python (a fifth of
// a tiny call's Python time). Both arrays are C-contiguous, so each is one byte range.
inline void check_out_disjoint(const py::array& out, const py::array& in) {
  const auto o = reinterpret_cast<uintptr_t>(out.data()), i = reinterpret_cast<uintptr_t>(in.data());
  const auto on = static_cast<uintptr_t>(out.nbytes()), in_n = static_cast<uintptr_t>(in.nbytes());
  if (on != 0 && in_n != 0 && o < i + in_n && i < o + on) throw py::value_error("out must not overlap an input array");
}

// The values of 7-bit activations, the promise of weights packed for the 7-bit kernels (kernels.inc's a_bits):
// every byte of p[0, n) below 128, else a ValueError naming the array. Needs no GIL: a bound call (bound_call.h)
// makes it part of its Work, so it runs on every call, like the unbound call's.
inline void require_seven_bit_bytes(const void* p, int64_t n, const char* name) {
  const auto* b = static_cast<const uint8_t*>(p);
  uint8_t high = 0;
  for (int64_t i = 0; i < n; ++i) high |= b[i];
  QK_REQUIRE(!(high & 0x80), std::string(name) + " holds values above 127: the weights were packed for 7-bit inputs");
}

// x (C-contiguous, of dtype t) holds 7-bit activations: uint8 (else a TypeError naming x), every value below 128.
inline void check_seven_bit_values(const py::array& x, DType t, const char* name) {
  if (t != DType::kUint8)
    throw py::type_error(std::string(name) + " must be uint8: the weights were packed for 7-bit inputs");
  require_seven_bit_bytes(x.data(), x.size(), name);
}

inline void require_writeable_c_contiguous(const py::array& a, const char* name) {
  if (!(a.flags() & py::array::c_style) || !a.writeable())
    throw py::value_error(std::string(name) + " must be C-contiguous and writeable");
}

template <typename T>
const T* typed_ptr(const py::array& a, const char* name, py::ssize_t expected_size) {
  if (!has_dtype<T>(a)) throw py::type_error(std::string(name) + " has the wrong dtype");
  require_c_contiguous(a, name);
  if (a.size() != expected_size)
    throw py::value_error(std::string(name) + " must have " + std::to_string(expected_size) + " elements");
  return static_cast<const T*>(a.data());
}

// The requant mode codes Python passes in StageArgs::mode, by name: the C++ side of the table that
// python/qkern/requant_params.py states for Python (a test compares the two through _core.requant_modes()).
struct RequantModeName {
  const char* name;
  RequantMode mode;
};
inline constexpr RequantModeName kRequantModes[] = {
    {"raw", RequantMode::kRaw},
    {"gemmlowp", RequantMode::kGemmlowp},
    {"single", RequantMode::kSingle},
    {"fp32", RequantMode::kFp32},
};

// Requant parameters as passed from python/qkern/requant_params.py (Requant.expanded), one entry per channel.
struct StageArgs {
  int mode;
  py::array multiplier, shift, fmultiplier;
  int32_t zero_point, qmin, qmax;
};

inline OutputStage make_stage(const StageArgs& s, py::ssize_t channels, DType out_dtype) {
  OutputStage os;
  bool known = false;
  for (const RequantModeName& m : kRequantModes) known = known || static_cast<int>(m.mode) == s.mode;
  if (!known) throw py::value_error("unknown requant mode code " + std::to_string(s.mode));
  os.mode = static_cast<RequantMode>(s.mode);
  os.out_dtype = out_dtype;
  if (os.mode == RequantMode::kRaw) {
    if (out_dtype != DType::kInt32) throw py::type_error("raw output must be int32");
    return os;
  }
  if (out_dtype == DType::kInt32) throw py::type_error("requantized output must be uint8 or int8");
  os.multiplier = typed_ptr<int32_t>(s.multiplier, "multiplier", channels);
  os.shift = typed_ptr<int32_t>(s.shift, "shift", channels);
  os.fmultiplier = typed_ptr<float>(s.fmultiplier, "fmultiplier", channels);
  for (py::ssize_t i = 0; i < channels; ++i) {
    if (os.mode != RequantMode::kFp32 && (os.shift[i] < -31 || os.shift[i] > 30 || os.multiplier[i] < 0))
      throw py::value_error("shift must be in [-31, 30] and multiplier >= 0");
  }
  os.zero_point = s.zero_point;
  os.qmin = s.qmin;
  os.qmax = s.qmax;
  return os;
}

}  // namespace qk::bind
