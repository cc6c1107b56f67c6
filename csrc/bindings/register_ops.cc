// register_ops.cc: bindings of gemm, conv3x3 and deconv2x2 and their packed forms; the GIL is released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>

#include "bindings/bound_call.h"
#include "bindings/common.h"
#include "qkern/conv.h"
#include "qkern/conv_op.h"
#include "qkern/conv_shape.h"
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

int checked_input_bits(int bits) {
  if (bits != 7 && bits != 8) throw py::value_error("input_bits must be 7 or 8");
  return bits;
}

// The promise of weights packed for 7-bit inputs (input_bits 7): the input is uint8 and it and its zero
// point (the padding's value) are below 128, on every ISA (the 7-bit kernels are exact only there). The type
// and the zero point are checked here, once; the values by require_seven_bit_bytes, in the call's Work.
void check_seven_bit(int bits, DType t, int32_t zero_point, const char* name) {
  if (bits == 8) return;
  if (t != DType::kUint8)
    throw py::type_error(std::string(name) + " must be uint8: the weights were packed for 7-bit inputs");
  if (zero_point < 0 || zero_point > 127)
    throw py::value_error(std::string(name) + "'s zero point must be in [0, 127]: the weights were packed for 7-bit inputs");
}

// The byte count the Work of a 7-bit call scans before it runs (require_seven_bit_bytes), or 0 for 8 bits.
int64_t seven_bit_scan(int bits, const py::array& x) { return bits == 7 ? static_cast<int64_t>(x.size()) : 0; }

// A conv op's call (Conv3x3Op, Deconv2x2Op): the 7-bit value scan, then the op; `op` is read when it runs.
template <class Op>
Work conv_op_work(const std::unique_ptr<Op>& op, const ConvInput& in, const void* xp, DType xt, int32_t x_zp, void* out,
                  int64_t scan) {
  return [&op, in, xp, xt, x_zp, out, scan] {
    require_seven_bit_bytes(xp, scan, "x");
    op->run(in, xp, xt, x_zp, out);
  };
}

// Weights packed once for the ISA selected at construction (PackedGemm in python/qkern/packed.py).
class PackedGemmCore {
 public:
  PackedGemmCore(const py::array& b, const py::array& b_zp, const std::optional<py::array>& bias,
                 const StageArgs& stage, const std::string& out_dtype, int input_bits = 8)
      : input_bits_(checked_input_bits(input_bits)) {
    if (b.ndim() != 2) throw py::value_error("b must be 2-D");
    const DType bt = quant_dtype(b, "b");
    const py::ssize_t k = b.shape(0), n = b.shape(1);
    const OutputStage os = make_stage(stage, n, out_type(out_dtype));
    const int32_t* zp = typed_ptr<int32_t>(b_zp, "b_zero_point", n);
    const int32_t* bi = optional_bias(bias, n);
    py::gil_scoped_release release;
    packed_ = pack_b(current_isa(), b.data(), bt, k, n, n, zp, bi, os, input_bits);
  }

  // The call on these operands, checked (bound_call.h).
  Work work(const py::array& a, int32_t a_zp, py::array& out) const {
    const PackedB& pb = *packed_;
    if (a.ndim() != 2 || a.shape(1) != pb.k) throw py::value_error("a must be [M, K] with K matching the weights");
    const DType at = quant_dtype(a, "a");
    check_seven_bit(input_bits_, at, a_zp, "a");
    check_out(out, {a.shape(0), pb.n}, pb.stage.out_dtype);
    check_input(a, "a", out);
    const void* ap = a.data();
    void* cp = out.mutable_data();
    const int64_t m = a.shape(0), scan = seven_bit_scan(input_bits_, a);
    return [&pb, ap, at, m, a_zp, cp, scan] {
      require_seven_bit_bytes(ap, scan, "a");
      gemm_packed(pb, ap, at, m, pb.k, a_zp, cp, pb.n);
    };
  }
  void run(const py::array& a, int32_t a_zp, py::array& out) const { run_released(work(a, a_zp, out)); }

  std::string isa() const { return isa_name(packed_->isa); }
  int64_t k() const { return packed_->k; }
  int64_t n() const { return packed_->n; }

 private:
  int input_bits_;
  std::unique_ptr<PackedB> packed_;
};

void gemm(const py::array& a, const py::array& b, int32_t a_zp, const py::array& b_zp,
          const std::optional<py::array>& bias, const StageArgs& stage, py::array& out) {
  if (a.ndim() != 2 || b.ndim() != 2 || a.shape(1) != b.shape(0)) throw py::value_error("gemm: need a[M,K], b[K,N]");
  const DType out_t = dtype_of(out, "out");
  const PackedGemmCore packed(b, b_zp, bias, stage, out_t == DType::kInt32 ? "int32" : dtype_name(out_t));
  packed.run(a, a_zp, out);
}

