// register_runtime.cc: build and runtime introspection of the native core (compiler, flags, kernels).
#include <pybind11/pybind11.h>

#include "bindings/common.h"

#ifndef QKERN_CXX_FLAGS
#define QKERN_CXX_FLAGS "unknown"
#endif
#ifndef QKERN_BUILD_TYPE
#define QKERN_BUILD_TYPE "unknown"
#endif

namespace qk::bind {

namespace {

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return "gcc " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__) + "." +
         std::to_string(__GNUC_PATCHLEVEL__);
#elif defined(_MSC_VER)
  return "msvc " + std::to_string(_MSC_VER);
#else
  return "unknown";
#endif
}

}  // namespace

void register_runtime(py::module_& m) {
  m.def("build_info", []() {
    py::dict d;
    d["compiler"] = compiler();
    d["flags"] = QKERN_CXX_FLAGS;
    d["build_type"] = QKERN_BUILD_TYPE;
    return d;
  });
}

}  // namespace qk::bind
