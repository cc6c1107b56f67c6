// register_ops.cc: bindings of gemm, conv3x3 and deconv2x2 (scalar native kernels); the GIL is released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "bindings/common.h"
#include "qkern/gemm.h"
#include "qkern/isa.h"
#include "qkern/ops.h"

namespace qk::bind {

namespace {

const int32_t* optional_bias(const std::optional<py::array>& bias, py::ssize_t n) {
  return bias ? typed_ptr<int32_t>(*bias, "bias", n) : nullptr;
}

DType quant_dtype(const py::array& a, const char* name) {
  const DType t = dtype_of(a, name);
  if (t == DType::kInt32) throw py::type_error(std::string(name) + " must have dtype uint8 or int8");
  require_c_contiguous(a, name);
  return t;
}

void check_shape(const py::array& a, const char* name, std::initializer_list<py::ssize_t> shape) {
  if (a.ndim() != static_cast<py::ssize_t>(shape.size())) throw py::value_error(std::string(name) + " has the wrong rank");
  py::ssize_t i = 0;
  for (py::ssize_t s : shape)
    if (a.shape(i++) != s) throw py::value_error(std::string(name) + " has the wrong shape");
}

// Weights packed once for the ISA selected at construction (PackedGemm in python/qkern/packed.py).
class PackedGemmCore {
 public:
  PackedGemmCore(const py::array& b, const py::array& b_zp, const std::optional<py::array>& bias,
                 const StageArgs& stage, const std::string& out_dtype) {
    if (b.ndim() != 2) throw py::value_error("b must be 2-D");
    const DType bt = quant_dtype(b, "b");
    const py::ssize_t k = b.shape(0), n = b.shape(1);
    const DType out = out_dtype == "int32" ? DType::kInt32 : out_dtype == "uint8" ? DType::kUint8 : DType::kInt8;
    const OutputStage os = make_stage(stage, n, out);
    const int32_t* zp = typed_ptr<int32_t>(b_zp, "b_zero_point", n);
    const int32_t* bi = optional_bias(bias, n);
    py::gil_scoped_release release;
    packed_ = pack_b(current_isa(), b.data(), bt, k, n, n, zp, bi, os);
  }

  void run(const py::array& a, int32_t a_zp, py::array& out) const {
    const PackedB& pb = *packed_;
    if (a.ndim() != 2 || a.shape(1) != pb.k) throw py::value_error("a must be [M, K] with K matching the weights");
    const DType at = quant_dtype(a, "a");
    check_shape(out, "out", {a.shape(0), pb.n});
    require_c_contiguous(out, "out");
    if (dtype_of(out, "out") != pb.stage.out_dtype) throw py::type_error("out has the wrong dtype");
    const void* ap = a.data();
    void* cp = out.mutable_data();
    const int64_t m = a.shape(0);
    py::gil_scoped_release release;
    gemm_packed(pb, ap, at, m, pb.k, a_zp, cp, pb.n);
  }

  std::string isa() const { return isa_name(packed_->isa); }
  int64_t k() const { return packed_->k; }
  int64_t n() const { return packed_->n; }

