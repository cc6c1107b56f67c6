// register_ops.cc: bindings of gemm, conv3x3 and deconv2x2 and their packed forms; the GIL is released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "bindings/common.h"
#include "qkern/conv.h"
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

DType out_type(const std::string& name) {
  return name == "int32" ? DType::kInt32 : name == "uint8" ? DType::kUint8 : DType::kInt8;
}

void check_out(py::array& out, std::initializer_list<py::ssize_t> shape, DType expected) {
  check_shape(out, "out", shape);
  require_writeable_c_contiguous(out, "out");
  if (dtype_of(out, "out") != expected) throw py::type_error("out has the wrong dtype");
}

// The activation: read in place as rows of its last dimension, so it must be one contiguous block, and the
// output must not share memory with it.
void check_input(const py::array& in, const char* name, const py::array& out) {
  require_c_contiguous(in, name);
  check_out_disjoint(out, in);
}

struct ConvWeights;
const int32_t* bias_ptr(const ConvWeights& cw);
void init_weights(ConvWeights& cw, const py::array& w, const py::array& w_zp, const std::optional<py::array>& bias,
                  const StageArgs& stage, const std::string& out_dtype, py::ssize_t channels);

// Weights packed once for the ISA selected at construction (PackedGemm in python/qkern/packed.py).
class PackedGemmCore {
 public:
  PackedGemmCore(const py::array& b, const py::array& b_zp, const std::optional<py::array>& bias,
                 const StageArgs& stage, const std::string& out_dtype) {
    if (b.ndim() != 2) throw py::value_error("b must be 2-D");
    const DType bt = quant_dtype(b, "b");
    const py::ssize_t k = b.shape(0), n = b.shape(1);
    const OutputStage os = make_stage(stage, n, out_type(out_dtype));
    const int32_t* zp = typed_ptr<int32_t>(b_zp, "b_zero_point", n);
    const int32_t* bi = optional_bias(bias, n);
    py::gil_scoped_release release;
    packed_ = pack_b(current_isa(), b.data(), bt, k, n, n, zp, bi, os);
  }

