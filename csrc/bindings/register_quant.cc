// register_quant.cc: elementwise bindings of the fixed-point primitives and the output stage, for tests.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "bindings/common.h"
#include "qkern/fixedpoint.h"
#include "qkern/requant.h"

namespace qk::bind {

namespace {

using I32 = py::array_t<int32_t, py::array::c_style>;

// Applies f elementwise over equally-shaped int32 arrays, writing an array of R.
template <typename R, typename F>
py::array_t<R> map2(const I32& x, const I32& y, F f) {
  if (x.size() != y.size()) throw py::value_error("arguments must have the same number of elements");
  py::array_t<R> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const int32_t* px = x.data();
  const int32_t* py_ = y.data();
  R* po = out.mutable_data();
  const py::ssize_t n = x.size();
  py::gil_scoped_release release;
  for (py::ssize_t i = 0; i < n; ++i) po[i] = f(px[i], py_[i]);
  return out;
}

template <typename R, typename F>
py::array_t<R> map3(const I32& x, const I32& y, const I32& z, F f) {
  if (x.size() != y.size() || x.size() != z.size()) throw py::value_error("arguments must have the same size");
  py::array_t<R> out(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const int32_t *px = x.data(), *py_ = y.data(), *pz = z.data();
  R* po = out.mutable_data();
  const py::ssize_t n = x.size();
  py::gil_scoped_release release;
  for (py::ssize_t i = 0; i < n; ++i) po[i] = f(px[i], py_[i], pz[i]);
  return out;
}

void check_exponents(const I32& e, int lo, int hi) {
  const int32_t* p = e.data();
  for (py::ssize_t i = 0; i < e.size(); ++i)
    if (p[i] < lo || p[i] > hi)
      throw py::value_error("exponent/shift must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

// Requantizes acc[..., C] (+ bias[C]) into `out` of the same shape, channel = last axis.
void requantize(const py::array& acc, const std::optional<py::array>& bias, const StageArgs& stage, py::array& out) {
  if (acc.ndim() < 1 || out.ndim() != acc.ndim()) throw py::value_error("acc/out rank mismatch");
  for (py::ssize_t i = 0; i < acc.ndim(); ++i)
    if (acc.shape(i) != out.shape(i)) throw py::value_error("acc/out shape mismatch");
  const py::ssize_t channels = acc.shape(acc.ndim() - 1);
  const int32_t* a = typed_ptr<int32_t>(acc, "acc", acc.size());
  const int32_t* b = bias ? typed_ptr<int32_t>(*bias, "bias", channels) : nullptr;
  require_c_contiguous(out, "out");
  const OutputStage os = make_stage(stage, channels, dtype_of(out, "out"));
  void* dst = out.mutable_data();
  const py::ssize_t n = acc.size();
  py::gil_scoped_release release;
  for (py::ssize_t i = 0; i < n; ++i) {
    const py::ssize_t c = channels ? i % channels : 0;
    const int32_t v = requantize_one(b ? wrap_add(a[i], b[c]) : a[i], os, c);
    if (os.out_dtype == DType::kUint8) static_cast<uint8_t*>(dst)[i] = static_cast<uint8_t>(v);
    else static_cast<int8_t*>(dst)[i] = static_cast<int8_t>(v);
  }
}

}  // namespace

void register_quant(py::module_& m) {
  m.def("saturating_rounding_doubling_high_mul",
        [](const I32& a, const I32& b) { return map2<int32_t>(a, b, saturating_rounding_doubling_high_mul); });
  m.def("rounding_divide_by_pot", [](const I32& x, const I32& e) {
    check_exponents(e, 0, 31);
    return map2<int32_t>(x, e, rounding_divide_by_pot);
  });
  m.def("saturating_shift_left", [](const I32& x, const I32& e) {
    check_exponents(e, 0, 31);
    return map2<int32_t>(x, e, saturating_shift_left);
  });
  m.def("multiply_by_quantized_multiplier_single", [](const I32& x, const I32& mult, const I32& shift) {
    check_exponents(shift, -31, 30);
    return map3<int64_t>(x, mult, shift, multiply_by_quantized_multiplier_single);
  });
  m.def("multiply_by_quantized_multiplier_gemmlowp", [](const I32& x, const I32& mult, const I32& shift) {
    check_exponents(shift, -31, 31);
    return map3<int32_t>(x, mult, shift, multiply_by_quantized_multiplier_gemmlowp);
  });
  m.def("requantize", &requantize, py::arg("acc"), py::arg("bias"), py::arg("stage"), py::arg("out"));
}

}  // namespace qk::bind