// The Python arrays behind a conv op's weights: held here so that the pointers the core op keeps (and
// its scalar path reads at every call) stay valid for the op's lifetime.
struct HeldWeights {
  py::array w, zp;
  std::optional<py::array> bias;
  StageArgs stage_args;
};

ConvWeights hold_weights(HeldWeights& held, const py::array& w, const py::array& w_zp,
                         const std::optional<py::array>& bias, const StageArgs& stage, const std::string& out_dtype,
                         py::ssize_t in_channels, py::ssize_t out_channels) {
  ConvWeights cw;
  cw.w_type = quant_dtype(w, "w");
  cw.in_channels = in_channels;
  cw.out_channels = out_channels;
  held.w = w;
  held.zp = w_zp;
  held.bias = bias;
  held.stage_args = stage;
  cw.w = held.w.data();
  cw.w_zero_point = typed_ptr<int32_t>(held.zp, "w_zero_point", out_channels);
  cw.bias = optional_bias(held.bias, out_channels);
  cw.stage = make_stage(held.stage_args, out_channels, out_type(out_dtype));
  return cw;
}

// conv3x3 weights w[O, 3, 3, C] packed once for the ISA selected at construction, with stride and padding.
class PackedConv3x3Core {
 public:
  PackedConv3x3Core(const py::array& w, const py::array& w_zp, const std::optional<py::array>& bias,
                    const StageArgs& stage, const std::string& out_dtype, int stride, int padding,
                    int input_bits = 8)
      : input_bits_(checked_input_bits(input_bits)) {
    if (w.ndim() != 4 || w.shape(1) != 3 || w.shape(2) != 3) throw py::value_error("w must be [O, 3, 3, C]");
    if ((stride != 1 && stride != 2) || (padding != 0 && padding != 1))
      throw py::value_error("stride must be 1 or 2 and padding 0 or 1");
    out_channels_ = w.shape(0);
    in_channels_ = w.shape(3);
    const ConvWeights cw = hold_weights(held_, w, w_zp, bias, stage, out_dtype, in_channels_, out_channels_);
    out_dtype_ = cw.stage.out_dtype;
    const Isa isa = current_isa();
    py::gil_scoped_release release;
    op_ = std::make_unique<Conv3x3Op>(isa, cw, stride, padding, input_bits);
  }

  Work work(const py::array& x, int32_t x_zp, py::array& out) const {
    if (x.ndim() != 4 || x.shape(3) != in_channels_) throw py::value_error("x must be [N, H, W, C] with C matching w");
    const ConvInput in = op_->input(x.shape(0), x.shape(1), x.shape(2));
    if (!conv3x3_fits(in.height, in.width, in.padding)) throw py::value_error("x is smaller than the kernel");
    const DType xt = quant_dtype(x, "x");
    check_seven_bit(input_bits_, xt, x_zp, "x");
    check_out(out, {in.batch, in.out_height(), in.out_width(), out_channels_}, out_dtype_);
    check_input(x, "x", out);
    const void* xp = x.data();
    void* op = out.mutable_data();
    return conv_op_work(op_, in, xp, xt, x_zp, op, seven_bit_scan(input_bits_, x));
  }
  void run(const py::array& x, int32_t x_zp, py::array& out) const { run_released(work(x, x_zp, out)); }

  std::string isa() const { return isa_name(op_->isa()); }

 private:
  int input_bits_;
  int64_t out_channels_ = 0, in_channels_ = 0;
  DType out_dtype_ = DType::kInt32;
  HeldWeights held_;
  std::unique_ptr<Conv3x3Op> op_;
};

// conv_transpose2x2 weights w[C, 2, 2, O] packed once for the ISA selected at construction.
class PackedDeconv2x2Core {
 public:
  PackedDeconv2x2Core(const py::array& w, const py::array& w_zp, const std::optional<py::array>& bias,
                      const StageArgs& stage, const std::string& out_dtype, int input_bits = 8)
      : input_bits_(checked_input_bits(input_bits)) {
    if (w.ndim() != 4 || w.shape(1) != 2 || w.shape(2) != 2) throw py::value_error("w must be [C, 2, 2, O]");
    in_channels_ = w.shape(0);
    out_channels_ = w.shape(3);
    const ConvWeights cw = hold_weights(held_, w, w_zp, bias, stage, out_dtype, in_channels_, out_channels_);
    out_dtype_ = cw.stage.out_dtype;
    const Isa isa = current_isa();
    py::gil_scoped_release release;
    op_ = std::make_unique<Deconv2x2Op>(isa, cw, input_bits);
  }