  void run(const py::array& a, int32_t a_zp, py::array& out) const {
    const PackedB& pb = *packed_;
    if (a.ndim() != 2 || a.shape(1) != pb.k) throw py::value_error("a must be [M, K] with K matching the weights");
    const DType at = quant_dtype(a, "a");
    check_out(out, {a.shape(0), pb.n}, pb.stage.out_dtype);
    check_input(a, "a", out);
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

// The scalar kernels' view of conv weights (the scalar ISA has no packed conv form).
struct ConvWeights {
  py::array w, zp;
  std::optional<py::array> bias;
  StageArgs stage_args;
  DType w_type = DType::kInt8;
  OutputStage stage;
};

const int32_t* bias_ptr(const ConvWeights& cw) {
  return cw.bias ? static_cast<const int32_t*>(cw.bias->data()) : nullptr;
}

void init_weights(ConvWeights& cw, const py::array& w, const py::array& w_zp, const std::optional<py::array>& bias,
                  const StageArgs& stage, const std::string& out_dtype, py::ssize_t channels) {
  cw.w_type = quant_dtype(w, "w");
  cw.w = w;
  typed_ptr<int32_t>(w_zp, "w_zero_point", channels);
  cw.zp = w_zp;
  optional_bias(bias, channels);
  cw.bias = bias;
  cw.stage_args = stage;
  cw.stage = make_stage(cw.stage_args, channels, out_type(out_dtype));
}

// The scalar kernels' problem descriptor (Conv3x3Problem or Deconv2x2Problem) for one call.
template <class Problem>
Problem scalar_problem(const ConvWeights& cw, const ConvInput& in, int64_t in_channels, int64_t out_channels,
                       const void* x, DType x_type, int32_t x_zp, void* out) {
  Problem p;
  p.batch = in.batch;
  p.height = in.height;
  p.width = in.width;
  p.in_channels = in_channels;
  p.out_channels = out_channels;
  p.x = x;
  p.x_type = x_type;
  p.w = cw.w.data();
  p.w_type = cw.w_type;
  p.x_zero_point = x_zp;
  p.w_zero_point = static_cast<const int32_t*>(cw.zp.data());
  p.bias = bias_ptr(cw);
  p.stage = cw.stage;
  p.out = out;
  return p;
}

// conv3x3 weights w[O, 3, 3, C] packed once for the ISA selected at construction, with stride and padding.
class PackedConv3x3Core {
 public:
  PackedConv3x3Core(const py::array& w, const py::array& w_zp, const std::optional<py::array>& bias,
                    const StageArgs& stage, const std::string& out_dtype, int stride, int padding)
      : stride_(stride), padding_(padding), isa_(current_isa()) {
    if (w.ndim() != 4 || w.shape(1) != 3 || w.shape(2) != 3) throw py::value_error("w must be [O, 3, 3, C]");
    if ((stride != 1 && stride != 2) || (padding != 0 && padding != 1))
      throw py::value_error("stride must be 1 or 2 and padding 0 or 1");
    out_channels_ = w.shape(0);
    in_channels_ = w.shape(3);
    init_weights(weights_, w, w_zp, bias, stage, out_dtype, out_channels_);
    if (isa_ == Isa::kScalar) return;
    const ConvWeights& cw = weights_;
    py::gil_scoped_release release;
    packed_ = pack_conv3x3(isa_, cw.w.data(), cw.w_type, out_channels_, in_channels_,
                           static_cast<const int32_t*>(cw.zp.data()), bias_ptr(cw), cw.stage);
  }

  void run(const py::array& x, int32_t x_zp, py::array& out) const {
    if (x.ndim() != 4 || x.shape(3) != in_channels_) throw py::value_error("x must be [N, H, W, C] with C matching w");
    ConvInput in{x.shape(0), x.shape(1), x.shape(2), in_channels_, stride_, padding_};
    if (in.height + 2 * padding_ < 3 || in.width + 2 * padding_ < 3) throw py::value_error("x is smaller than the kernel");
    const DType xt = quant_dtype(x, "x");
    check_out(out, {in.batch, in.out_height(), in.out_width(), out_channels_}, weights_.stage.out_dtype);
    check_input(x, "x", out);
    const void* xp = x.data();
    void* op = out.mutable_data();
    py::gil_scoped_release release;
    if (packed_) return conv3x3_packed(*packed_, in, xp, xt, x_zp, op);
    auto p = scalar_problem<Conv3x3Problem>(weights_, in, in_channels_, out_channels_, xp, xt, x_zp, op);
    p.stride = stride_;
    p.padding = padding_;
    conv3x3_scalar(p);
  }

  std::string isa() const { return isa_name(isa_); }

 private:
  int stride_, padding_;
  Isa isa_;
  int64_t out_channels_ = 0, in_channels_ = 0;
  ConvWeights weights_;
  std::unique_ptr<PackedB> packed_;
};

// conv_transpose2x2 weights w[C, 2, 2, O] packed once for the ISA selected at construction.
class PackedDeconv2x2Core {
 public:
  PackedDeconv2x2Core(const py::array& w, const py::array& w_zp, const std::optional<py::array>& bias,
                      const StageArgs& stage, const std::string& out_dtype)
      : isa_(current_isa()) {
    if (w.ndim() != 4 || w.shape(1) != 2 || w.shape(2) != 2) throw py::value_error("w must be [C, 2, 2, O]");
    in_channels_ = w.shape(0);
    out_channels_ = w.shape(3);
    init_weights(weights_, w, w_zp, bias, stage, out_dtype, out_channels_);
    if (isa_ == Isa::kScalar) return;
    const ConvWeights& cw = weights_;
    py::gil_scoped_release release;
    packed_ = pack_deconv2x2(isa_, cw.w.data(), cw.w_type, in_channels_, out_channels_,
                             static_cast<const int32_t*>(cw.zp.data()), bias_ptr(cw), cw.stage);
  }

  void run(const py::array& x, int32_t x_zp, py::array& out) const {
    if (x.ndim() != 4 || x.shape(3) != in_channels_) throw py::value_error("x must be [N, H, W, C] with C matching w");
    const ConvInput in{x.shape(0), x.shape(1), x.shape(2), in_channels_, 2, 0};
    const DType xt = quant_dtype(x, "x");
    check_out(out, {in.batch, 2 * in.height, 2 * in.width, out_channels_}, weights_.stage.out_dtype);
    check_input(x, "x", out);
    const void* xp = x.data();
    void* op = out.mutable_data();
    py::gil_scoped_release release;
    if (packed_) return deconv2x2_packed(*packed_, in, xp, xt, x_zp, op);
    deconv2x2_scalar(scalar_problem<Deconv2x2Problem>(weights_, in, in_channels_, out_channels_, xp, xt, x_zp, op));
  }

  std::string isa() const { return isa_name(isa_); }

 private:
  Isa isa_;
  int64_t out_channels_ = 0, in_channels_ = 0;
  ConvWeights weights_;
  std::unique_ptr<PackedB> packed_;
};

void conv3x3(const py::array& x, const py::array& w, int stride, int padding, int32_t x_zp, const py::array& w_zp,
             const std::optional<py::array>& bias, const StageArgs& stage, py::array& out) {
  const DType out_t = dtype_of(out, "out");
  const PackedConv3x3Core packed(w, w_zp, bias, stage, out_t == DType::kInt32 ? "int32" : dtype_name(out_t), stride,
                                 padding);
  packed.run(x, x_zp, out);
}

void deconv2x2(const py::array& x, const py::array& w, int32_t x_zp, const py::array& w_zp,
               const std::optional<py::array>& bias, const StageArgs& stage, py::array& out) {
  const DType out_t = dtype_of(out, "out");
  const PackedDeconv2x2Core packed(w, w_zp, bias, stage, out_t == DType::kInt32 ? "int32" : dtype_name(out_t));
  packed.run(x, x_zp, out);
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
  py::class_<PackedConv3x3Core>(m, "PackedConv3x3", "conv3x3 weights packed once for the selected ISA (internal).")
      .def(py::init<const py::array&, const py::array&, const std::optional<py::array>&, const StageArgs&,
                    const std::string&, int, int>(),
           py::arg("w"), py::arg("w_zero_point"), py::arg("bias"), py::arg("stage"), py::arg("out_dtype"),
           py::arg("stride"), py::arg("padding"))
      .def("run", &PackedConv3x3Core::run, py::arg("x"), py::arg("x_zero_point"), py::arg("out"))
      .def_property_readonly("isa", &PackedConv3x3Core::isa);
  py::class_<PackedDeconv2x2Core>(m, "PackedDeconv2x2",
                                  "conv_transpose2x2 weights packed once for the selected ISA (internal).")
      .def(py::init<const py::array&, const py::array&, const std::optional<py::array>&, const StageArgs&,
                    const std::string&>(),
           py::arg("w"), py::arg("w_zero_point"), py::arg("bias"), py::arg("stage"), py::arg("out_dtype"))
      .def("run", &PackedDeconv2x2Core::run, py::arg("x"), py::arg("x_zero_point"), py::arg("out"))
      .def_property_readonly("isa", &PackedDeconv2x2Core::isa);
  m.def("conv3x3", &conv3x3, py::arg("x"), py::arg("w"), py::arg("stride"), py::arg("padding"),
        py::arg("x_zero_point"), py::arg("w_zero_point"), py::arg("bias"), py::arg("stage"), py::arg("out"));
  m.def("deconv2x2", &deconv2x2, py::arg("x"), py::arg("w"), py::arg("x_zero_point"), py::arg("w_zero_point"),
        py::arg("bias"), py::arg("stage"), py::arg("out"));
}

}  // namespace qk::bind
