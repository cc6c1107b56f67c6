// register_runtime.cc: build and runtime introspection of the native core (compiler, flags, kernels).
#include <pybind11/pybind11.h>

#include <pybind11/stl.h>

#include <algorithm>
#include <string>
#include <utility>

#include "bindings/common.h"
#include "qkern/isa.h"
#include "qkern/kernel_list.h"
#include "qkern/peak_probe.h"
#include "qkern/threadpool.h"

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
    py::list built;  // kernel sets linked into this build (the CPU may run fewer: available_isas)
    if (QKERN_HAVE_AVX512VNNI) built.append("avx512vnni");
    if (QKERN_HAVE_AVX2) built.append("avx2");
    built.append("scalar");
    d["built_isas"] = built;
    return d;
  });
  m.def("available_isas", []() {
    std::vector<std::string> out;
    for (Isa isa : available_isas()) out.emplace_back(isa_name(isa));
    return out;
  });
  m.def("get_isa", []() { return std::string(isa_name(current_isa())); });
  m.def("set_isa", [](const std::string& name) {
    Isa isa;
    if (!parse_isa(name, &isa)) throw py::value_error("unknown ISA name: " + name);
    set_current_isa(isa);
  });
  m.def("requant_modes", []() {
    py::dict d;
    for (const RequantModeName& m : kRequantModes) d[m.name] = static_cast<int>(m.mode);
    return d;
  });
  m.attr("max_threads") = kMaxThreads;
  m.def("get_num_threads", &get_num_threads);
  m.def("set_num_threads", &set_num_threads);
  m.def(
      "vnni_probe_seconds",
      [](int64_t iterations) {
        if (iterations < 1) throw py::value_error("iterations must be >= 1, got " + std::to_string(iterations));
        const auto isas = available_isas();
        if (std::find(isas.begin(), isas.end(), Isa::kAvx512Vnni) == isas.end())
          throw py::value_error("vnni_probe_seconds: this CPU (or build) has no avx512vnni");
#if QKERN_HAVE_AVX512VNNI
        py::gil_scoped_release release;
        return vnni_probe_seconds(iterations);
#else
        return 0.0;  // unreachable: available_isas() lists avx512vnni only when its kernels are built
#endif
      },
      py::arg("iterations"));
  m.def("kernels", []() {
    py::list out;
    for (const KernelInfo& k : kernel_list()) {
      py::list outputs;
      for (const auto& [bit, form] : {std::pair{kOutputInt32, "int32"}, std::pair{kOutput8Bit, "8bit"},
                                      std::pair{kOutputFloat, "float32"}, std::pair{kOutputSplit, "split"}})
        if (k.outputs & bit) outputs.append(form);
      out.append(py::dict(py::arg("isa") = isa_name(k.isa), py::arg("name") = k.name, py::arg("mr") = k.mr,
                          py::arg("nr") = k.nr, py::arg("kr") = k.kr, py::arg("max_n") = k.max_n,
                          py::arg("elem_bytes") = k.elem_bytes, py::arg("flip_u8_b") = k.flip_u8_b,
                          py::arg("flip_s8_a") = k.flip_s8_a, py::arg("a_int16") = k.a_int16, py::arg("a_bits") = k.a_bits,
                          py::arg("wide_stage") = k.wide_stage, py::arg("first_layer") = k.first_layer != nullptr,
                          py::arg("outputs") = outputs));
    }
    return out;
  });
}

}  // namespace qk::bind
