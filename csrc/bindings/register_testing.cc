// register_testing.cc: test-only entry points: one named kernel of kernels.inc run on its packed operands.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <optional>
#include <string>

#include "bindings/common.h"
#include "qkern/gemm.h"
#include "qkern/isa.h"
#include "qkern/kernel_list.h"

namespace qk::bind {

namespace {

// The row named `name`, runnable on this CPU.
const KernelInfo& runnable_kernel(const std::string& name) {
  const KernelInfo* k = find_kernel(name.c_str());
  if (!k) throw py::value_error("kernel: no kernel named " + name + " in this build");
  const std::vector<Isa> isas = available_isas();
  if (std::find(isas.begin(), isas.end(), k->isa) == isas.end())
    throw py::value_error(std::string("kernel: ") + k->name + " needs " + isa_name(k->isa) + ", which this CPU lacks");
  return *k;
}

// A [M, K] of uint8/int8 whose rows may be strided (row stride >= K, unit element stride): returns lda.
int64_t strided_rows(const py::array& a, py::ssize_t k) {
  if (a.ndim() != 2 || a.shape(1) != k) throw py::value_error("a must be [M, K] with K matching b");
  if (dtype_of(a, "a") == DType::kInt32) throw py::type_error("a must have dtype uint8 or int8");
  if (a.shape(0) > 1 && (a.strides(0) < k || a.strides(1) != 1))
    throw py::value_error("a must have unit element stride and a row stride >= K");
  if (a.shape(0) == 1 && k > 1 && a.strides(1) != 1) throw py::value_error("a must have unit element stride");
  return a.shape(0) > 1 ? a.strides(0) : k;
}

// B [K, N] packed for the kernel's ISA and A width (its general kernel's layout), checked against the kernel's width.
std::unique_ptr<PackedB> pack_for(const KernelInfo& kernel, const py::array& b, const py::array& b_zp,
                                  const int32_t* bias, const OutputStage& os) {
  const DType bt = dtype_of(b, "b");
  if (b.ndim() != 2 || bt == DType::kInt32) throw py::value_error("b must be a 2-D uint8 or int8 array");
  require_c_contiguous(b, "b");
  const py::ssize_t k = b.shape(0), n = b.shape(1);
  if (kernel.max_n != 0 && n > kernel.max_n)
    throw py::value_error(std::string("kernel: ") + kernel.name + " computes at most " + std::to_string(kernel.max_n) +
                          " columns");
  const int32_t* zp = typed_ptr<int32_t>(b_zp, "b_zero_point", n);
  return pack_b_layout(kernel.isa, general_kernel(kernel.isa, kernel.a_bits), BSource{b.data(), bt, n, 1}, 1, k, n, zp,
                       bias, os);
}

void* out_matrix(py::array& out, const char* name, py::ssize_t m, py::ssize_t n, DType dt) {
  if (out.ndim() != 2 || out.shape(0) != m || out.shape(1) != n)
    throw py::value_error(std::string(name) + " has the wrong shape");
  if (dtype_of(out, name) != dt) throw py::type_error(std::string(name) + " has the wrong dtype");
  require_writeable_c_contiguous(out, name);
  return out.mutable_data();
}

void gemm_with_kernel(const std::string& name, const py::array& a, int32_t a_zero_point, const py::array& b,
                      const py::array& b_zp, const std::optional<py::array>& bias, const StageArgs& stage,
                      py::array& out, py::ssize_t split, std::optional<py::array> out2) {
  const KernelInfo& kernel = runnable_kernel(name);
  const py::ssize_t n = b.ndim() == 2 ? b.shape(1) : 0;
  const int64_t lda = strided_rows(a, b.ndim() == 2 ? b.shape(0) : 0);
  const py::ssize_t m = a.shape(0);
  const DType out_dt = dtype_of(out, "out");
  const OutputStage os = make_stage(stage, n, out_dt);
  const int32_t* bias_p = bias ? typed_ptr<int32_t>(*bias, "bias", n) : nullptr;
  const auto pb = pack_for(kernel, b, b_zp, bias_p, os);
  if (!out2) split = n;
  if (split < 0 || split > n) throw py::value_error("split must be in [0, N]");
  void* c = out_matrix(out, "out", m, split, out_dt);
  void* c2 = out2 ? out_matrix(*out2, "out2", m, n - split, out_dt) : nullptr;
  const py::ssize_t ldc = std::max<py::ssize_t>(split, 1), ldc2 = std::max<py::ssize_t>(n - split, 1);
  const DType a_dt = dtype_of(a, "a");
  const void* a_p = a.data();
  py::gil_scoped_release release;
  gemm_packed_with(*pb, kernel, a_p, a_dt, m, lda, a_zero_point, c, ldc, split, c2, ldc2);
}

void gemm_float_with_kernel(const std::string& name, const py::array& a, const py::array& a_scale,
                            const py::array& a_zp, bool per_row, const py::array& b, const py::array& b_zp,
                            const py::array& w_scale, const std::optional<py::array>& bias, py::array& out) {
  const KernelInfo& kernel = runnable_kernel(name);
  const py::ssize_t n = b.ndim() == 2 ? b.shape(1) : 0;
  const int64_t lda = strided_rows(a, b.ndim() == 2 ? b.shape(0) : 0);
  const py::ssize_t m = a.shape(0), count = per_row ? m : 1;
  OutputStage os;
  os.mode = RequantMode::kFloat;
  os.out_dtype = DType::kInt32;  // 4-byte elements: float32
  os.fmultiplier = typed_ptr<float>(w_scale, "weight_scale", n);
  os.fbias = bias ? typed_ptr<float>(*bias, "bias", n) : nullptr;
  const auto pb = pack_for(kernel, b, b_zp, nullptr, os);
  const float* sp = typed_ptr<float>(a_scale, "a_scale", count);
  const int32_t* zp = typed_ptr<int32_t>(a_zp, "a_zero_point", count);
  if (out.ndim() != 2 || out.shape(0) != m || out.shape(1) != n || !has_dtype<float>(out))
    throw py::value_error("out must be float32 [M, N]");
  require_writeable_c_contiguous(out, "out");
  float* c = static_cast<float*>(out.mutable_data());
  const DType a_dt = dtype_of(a, "a");
  const void* a_p = a.data();
  py::gil_scoped_release release;
  gemm_packed_float_with(*pb, kernel, a_p, a_dt, m, lda, sp, zp, per_row, c, n);
}

}  // namespace

void register_testing(py::module_& m) {
  m.def("_gemm_with_kernel", &gemm_with_kernel, py::arg("kernel"), py::arg("a"), py::arg("a_zero_point"), py::arg("b"),
        py::arg("b_zero_point"), py::arg("bias"), py::arg("stage"), py::arg("out"), py::arg("split") = 0,
        py::arg("out2") = py::none(),
        "Tests only: the GEMM run by the named kernel of kernels.inc (a may have strided rows); with out2, "
        "columns >= split are stored there (the split store).");
  m.def("_gemm_float_with_kernel", &gemm_float_with_kernel, py::arg("kernel"), py::arg("a"), py::arg("a_scale"),
        py::arg("a_zero_point"), py::arg("per_row"), py::arg("b"), py::arg("b_zero_point"), py::arg("weight_scale"),
        py::arg("bias"), py::arg("out"), "Tests only: the float32 output form run by the named kernel.");
}

}  // namespace qk::bind