  Work work(const py::array& x, int32_t x_zp, py::array& out) const {
    if (x.ndim() != 4 || x.shape(3) != in_channels_) throw py::value_error("x must be [N, H, W, C] with C matching w");
    const ConvInput in = op_->input(x.shape(0), x.shape(1), x.shape(2));
    const DType xt = quant_dtype(x, "x");
    check_seven_bit(input_bits_, xt, x_zp, "x");
    check_out(out, {in.batch, deconv2x2_out_size(in.height), deconv2x2_out_size(in.width), out_channels_},
              out_dtype_);
    check_input(x, "x", out);
    const void* xp = x.data();
    void* op = out.mutable_data();
    return conv_op_work(op_, in, xp, xt, x_zp, op, seven_bit_scan(input_bits_, x));
  }
  void run(const py::array& x, int32_t x_zp, py::array& out) const { run_released(work(x, x_zp, out)); }

  std::string isa() const { return isa_name(op_->isa()); }

 private:
  int input_bits_;
  int64_t out_channels_ = 0, in_channels_ = 0;
  DType out_dtype_ = DType::kInt32;
  HeldWeights held_;
  std::unique_ptr<Deconv2x2Op> op_;
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

// A packed core's run(x, zero_point, out) as a BoundCall: it keeps the core (whose op it calls) and both arrays.
template <class Core>
BoundCall bind_packed(const py::object& self, const py::array& x, int32_t zp, py::array& out) {
  return BoundCall{self.cast<const Core&>().work(x, zp, out), {self, x, out}};
}

}  // namespace

void register_ops(py::module_& m) {
  py::class_<StageArgs>(m, "StageArgs", "Requant parameters expanded per channel (internal).")
      .def(py::init<int, py::array, py::array, py::array, int32_t, int32_t, int32_t>(), py::arg("mode"),
           py::arg("multiplier"), py::arg("shift"), py::arg("fmultiplier"), py::arg("zero_point"), py::arg("qmin"),
           py::arg("qmax"));
  py::class_<PackedGemmCore>(m, "PackedGemm", "B packed once for the selected ISA (internal).")
      .def(py::init<const py::array&, const py::array&, const std::optional<py::array>&, const StageArgs&,
                    const std::string&, int>(),
           py::arg("b"), py::arg("b_zero_point"), py::arg("bias"), py::arg("stage"), py::arg("out_dtype"),
           py::arg("input_bits") = 8)
      .def("run", &PackedGemmCore::run, py::arg("a"), py::arg("a_zero_point"), py::arg("out"))
      .def("bind", &bind_packed<PackedGemmCore>, py::arg("a"), py::arg("a_zero_point"), py::arg("out"),
           "run's call checked once, for a Program (internal)")
      .def_property_readonly("isa", &PackedGemmCore::isa)
      .def_property_readonly("k", &PackedGemmCore::k)
      .def_property_readonly("n", &PackedGemmCore::n);
  m.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("a_zero_point"), py::arg("b_zero_point"), py::arg("bias"),
        py::arg("stage"), py::arg("out"));
  py::class_<PackedConv3x3Core>(m, "PackedConv3x3", "conv3x3 weights packed once for the selected ISA (internal).")
      .def(py::init<const py::array&, const py::array&, const std::optional<py::array>&, const StageArgs&,
                    const std::string&, int, int, int>(),
           py::arg("w"), py::arg("w_zero_point"), py::arg("bias"), py::arg("stage"), py::arg("out_dtype"),
           py::arg("stride"), py::arg("padding"), py::arg("input_bits") = 8)
      .def("run", &PackedConv3x3Core::run, py::arg("x"), py::arg("x_zero_point"), py::arg("out"))
      .def("bind", &bind_packed<PackedConv3x3Core>, py::arg("x"), py::arg("x_zero_point"), py::arg("out"),
           "run's call checked once, for a Program (internal)")
      .def_property_readonly("isa", &PackedConv3x3Core::isa);
  py::class_<PackedDeconv2x2Core>(m, "PackedDeconv2x2",
                                  "conv_transpose2x2 weights packed once for the selected ISA (internal).")
      .def(py::init<const py::array&, const py::array&, const std::optional<py::array>&, const StageArgs&,
                    const std::string&, int>(),
           py::arg("w"), py::arg("w_zero_point"), py::arg("bias"), py::arg("stage"), py::arg("out_dtype"),
           py::arg("input_bits") = 8)
      .def("run", &PackedDeconv2x2Core::run, py::arg("x"), py::arg("x_zero_point"), py::arg("out"))
      .def("bind", &bind_packed<PackedDeconv2x2Core>, py::arg("x"), py::arg("x_zero_point"), py::arg("out"),
           "run's call checked once, for a Program (internal)")
      .def_property_readonly("isa", &PackedDeconv2x2Core::isa);
  m.def("conv3x3", &conv3x3, py::arg("x"), py::arg("w"), py::arg("stride"), py::arg("padding"),
        py::arg("x_zero_point"), py::arg("w_zero_point"), py::arg("bias"), py::arg("stage"), py::arg("out"));
  m.def("deconv2x2", &deconv2x2, py::arg("x"), py::arg("w"), py::arg("x_zero_point"), py::arg("w_zero_point"),
        py::arg("bias"), py::arg("stage"), py::arg("out"));
}

}  // namespace qk::bind