 private:
  std::unique_ptr<PackedB> packed_;
};

void gemm(const py::array& a, const py::array& b, int32_t a_zp, const py::array& b_zp,
          const std::optional<py::array>& bias, const StageArgs& stage, py::array& out) {
  if (a.ndim() != 2 || b.ndim() != 2 || a.shape(1) != b.shape(0)) throw py::value_error("gemm: need a[M,K], b[K,N]");
  const DType out_t = dtype_of(out, "out");
  const PackedGemmCore packed(b, b_zp, bias, stage, out_t == DType::kInt32 ? "int32" : dtype_name(out_t));
  packed.run(a, a_zp, out);
}

void conv3x3(const py::array& x, const py::array& w, int stride, int padding, int32_t x_zp, const py::array& w_zp,
             const std::optional<py::array>& bias, const StageArgs& stage, py::array& out) {
  if (x.ndim() != 4 || w.ndim() != 4) throw py::value_error("conv3x3: need x[N,H,W,C], w[O,3,3,C]");
  Conv3x3Problem p;
  p.batch = x.shape(0);
  p.height = x.shape(1);
  p.width = x.shape(2);
  p.in_channels = x.shape(3);
  p.out_channels = w.shape(0);
  check_shape(w, "w", {p.out_channels, 3, 3, p.in_channels});
  if ((stride != 1 && stride != 2) || (padding != 0 && padding != 1)) throw py::value_error("stride/padding");
  p.stride = stride;
  p.padding = padding;
  if (p.height + 2 * padding < 3 || p.width + 2 * padding < 3) throw py::value_error("input smaller than the kernel");
  p.x = x.data();
  p.x_type = quant_dtype(x, "x");
  p.w = w.data();
  p.w_type = quant_dtype(w, "w");
  p.x_zero_point = x_zp;
  p.w_zero_point = typed_ptr<int32_t>(w_zp, "w_zero_point", p.out_channels);
  p.bias = optional_bias(bias, p.out_channels);
  check_shape(out, "out", {p.batch, p.out_height(), p.out_width(), p.out_channels});
  require_c_contiguous(out, "out");
  p.stage = make_stage(stage, p.out_channels, dtype_of(out, "out"));
  p.out = out.mutable_data();
  py::gil_scoped_release release;
  conv3x3_scalar(p);
}

void deconv2x2(const py::array& x, const py::array& w, int32_t x_zp, const py::array& w_zp,
               const std::optional<py::array>& bias, const StageArgs& stage, py::array& out) {
  if (x.ndim() != 4 || w.ndim() != 4) throw py::value_error("deconv2x2: need x[N,H,W,C], w[C,2,2,O]");
  Deconv2x2Problem p;
  p.batch = x.shape(0);
  p.height = x.shape(1);
  p.width = x.shape(2);
  p.in_channels = x.shape(3);
  p.out_channels = w.shape(3);
  check_shape(w, "w", {p.in_channels, 2, 2, p.out_channels});
  p.x = x.data();
  p.x_type = quant_dtype(x, "x");
  p.w = w.data();
  p.w_type = quant_dtype(w, "w");
  p.x_zero_point = x_zp;
  p.w_zero_point = typed_ptr<int32_t>(w_zp, "w_zero_point", p.out_channels);
  p.bias = optional_bias(bias, p.out_channels);
  check_shape(out, "out", {p.batch, 2 * p.height, 2 * p.width, p.out_channels});
  require_c_contiguous(out, "out");
  p.stage = make_stage(stage, p.out_channels, dtype_of(out, "out"));
  p.out = out.mutable_data();
  py::gil_scoped_release release;
  deconv2x2_scalar(p);
}

}  // namespace

void register_ops(py::module_& m) {
  py::class_<StageArgs>(m, "StageArgs", "Requant parameters expanded per channel (internal).")
      .def(py::init<int, py::array, py::array, py::array, int32_t, int32_t, int32_t>(), py::arg("mode"),
           py::arg("multiplier"), py::arg("shift"), py::arg("fmultiplier"), py::arg("zero_point"), py::arg("qmin"),
           py::arg("qmax"));
  py::class_<PackedGemmCore>(m, "PackedGemm", "B packed once for the selected ISA (internal).")
      .def(py::init<const py::array&, const py::array&, const std::optional<py::array>&, const StageArgs&,
                    const std::string&>(),
           py::arg("b"), py::arg("b_zero_point"), py::arg("bias"), py::arg("stage"), py::arg("out_dtype"))
      .def("run", &PackedGemmCore::run, py::arg("a"), py::arg("a_zero_point"), py::arg("out"))
      .def_property_readonly("isa", &PackedGemmCore::isa)
      .def_property_readonly("k", &PackedGemmCore::k)
      .def_property_readonly("n", &PackedGemmCore::n);
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("a_zero_point"), py::arg("b_zero_point"), py::arg("bias"),
        py::arg("stage"), py::arg("out"));
  m.def("conv3x3", &conv3x3, py::arg("x"), py::arg("w"), py::arg("stride"), py::arg("padding"),
        py::arg("x_zero_point"), py::arg("w_zero_point"), py::arg("bias"), py::arg("stage"), py::arg("out"));
  m.def("deconv2x2", &deconv2x2, py::arg("x"), py::arg("w"), py::arg("x_zero_point"), py::arg("w_zero_point"),
        py::arg("bias"), py::arg("stage"), py::arg("out"));
}

}  // namespace qk::bind
