// register_quant.cc: elementwise bindings: fixed-point primitives, requantize, quantize/dequantize, histograms.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <vector>

#include "bindings/common.h"
#include "qkern/fixedpoint.h"
#include "qkern/quantize.h"
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

// Requantizes acc[..., C] (+ bias[C]) into `out` of the same shape, channel = last axis. A per-tensor stage
// (`broadcast`) passes parameter arrays of one element.
void requantize(const py::array& acc, const std::optional<py::array>& bias, const StageArgs& stage, py::array& out,
                bool broadcast) {
  if (acc.ndim() < 1 || out.ndim() != acc.ndim()) throw py::value_error("acc/out rank mismatch");
  for (py::ssize_t i = 0; i < acc.ndim(); ++i)
    if (acc.shape(i) != out.shape(i)) throw py::value_error("acc/out shape mismatch");
  const py::ssize_t channels = acc.shape(acc.ndim() - 1);
  const int32_t* a = typed_ptr<int32_t>(acc, "acc", acc.size());
  const int32_t* b = bias ? typed_ptr<int32_t>(*bias, "bias", channels) : nullptr;
  require_writeable_c_contiguous(out, "out");
  check_out_disjoint(out, acc);
  const OutputStage os = make_stage(stage, broadcast ? 1 : channels, dtype_of(out, "out"));
  if (os.mode == RequantMode::kRaw) throw py::value_error("requantize needs a gemmlowp, single or fp32 stage");
  void* dst = out.mutable_data();
  const py::ssize_t rows = channels ? acc.size() / channels : 0;
  py::gil_scoped_release release;
  requantize_array(a, rows, channels, b, os, broadcast, dst);
}

// The quantized output array: uint8/int8, C-contiguous, writeable, `size` elements, apart from `in`.
DType quant_out(const py::array& out, const py::array& in, py::ssize_t size) {
  const DType dt = dtype_of(out, "out");
  if (dt == DType::kInt32) throw py::type_error("out must have dtype uint8 or int8");
  require_writeable_c_contiguous(out, "out");
  if (out.size() != size) throw py::value_error("out must have " + std::to_string(size) + " elements");
  check_out_disjoint(out, in);
  return dt;
}

float* float_out(py::array& out, const py::array& in, py::ssize_t size) {
  if (!out.dtype().is(py::dtype::of<float>())) throw py::type_error("out must have dtype float32");
  require_writeable_c_contiguous(out, "out");
  if (out.size() != size) throw py::value_error("out must have " + std::to_string(size) + " elements");
  check_out_disjoint(out, in);
  return static_cast<float*>(out.mutable_data());
}

void check_range(float qmin, float qmax, DType dt) {
  const float lo = dt == DType::kUint8 ? 0.f : -128.f, hi = dt == DType::kUint8 ? 255.f : 127.f;
  if (!(lo <= qmin && qmin <= qmax && qmax <= hi) || qmin != static_cast<float>(static_cast<int>(qmin)) ||
      qmax != static_cast<float>(static_cast<int>(qmax)))
    throw py::value_error("qmin/qmax must be integers with dtype min <= qmin <= qmax <= dtype max");
}

void check_quant_params(float inv, float zp) {
  if (!std::isfinite(inv) || !(inv > 0)) throw py::value_error("inverse scale must be finite and > 0");
  if (!(zp >= -128.f && zp <= 255.f) || zp != static_cast<float>(static_cast<int>(zp)))
    throw py::value_error("zero point must be an integer in [-128, 255]");
}

// A new uint8/int8 (`is_signed`) or float32 array shaped like `like`.
py::array new_like(const py::array& like, py::dtype dt) {
  return py::array(dt, std::vector<py::ssize_t>(like.shape(), like.shape() + like.ndim()));
}

// Eq. (4) over all of x into a new array (is_signed: int8, else uint8); x holding NaN is a ValueError.
// x is taken C-contiguous (a copy only when it is not).
py::array quantize_per_tensor(const py::array_t<float, py::array::c_style | py::array::forcecast>& x, float inv,
                              float zp, float qmin, float qmax, bool is_signed) {
  const float* px = x.data();
  py::array out = new_like(x, is_signed ? py::dtype::of<int8_t>() : py::dtype::of<uint8_t>());
  const DType dt = is_signed ? DType::kInt8 : DType::kUint8;
  check_range(qmin, qmax, dt);
  check_quant_params(inv, zp);
  void* dst = out.mutable_data();
  const int64_t n = x.size();
  bool nan;
  if (n <= 4096) {
    nan = quantize_array(px, 1, 1, n, &inv, &zp, false, qmin, qmax, dt, dst);
  } else {
    py::gil_scoped_release release;
    nan = quantize_array(px, 1, 1, n, &inv, &zp, false, qmin, qmax, dt, dst);
  }
  if (nan) throw py::value_error("x contains NaN, which has no quantized value");
  return out;
}

