// register_dynamic.cc: bindings of dynamic quantization: the activation quantizer (eq. (18), (4)) and the
// packed GEMM with the float32 output form (eqs. (19)-(20)); the GIL is released around the work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <tuple>
#include <vector>

#include "bindings/common.h"
#include "qkern/dynamic_quant.h"
#include "qkern/gemm.h"
#include "qkern/isa.h"
#include "qkern/kernel_list.h"

namespace qk::bind {

namespace {

DynamicScheme scheme_of(int scheme) {
  if (scheme != 0 && scheme != 1) throw py::value_error("scheme must be 0 (uint8 affine) or 1 (int8 symmetric)");
  return static_cast<DynamicScheme>(scheme);
}

// x: float32 [M, K], C-contiguous.
const float* float_matrix(const py::array& x, const char* name, py::ssize_t k) {
  if (x.ndim() != 2 || x.shape(1) != k)
    throw py::value_error(std::string(name) + " must be [M, " + std::to_string(k) + "]");
  return typed_ptr<float>(x, name, x.size());
}

float* float_out(py::array& out, py::ssize_t m, py::ssize_t n) {
  if (out.ndim() != 2 || out.shape(0) != m || out.shape(1) != n) throw py::value_error("out has the wrong shape");
  if (!out.dtype().is(py::dtype::of<float>())) throw py::type_error("out must have dtype float32");
  require_writeable_c_contiguous(out, "out");
  return static_cast<float*>(out.mutable_data());
}

std::tuple<py::array, py::array_t<float>, py::array_t<int32_t>> quantize_dynamic_py(const py::array& x, int scheme,
                                                                                    bool per_row, bool reduce_range) {
  if (x.ndim() != 2) throw py::value_error("x must be 2-D");
  const DynamicScheme s = scheme_of(scheme);
  const float* xp = float_matrix(x, "x", x.shape(1));
  const py::ssize_t m = x.shape(0), k = x.shape(1), count = per_row ? m : 1;
  py::array q = s == DynamicScheme::kAffineUint8 ? py::array(py::array_t<uint8_t>({m, k})) : py::array(py::array_t<int8_t>({m, k}));
  py::array_t<float> scale(count);
  py::array_t<int32_t> zp(count);
  void* qp = q.mutable_data();
  float* sp = scale.mutable_data();
  int32_t* zpp = zp.mutable_data();
  {
    py::gil_scoped_release release;
    quantize_dynamic(xp, m, k, k, s, per_row, reduce_range, qp, sp, zpp);
  }
  return {q, scale, zp};
}

// B[K, N] packed once for the ISA selected at construction, with weight scales and float bias (DynamicLinear
// in python/qkern/dynamic.py). a_bits 7: every call's activations are uint8 below 128 (uint8 with
// reduce_range), which the ISA's 7-bit kernel needs; the calls check it.
class DynamicGemmCore {
 public:
  DynamicGemmCore(const py::array& b, const py::array& b_zp, const py::array& w_scale,
                  const std::optional<py::array>& bias, int a_bits)
      : a_bits_(a_bits) {
    if (a_bits != 7 && a_bits != 8) throw py::value_error("a_bits must be 7 or 8");
    if (b.ndim() != 2) throw py::value_error("b must be 2-D");
    const DType bt = dtype_of(b, "b");
    if (bt == DType::kInt32) throw py::type_error("b must have dtype uint8 or int8");
    require_c_contiguous(b, "b");
    const py::ssize_t k = b.shape(0), n = b.shape(1);
    const int32_t* zp = typed_ptr<int32_t>(b_zp, "b_zero_point", n);
    OutputStage os;
    os.mode = RequantMode::kFloat;
    os.out_dtype = DType::kInt32;  // 4-byte elements: float32
    os.fmultiplier = typed_ptr<float>(w_scale, "weight_scale", n);
    os.fbias = bias ? typed_ptr<float>(*bias, "bias", n) : nullptr;
    py::gil_scoped_release release;
    packed_ = pack_b(current_isa(), b.data(), bt, k, n, n, zp, nullptr, os, a_bits);
  }

