// register_model_ops.cc: bindings of the model runtime's integer ops (qkern.model.native calls these).
//
// Every argument is checked here, so a direct `_core` call with bad buffers raises instead of reading or
// writing out of bounds. The GIL is released while an op runs. Each op has a bound form (`bind_model_*`,
// bound_call.h): checked once, run by a model plan's Program.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "bindings/bound_call.h"
#include "bindings/common.h"
#include "qkern/model_ops.h"

namespace qk::bind {

namespace {

constexpr int64_t kMaxPoolCount = int64_t{1} << 23;  // python/qkern/reference/model_ops.py MAX_POOL_COUNT

DType quant_dtype(const py::array& a, const char* name) {
  const DType t = dtype_of(a, name);
  if (t == DType::kInt32) throw py::type_error(std::string(name) + " must have dtype uint8 or int8");
  return t;
}

void check_range(DType t, int32_t v, const char* name) {
  const int32_t lo = t == DType::kUint8 ? 0 : -128, hi = t == DType::kUint8 ? 255 : 127;
  if (v < lo || v > hi) throw py::value_error(std::string(name) + " is outside the dtype's range");
}

RescaleParams rescale_params(DType in_t, DType out_t, int32_t in_zp, int32_t mult, int32_t shift, int32_t out_zp,
                             int32_t qmin, int32_t qmax) {
  check_range(in_t, in_zp, "in_zero_point");
  check_range(out_t, out_zp, "out_zero_point");
  check_range(out_t, qmin, "qmin");
  check_range(out_t, qmax, "qmax");
  if (qmin > qmax) throw py::value_error("qmin must be <= qmax");
  if (mult < 0 || shift < -31 || shift > 30) throw py::value_error("multiplier must be >= 0, shift in [-31, 30]");
  return {in_zp, mult, shift, out_zp, qmin, qmax};
}

void require_out(const py::array& out, const std::vector<py::ssize_t>& shape) {
  require_writeable_c_contiguous(out, "out");
  if (static_cast<size_t>(out.ndim()) != shape.size()) throw py::value_error("out has the wrong shape");
  for (size_t i = 0; i < shape.size(); ++i)
    if (out.shape(static_cast<py::ssize_t>(i)) != shape[i]) throw py::value_error("out has the wrong shape");
}

// a and b of one shape; out writeable, C-contiguous, of that shape, and overlapping neither.
void require_pair_out(const py::array& a, const py::array& b, const py::array& out) {
  const std::vector<py::ssize_t> shape(a.shape(), a.shape() + a.ndim());
  if (b.ndim() != a.ndim() || !std::equal(shape.begin(), shape.end(), b.shape()))
    throw py::value_error("a and b must have one shape");
  require_out(out, shape);
  check_out_disjoint(out, a);
  check_out_disjoint(out, b);
}

int64_t pooled(int64_t size, int k, int stride, int pad) { return (size + 2 * pad - k) / stride + 1; }

// src written into dst[..., col_offset:col_offset+C] (the model's cat): the two arrays' layout checked.
struct ChannelSlice {
  int64_t rows, cols, total;  // rows of C = cols channels; dst rows have `total` channels
};
ChannelSlice channel_slice(const py::array& src, const py::array& dst, py::ssize_t col_offset) {
  require_c_contiguous(src, "src");
  require_writeable_c_contiguous(dst, "dst");
  if (src.ndim() < 1 || dst.ndim() != src.ndim()) throw py::value_error("src and dst must have one rank");
  for (py::ssize_t i = 0; i + 1 < src.ndim(); ++i)
    if (src.shape(i) != dst.shape(i)) throw py::value_error("src and dst differ outside the last axis");
  const py::ssize_t cols = src.shape(src.ndim() - 1), total = dst.shape(dst.ndim() - 1);
  if (col_offset < 0 || col_offset + cols > total) throw py::value_error("col_offset is out of range");
  check_out_disjoint(dst, src);
  return {cols == 0 ? 0 : static_cast<int64_t>(src.size() / cols), cols, total};
}

Work rescale_work(const py::array& src, py::array dst, py::ssize_t col_offset, int32_t in_zp, int32_t mult,
             int32_t shift, int32_t out_zp, int32_t qmin, int32_t qmax) {
  const DType st = quant_dtype(src, "src"), dt = quant_dtype(dst, "dst");
  const ChannelSlice slice = channel_slice(src, dst, col_offset);
  const RescaleParams p = rescale_params(st, dt, in_zp, mult, shift, out_zp, qmin, qmax);
  const void* s = src.data();
  void* d = static_cast<char*>(dst.mutable_data()) + col_offset;
  return [=] { model_rescale(st, s, slice.cols, dt, d, slice.total, slice.rows, slice.cols, p); };
}

Work copy_channels_work(const py::array& src, py::array dst, py::ssize_t col_offset) {
  const DType st = quant_dtype(src, "src"), dt = quant_dtype(dst, "dst");
  if (st != dt) throw py::type_error("src and dst must have one dtype");
  const ChannelSlice slice = channel_slice(src, dst, col_offset);
  const void* s = src.data();
  void* d = static_cast<char*>(dst.mutable_data()) + col_offset;
  return [=] { model_copy_rows(s, slice.cols, d, slice.total, slice.rows, slice.cols); };
}

Work add_work(const py::array& a, const py::array& b, py::array out, int32_t z1, int32_t m1, int32_t s1,
         int32_t z2, int32_t m2, int32_t s2, int32_t mo, int32_t so, int32_t out_zp, int32_t qmin, int32_t qmax) {
  const DType at = quant_dtype(a, "a"), bt = quant_dtype(b, "b"), ot = quant_dtype(out, "out");
  require_c_contiguous(a, "a");
  require_c_contiguous(b, "b");
  require_pair_out(a, b, out);
  const RescaleParams p1 = rescale_params(at, ot, z1, m1, s1, out_zp, qmin, qmax);
  const RescaleParams p2 = rescale_params(bt, ot, z2, m2, s2, out_zp, qmin, qmax);
  const RescaleParams po = rescale_params(ot, ot, out_zp, mo, so, out_zp, qmin, qmax);
  if (p1.shift > 0 || p2.shift > 0) throw py::value_error("add's input multipliers must be below 1 (shift <= 0)");
  const AddParams p{z1, m1, s1, z2, m2, s2, po.multiplier, po.shift, out_zp, qmin, qmax};
  const int64_t n = a.size();
  const void *pa = a.data(), *pb = b.data();
  void* po_ = out.mutable_data();
  return [=] { model_add(at, pa, bt, pb, ot, po_, n, p); };
}

Work pair_table_work(const py::array& a, const py::array& b, const py::array& table, py::array out) {
  quant_dtype(a, "a");
  quant_dtype(b, "b");
  quant_dtype(table, "table");
  require_c_contiguous(a, "a");
  require_c_contiguous(b, "b");
  require_c_contiguous(table, "table");
  if (table.ndim() != 1 || table.shape(0) != 65536) throw py::value_error("table must have 65536 entries");
  if (quant_dtype(out, "out") != dtype_of(table, "table")) throw py::type_error("out must have table's dtype");
  require_pair_out(a, b, out);
  check_out_disjoint(out, table);
  const auto* pa = static_cast<const uint8_t*>(a.data());
  const auto* pb = static_cast<const uint8_t*>(b.data());
  const auto* pt = static_cast<const uint8_t*>(table.data());
  auto* po = static_cast<uint8_t*>(out.mutable_data());
  const int64_t n = a.size();
  return [=] { model_pair_table(pa, pb, pt, po, n); };
}

void check_nhwc(const py::array& x, const char* name) {
  require_c_contiguous(x, name);
  if (x.ndim() != 4) throw py::value_error(std::string(name) + " must be 4-D NHWC");
}

Work max_pool_work(const py::array& x, py::array out, int k, int stride, int pad) {
  const DType t = quant_dtype(x, "x");
  check_nhwc(x, "x");
  if (quant_dtype(out, "out") != t) throw py::type_error("out must have x's dtype");
  if (k < 1 || stride < 1 || pad < 0 || pad > k / 2) throw py::value_error("need k >= 1, stride >= 1, 0 <= pad <= k/2");
  const int64_t n = x.shape(0), h = x.shape(1), w = x.shape(2), c = x.shape(3);
  if (h < 1 || w < 1 || h + 2 * pad < k || w + 2 * pad < k) throw py::value_error("x is smaller than the window");
  const int64_t ho = pooled(h, k, stride, pad), wo = pooled(w, k, stride, pad);
  require_out(out, {n, ho, wo, c});
  check_out_disjoint(out, x);
  const void* px = x.data();
  void* pout = out.mutable_data();
  return [=] { model_max_pool(t, px, n, h, w, c, k, stride, pad, pout, ho, wo); };
}

Work avg_pool_work(const py::array& x, py::array out, int k, int stride, int32_t in_zp, int32_t mult, int32_t shift,
              int32_t out_zp, int32_t qmin, int32_t qmax) {
  const DType it = quant_dtype(x, "x"), ot = quant_dtype(out, "out");
  check_nhwc(x, "x");
  if (k < 1 || stride < 1 || int64_t{k} * k > kMaxPoolCount) throw py::value_error("need 1 <= k*k <= 2^23, stride >= 1");
  const int64_t n = x.shape(0), h = x.shape(1), w = x.shape(2), c = x.shape(3);
  if (h < k || w < k) throw py::value_error("x is smaller than the window");
  const int64_t ho = pooled(h, k, stride, 0), wo = pooled(w, k, stride, 0);
  require_out(out, {n, ho, wo, c});
  check_out_disjoint(out, x);
  const RescaleParams p = rescale_params(it, ot, in_zp, mult, shift, out_zp, qmin, qmax);
  const void* px = x.data();
  void* pout = out.mutable_data();
  return [=] { model_avg_pool(it, px, n, h, w, c, k, stride, ot, pout, ho, wo, p); };
}

Work global_avg_pool_work(const py::array& x, py::array out, int32_t in_zp, int32_t mult, int32_t shift,
                     int32_t out_zp, int32_t qmin, int32_t qmax) {
  const DType it = quant_dtype(x, "x"), ot = quant_dtype(out, "out");
  check_nhwc(x, "x");
  const int64_t n = x.shape(0), hw = x.shape(1) * x.shape(2), c = x.shape(3);
  if (hw < 1 || hw > kMaxPoolCount) throw py::value_error("need 1 <= H*W <= 2^23");
  require_out(out, {n, 1, 1, c});
  check_out_disjoint(out, x);
  const RescaleParams p = rescale_params(it, ot, in_zp, mult, shift, out_zp, qmin, qmax);
  const void* px = x.data();
  void* pout = out.mutable_data();
  return [=] { model_global_avg_pool(it, px, n, hw, c, ot, pout, p); };
}

}  // namespace

void register_model_ops(py::module_& m) {
  using namespace pybind11::literals;
  def_with_bound(m, "model_rescale", &rescale_work, "Eq. (M2) into dst[..., col_offset:col_offset+C] (internal).",
                 "src"_a, "dst"_a, "col_offset"_a, "in_zp"_a, "multiplier"_a, "shift"_a, "out_zp"_a, "qmin"_a, "qmax"_a);
  def_with_bound(m, "model_copy_channels", &copy_channels_work,
                 "src into dst[..., col_offset:col_offset+C], same dtype (internal).", "src"_a, "dst"_a, "col_offset"_a);
  def_with_bound(m, "model_add", &add_work, "Eq. (M3) (internal).", "a"_a, "b"_a, "out"_a, "z1"_a, "m1"_a, "s1"_a,
                 "z2"_a, "m2"_a, "s2"_a, "mo"_a, "so"_a, "out_zp"_a, "qmin"_a, "qmax"_a);
  def_with_bound(m, "model_pair_table", &pair_table_work, "out = table[a_byte * 256 + b_byte] (internal).", "a"_a,
                 "b"_a, "table"_a, "out"_a);
  def_with_bound(m, "model_max_pool", &max_pool_work, "NHWC max pool (internal).", "x"_a, "out"_a, "k"_a,
                 "stride"_a, "pad"_a);
  def_with_bound(m, "model_avg_pool", &avg_pool_work, "Eq. (M5) (internal).", "x"_a, "out"_a, "k"_a, "stride"_a,
                 "in_zp"_a, "multiplier"_a, "shift"_a, "out_zp"_a, "qmin"_a, "qmax"_a);
  def_with_bound(m, "model_global_avg_pool", &global_avg_pool_work, "Eq. (M5) over H*W (internal).", "x"_a, "out"_a,
                 "in_zp"_a, "multiplier"_a, "shift"_a, "out_zp"_a, "qmin"_a, "qmax"_a);
}

}  // namespace qk::bind