// Eq. (5) over x viewed as [outer][channels][inner]; returns true if x holds NaN.
bool quantize_per_channel(const py::array& x, const py::array& inv, const py::array& zp, int64_t outer,
                          int64_t channels, int64_t inner, float qmin, float qmax, py::array& out) {
  if (outer < 0 || channels < 1 || inner < 0 || outer * channels * inner != x.size())
    throw py::value_error("outer * channels * inner must equal x.size");
  const float* px = typed_ptr<float>(x, "x", x.size());
  const float* pi = typed_ptr<float>(inv, "inv", channels);
  const float* pz = typed_ptr<float>(zp, "zero_point", channels);
  for (int64_t c = 0; c < channels; ++c) check_quant_params(pi[c], pz[c]);
  const DType dt = quant_out(out, x, x.size());
  check_range(qmin, qmax, dt);
  void* dst = out.mutable_data();
  py::gil_scoped_release release;
  return quantize_array(px, outer, channels, inner, pi, pz, true, qmin, qmax, dt, dst);
}

// f32(scale) * f32(q - zp) into a new float32 array.
py::array dequantize_per_tensor_py(const py::array& q_any, float scale, int32_t zp) {
  const DType dt = dtype_of(q_any, "q");
  if (dt == DType::kInt32) throw py::type_error("q must have dtype uint8 or int8");
  // A copy only when not C-contiguous (checked first: ensure() costs a tenth of a 256-element call).
  const py::array q = q_any.flags() & py::array::c_style ? q_any : py::array::ensure(q_any, py::array::c_style);
  py::array out = new_like(q, py::dtype::of<float>());
  auto* dst = static_cast<float*>(out.mutable_data());
  const void* src = q.data();
  const int64_t n = q.size();
  if (n <= 4096) {
    dequantize_per_tensor(src, dt, n, scale, zp, dst);
  } else {
    py::gil_scoped_release release;
    dequantize_per_tensor(src, dt, n, scale, zp, dst);
  }
  return out;
}

void dequantize_per_channel_py(const py::array& q, const py::array& scale, const py::array& zp, int64_t outer,
                               int64_t channels, int64_t inner, py::array& out) {
  if (outer < 0 || channels < 1 || inner < 0 || outer * channels * inner != q.size())
    throw py::value_error("outer * channels * inner must equal q.size");
  const DType dt = dtype_of(q, "q");
  if (dt == DType::kInt32) throw py::type_error("q must have dtype uint8 or int8");
  require_c_contiguous(q, "q");
  const double* ps = typed_ptr<double>(scale, "scale", channels);
  const int32_t* pz = typed_ptr<int32_t>(zp, "zero_point", channels);
  float* dst = float_out(out, q, q.size());
  const void* src = q.data();
  py::gil_scoped_release release;
  dequantize_per_channel(src, dt, outer, channels, inner, ps, pz, dst);
}

// float32 x[N][C][H][W] -> out[N][H][W][C] (eq. (4)); returns true if x holds NaN.
bool quantize_to_nhwc(const py::array& x, float inv, float zp, float qmin, float qmax, py::array& out) {
  if (x.ndim() != 4 || out.ndim() != 4) throw py::value_error("x and out must be 4-D");
  const py::ssize_t n = x.shape(0), c = x.shape(1), h = x.shape(2), w = x.shape(3);
  if (out.shape(0) != n || out.shape(1) != h || out.shape(2) != w || out.shape(3) != c)
    throw py::value_error("out must have shape (N, H, W, C) for x of shape (N, C, H, W)");
  const float* px = typed_ptr<float>(x, "x", x.size());
  const DType dt = quant_out(out, x, x.size());
  check_range(qmin, qmax, dt);
  check_quant_params(inv, zp);
  void* dst = out.mutable_data();
  py::gil_scoped_release release;
  return quantize_nchw_to_nhwc(px, n, c, h * w, inv, zp, qmin, qmax, dt, dst);
}