  // out = eq. (19) of a (already quantized) with its scale(s) and zero point(s): one per row or one in all.
  void run_quantized(const py::array& a, const py::array& a_scale, const py::array& a_zp, bool per_row,
                     py::array& out) const {
    const PackedB& pb = *packed_;
    if (a.ndim() != 2 || a.shape(1) != pb.k) throw py::value_error("a must be [M, K] with K matching the weights");
    const DType at = dtype_of(a, "a");
    if (at == DType::kInt32) throw py::type_error("a must have dtype uint8 or int8");
    require_c_contiguous(a, "a");
    const py::ssize_t m = a.shape(0), count = per_row ? m : 1;
    const float* sp = typed_ptr<float>(a_scale, "a_scale", count);
    const int32_t* zp = typed_ptr<int32_t>(a_zp, "a_zero_point", count);
    // The zero points never reach the kernel here (eq. (20)): only the values carry the 7-bit promise.
    if (a_bits_ == 7) check_seven_bit_values(a, at, "a");
    const int32_t lo = at == DType::kUint8 ? 0 : -128, hi = at == DType::kUint8 ? 255 : 127;
    for (py::ssize_t i = 0; i < count; ++i) {
      if (zp[i] < lo || zp[i] > hi) throw py::value_error("a_zero_point is out of the range of a's dtype");
      if (!(sp[i] > 0.0f) || !std::isfinite(sp[i])) throw py::value_error("a_scale must be positive and finite");
    }
    float* cp = float_out(out, m, pb.n);
    check_out_disjoint(out, a);
    const void* ap = a.data();
    py::gil_scoped_release release;
    gemm_packed_float(pb, ap, at, m, pb.k, sp, zp, per_row, cp, pb.n);
  }

  // out = eq. (19) after quantizing x (float32 [M, K]) by eqs. (18) and (4).
  void run(const py::array& x, int scheme, bool per_row, bool reduce_range, py::array& out) const {
    const PackedB& pb = *packed_;
    const DynamicScheme s = scheme_of(scheme);
    if (a_bits_ == 7 && (s != DynamicScheme::kAffineUint8 || !reduce_range))
      throw py::value_error("a layer built for 7-bit activations runs uint8 with reduce_range only");
    const float* xp = float_matrix(x, "x", pb.k);
    const int64_t m = x.shape(0);
    float* cp = float_out(out, m, pb.n);
    check_out_disjoint(out, x);
    py::gil_scoped_release release;
    // Per thread: several Python threads may share one layer.
    thread_local std::vector<uint8_t> q;
    thread_local std::vector<float> scale;
    thread_local std::vector<int32_t> zp;
    const size_t count = static_cast<size_t>(per_row ? std::max<int64_t>(m, 1) : 1);
    q.resize(static_cast<size_t>(std::max<int64_t>(m * pb.k, 1)));
    scale.resize(count);
    zp.resize(count);
    quantize_dynamic(xp, m, pb.k, pb.k, s, per_row, reduce_range, q.data(), scale.data(), zp.data());
    const DType at = s == DynamicScheme::kAffineUint8 ? DType::kUint8 : DType::kInt8;
    gemm_packed_float(pb, q.data(), at, m, pb.k, scale.data(), zp.data(), per_row, cp, pb.n);
  }

  std::string isa() const { return isa_name(packed_->isa); }
  std::string kernel() const { return packed_->kernel ? packed_->kernel->name : "scalar"; }
  int64_t k() const { return packed_->k; }
  int64_t n() const { return packed_->n; }

 private:
  std::unique_ptr<PackedB> packed_;
  int a_bits_;
};

}  // namespace

void register_dynamic(py::module_& m) {
  m.def("quantize_dynamic", &quantize_dynamic_py, py::arg("x"), py::arg("scheme"), py::arg("per_row"),
        py::arg("reduce_range"),
        "x float32 [M, K] -> (q [M, K], scale [M or 1], zero_point [M or 1]) by eqs. (18) and (4) (internal).");
  m.def(
      "choose_dynamic_qparams",
      [](float min_val, float max_val, int scheme, bool reduce_range) {
        if (!std::isfinite(min_val) || !std::isfinite(max_val)) throw py::value_error("min/max must be finite");
        const ActQParams p = choose_dynamic_qparams(min_val, max_val, scheme_of(scheme), reduce_range);
        return std::make_tuple(p.scale, p.zero_point);
      },
      py::arg("min_val"), py::arg("max_val"), py::arg("scheme"), py::arg("reduce_range"),
      "Eq. (18) for one range (internal).");
  py::class_<DynamicGemmCore>(m, "DynamicGemm", "B packed once with the float32 output stage (internal).")
      .def(py::init<const py::array&, const py::array&, const py::array&, const std::optional<py::array>&, int>(),
           py::arg("b"), py::arg("b_zero_point"), py::arg("weight_scale"), py::arg("bias"), py::arg("a_bits") = 8)
      .def("run", &DynamicGemmCore::run, py::arg("x"), py::arg("scheme"), py::arg("per_row"), py::arg("reduce_range"),
           py::arg("out"))
      .def("run_quantized", &DynamicGemmCore::run_quantized, py::arg("a"), py::arg("a_scale"),
           py::arg("a_zero_point"), py::arg("per_row"), py::arg("out"))
      .def_property_readonly("isa", &DynamicGemmCore::isa)
      .def_property_readonly("kernel", &DynamicGemmCore::kernel)
      .def_property_readonly("k", &DynamicGemmCore::k)
      .def_property_readonly("n", &DynamicGemmCore::n);
}

}  // namespace qk::bind