// q[N][H][W][C] -> float32 out[N][C][H][W], per tensor.
void dequantize_to_nchw(const py::array& q, float scale, int32_t zp, py::array& out) {
  if (q.ndim() != 4 || out.ndim() != 4) throw py::value_error("q and out must be 4-D");
  const py::ssize_t n = q.shape(0), h = q.shape(1), w = q.shape(2), c = q.shape(3);
  if (out.shape(0) != n || out.shape(1) != c || out.shape(2) != h || out.shape(3) != w)
    throw py::value_error("out must have shape (N, C, H, W) for q of shape (N, H, W, C)");
  const DType dt = dtype_of(q, "q");
  if (dt == DType::kInt32) throw py::type_error("q must have dtype uint8 or int8");
  require_c_contiguous(q, "q");
  float* dst = float_out(out, q, q.size());
  const void* src = q.data();
  py::gil_scoped_release release;
  dequantize_nhwc_to_nchw(src, dt, n, h * w, c, scale, zp, dst);
}

// (min, max, has_nan) of a non-empty float32 array.
py::tuple min_max(const py::array& x) {
  const float* px = typed_ptr<float>(x, "x", x.size());
  if (x.size() == 0) throw py::value_error("x must not be empty");
  float mn = 0, mx = 0;
  bool nan = false;
  {
    py::gil_scoped_release release;
    nan = min_max_array(px, x.size(), &mn, &mx);
  }
  return py::make_tuple(mn, mx, nan);
}

int64_t* counts_out(py::array& counts, py::ssize_t bins) {
  if (!counts.dtype().is(py::dtype::of<int64_t>())) throw py::type_error("counts must have dtype int64");
  require_writeable_c_contiguous(counts, "counts");
  if (counts.ndim() != 1 || counts.size() != bins) throw py::value_error("counts must be 1-D with one entry per bin");
  return static_cast<int64_t*>(counts.mutable_data());
}

// torch.histc counts of float32 x over [lo, hi] (lo < hi, finite); false when a quotient has no bin.
bool histc(const py::array& x, int64_t bins, float lo, float hi, py::array& counts) {
  const float* px = typed_ptr<float>(x, "x", x.size());
  if (bins < 1) throw py::value_error("bins must be >= 1");
  if (!(std::isfinite(lo) && std::isfinite(hi) && lo < hi)) throw py::value_error("need finite lo < hi");
  int64_t* pc = counts_out(counts, bins);
  py::gil_scoped_release release;
  return histc_array(px, x.size(), bins, lo, hi, pc);
}

// numpy.histogram counts of float32 x for sorted float32 edges.
void histogram_edges(const py::array& x, const py::array& edges, py::array& counts) {
  const float* px = typed_ptr<float>(x, "x", x.size());
  if (edges.ndim() != 1 || edges.size() < 2) throw py::value_error("edges must be 1-D with at least 2 entries");
  const float* pe = typed_ptr<float>(edges, "edges", edges.size());
  for (py::ssize_t i = 0; i + 1 < edges.size(); ++i)
    if (!(pe[i] <= pe[i + 1])) throw py::value_error("edges must increase monotonically");
  int64_t* pc = counts_out(counts, edges.size() - 1);
  py::gil_scoped_release release;
  histogram_edges_array(px, x.size(), pe, edges.size(), pc);
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
  m.def("requantize", &requantize, py::arg("acc"), py::arg("bias"), py::arg("stage"), py::arg("out"),
        py::arg("broadcast") = false);
  m.def("quantize_per_tensor", &quantize_per_tensor, py::arg("x"), py::arg("inv"), py::arg("zero_point"),
        py::arg("qmin"), py::arg("qmax"), py::arg("is_signed"));
  m.def("quantize_per_channel", &quantize_per_channel, py::arg("x"), py::arg("inv"), py::arg("zero_point"),
        py::arg("outer"), py::arg("channels"), py::arg("inner"), py::arg("qmin"), py::arg("qmax"), py::arg("out"));
  m.def("dequantize_per_tensor", &dequantize_per_tensor_py, py::arg("q"), py::arg("scale"),
        py::arg("zero_point"));
  m.def("dequantize_per_channel", &dequantize_per_channel_py, py::arg("q"), py::arg("scale"),
        py::arg("zero_point"), py::arg("outer"), py::arg("channels"), py::arg("inner"), py::arg("out"));
  m.def("quantize_to_nhwc", &quantize_to_nhwc, py::arg("x"), py::arg("inv"), py::arg("zero_point"),
        py::arg("qmin"), py::arg("qmax"), py::arg("out"));
  m.def("dequantize_to_nchw", &dequantize_to_nchw, py::arg("q"), py::arg("scale"), py::arg("zero_point"),
        py::arg("out"));
  m.def("min_max", &min_max, py::arg("x"));
  m.def("histc", &histc, py::arg("x"), py::arg("bins"), py::arg("lo"), py::arg("hi"), py::arg("counts"));
  m.def("histogram_edges", &histogram_edges, py::arg("x"), py::arg("edges"), py::arg("counts"));
}

}  // namespace qk::bind
