// quantize.cc: scalar elementwise kernels (the portable fallback), ISA selection and the threaded drivers.
#include "qkern/quantize.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <vector>

#include "qkern/threadpool.h"

namespace qk {

namespace {

// Work below this many elements runs in the calling thread: waking the pool costs more than it saves.
constexpr int64_t kGrain = 16384;
// Layout-changing steps work on tiles of this many spatial positions (all channels).
constexpr int64_t kTile = 64;

// Rounds half to even and clamps to [lo, hi]; NaN becomes lo (the caller reports it).
inline int32_t round_clamp(float f, float lo, float hi) {
  f = std::nearbyint(f);
  if (!(f >= lo)) f = lo;
  if (f > hi) f = hi;
  return static_cast<int32_t>(f);
}

template <typename T>
bool quantize_fma_scalar_t(const float* x, int64_t n, float inv, float zp, float lo, float hi, T* out) {
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    const float f = std::fma(x[i], inv, zp);  // eq. (4): one rounding
    nan |= std::isnan(f);
    out[i] = static_cast<T>(round_clamp(f, lo, hi));
  }
  return nan;
}

template <typename T>
bool quantize_mul_add_scalar_t(const float* x, int64_t n, const float* inv, const float* zp, int64_t step, float lo,
                               float hi, T* out) {
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    const float p = x[i] * inv[i * step];  // eq. (5): two roundings (built with -ffp-contract=off)
    const float f = p + zp[i * step];
    nan |= std::isnan(f);
    out[i] = static_cast<T>(round_clamp(f, lo, hi));
  }
  return nan;
}

bool quantize_fma_scalar(const float* x, int64_t n, float inv, float zp, float lo, float hi, DType dt, void* out) {
  if (dt == DType::kUint8) return quantize_fma_scalar_t(x, n, inv, zp, lo, hi, static_cast<uint8_t*>(out));
  return quantize_fma_scalar_t(x, n, inv, zp, lo, hi, static_cast<int8_t*>(out));
}

bool quantize_mul_add_scalar(const float* x, int64_t n, float inv, float zp, float lo, float hi, DType dt,
                             void* out) {
  if (dt == DType::kUint8)
    return quantize_mul_add_scalar_t(x, n, &inv, &zp, 0, lo, hi, static_cast<uint8_t*>(out));
  return quantize_mul_add_scalar_t(x, n, &inv, &zp, 0, lo, hi, static_cast<int8_t*>(out));
}

bool quantize_mul_add_each_scalar(const float* x, int64_t n, const float* inv, const float* zp, float lo, float hi,
                                  DType dt, void* out) {
  if (dt == DType::kUint8) return quantize_mul_add_scalar_t(x, n, inv, zp, 1, lo, hi, static_cast<uint8_t*>(out));
  return quantize_mul_add_scalar_t(x, n, inv, zp, 1, lo, hi, static_cast<int8_t*>(out));
}

template <typename T>
void dequantize_scalar_t(const T* q, int64_t n, float scale, int32_t zp, float* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(int32_t{q[i]} - zp) * scale;
}

void dequantize_scalar(const void* q, DType dt, int64_t n, float scale, int32_t zp, float* out) {
  if (dt == DType::kUint8) dequantize_scalar_t(static_cast<const uint8_t*>(q), n, scale, zp, out);
  else dequantize_scalar_t(static_cast<const int8_t*>(q), n, scale, zp, out);
}

template <typename T>
void dequantize_f64_scalar_t(const T* q, int64_t n, const double* scale, const int32_t* zp, int64_t step,
                             float* out) {
  for (int64_t i = 0; i < n; ++i)
    out[i] = static_cast<float>(scale[i * step] * static_cast<double>(int32_t{q[i]} - zp[i * step]));
}

void dequantize_f64_scalar(const void* q, DType dt, int64_t n, double scale, int32_t zp, float* out) {
  if (dt == DType::kUint8) dequantize_f64_scalar_t(static_cast<const uint8_t*>(q), n, &scale, &zp, 0, out);
  else dequantize_f64_scalar_t(static_cast<const int8_t*>(q), n, &scale, &zp, 0, out);
}

void dequantize_f64_each_scalar(const void* q, DType dt, int64_t n, const double* scale, const int32_t* zp,
                                float* out) {
  if (dt == DType::kUint8) dequantize_f64_scalar_t(static_cast<const uint8_t*>(q), n, scale, zp, 1, out);
  else dequantize_f64_scalar_t(static_cast<const int8_t*>(q), n, scale, zp, 1, out);
}

template <typename T>
void requantize_scalar_t(const int32_t* acc, int64_t n, const int32_t* bias, const OutputStage& os, bool broadcast,
                         T* out) {
  for (int64_t j = 0; j < n; ++j)
    out[j] = static_cast<T>(requantize_one(bias ? wrap_add(acc[j], bias[j]) : acc[j], os, broadcast ? 0 : j));
}

void requantize_scalar(const int32_t* acc, int64_t n, const int32_t* bias, const OutputStage& os, bool broadcast,
                       void* out) {
  if (os.out_dtype == DType::kUint8) requantize_scalar_t(acc, n, bias, os, broadcast, static_cast<uint8_t*>(out));
  else requantize_scalar_t(acc, n, bias, os, broadcast, static_cast<int8_t*>(out));
}

bool min_max_scalar(const float* x, int64_t n, float* mn, float* mx) {
  float lo = x[0], hi = x[0];
  bool nan = false;
  for (int64_t i = 0; i < n; ++i) {
    nan |= std::isnan(x[i]);
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  *mn = lo;
  *mx = hi;
  return nan;
}

constexpr ElemKernels kScalarKernels = {quantize_fma_scalar,     quantize_mul_add_scalar, quantize_mul_add_each_scalar,
                                        dequantize_scalar,       dequantize_f64_scalar,   dequantize_f64_each_scalar,
                                        requantize_scalar,       min_max_scalar};

// Splits [0, n) into chunks of at least `grain` and runs fn(begin, end) on the pool (serially when small).
template <typename F>
void chunked(int64_t n, int64_t grain, const F& fn) {
  const int64_t tasks = (n + grain - 1) / grain;
  if (tasks <= 1 || get_num_threads() <= 1) {
    if (n > 0) fn(int64_t{0}, n);
    return;
  }
  parallel_for(tasks, [&](int64_t t) { fn(t * grain, std::min(n, (t + 1) * grain)); });
}

// Calls fn(row, col, len) for the pieces of rows of length `len_row` that cover flat [begin, end).
template <typename F>
void for_row_pieces(int64_t begin, int64_t end, int64_t len_row, const F& fn) {
  while (begin < end) {
    const int64_t row = begin / len_row, col = begin % len_row;
    const int64_t len = std::min(end - begin, len_row - col);
    fn(row, col, len);
    begin += len;
  }
}

}  // namespace

const ElemKernels& elem_kernels_scalar() { return kScalarKernels; }

const ElemKernels& elem_kernels(Isa isa) {
  // Only ISAs whose kernel files are built (isa.h's QKERN_HAVE_*) are ever selected.
  switch (isa) {
#if QKERN_HAVE_AVX512VNNI
    case Isa::kAvx512Vnni: return elem_kernels_avx512();
#endif
#if QKERN_HAVE_AVX2
    case Isa::kAvx2: return elem_kernels_avx2();
#endif
    default: break;
  }
  return kScalarKernels;
}

bool quantize_array(const float* x, int64_t outer, int64_t channels, int64_t inner, const float* inv,
                    const float* zp, bool per_channel, float qmin, float qmax, DType dt, void* out) {
  const ElemKernels& k = elem_kernels(current_isa());
  const int64_t n = outer * channels * inner;
  std::atomic<bool> nan{false};
  auto* o = static_cast<uint8_t*>(out);  // one byte per element
  if (!per_channel) {
    chunked(n, kGrain, [&](int64_t b, int64_t e) {
      if (k.quantize_fma(x + b, e - b, inv[0], zp[0], qmin, qmax, dt, o + b)) nan.store(true);
    });
  } else if (inner == 1) {
    chunked(n, kGrain, [&](int64_t b, int64_t e) {
      for_row_pieces(b, e, channels, [&](int64_t row, int64_t col, int64_t len) {
        const int64_t at = row * channels + col;
        if (k.quantize_mul_add_each(x + at, len, inv + col, zp + col, qmin, qmax, dt, o + at)) nan.store(true);
      });
    });
  } else {
    chunked(n, kGrain, [&](int64_t b, int64_t e) {
      for_row_pieces(b, e, inner, [&](int64_t row, int64_t col, int64_t len) {
        const int64_t c = row % channels, at = row * inner + col;
        if (k.quantize_mul_add(x + at, len, inv[c], zp[c], qmin, qmax, dt, o + at)) nan.store(true);
      });
    });
  }
  return nan.load();
}

void dequantize_per_tensor(const void* q, DType dt, int64_t n, float scale, int32_t zp, float* out) {
  const ElemKernels& k = elem_kernels(current_isa());
  const auto* qb = static_cast<const uint8_t*>(q);
  chunked(n, kGrain, [&](int64_t b, int64_t e) { k.dequantize(qb + b, dt, e - b, scale, zp, out + b); });
}

void dequantize_per_channel(const void* q, DType dt, int64_t outer, int64_t channels, int64_t inner,
                            const double* scale, const int32_t* zp, float* out) {
  const ElemKernels& k = elem_kernels(current_isa());
  const auto* qb = static_cast<const uint8_t*>(q);
  const int64_t n = outer * channels * inner;
  if (inner == 1) {
    chunked(n, kGrain, [&](int64_t b, int64_t e) {
      for_row_pieces(b, e, channels, [&](int64_t row, int64_t col, int64_t len) {
        const int64_t at = row * channels + col;
        k.dequantize_f64_each(qb + at, dt, len, scale + col, zp + col, out + at);
      });
    });
  } else {
    chunked(n, kGrain, [&](int64_t b, int64_t e) {
      for_row_pieces(b, e, inner, [&](int64_t row, int64_t col, int64_t len) {
        const int64_t c = row % channels, at = row * inner + col;
        k.dequantize_f64(qb + at, dt, len, scale[c], zp[c], out + at);
      });
    });
  }
}

void requantize_array(const int32_t* acc, int64_t rows, int64_t channels, const int32_t* bias,
                      const OutputStage& os, bool broadcast, void* out) {
  const ElemKernels& k = elem_kernels(current_isa());
  auto* o = static_cast<uint8_t*>(out);
  const int64_t n = rows * channels;
  if (broadcast && bias == nullptr) {
    chunked(n, kGrain, [&](int64_t b, int64_t e) { k.requantize(acc + b, e - b, nullptr, os, true, o + b); });
    return;
  }
  chunked(n, kGrain, [&](int64_t b, int64_t e) {
    for_row_pieces(b, e, channels, [&](int64_t row, int64_t col, int64_t len) {
      const int64_t at = row * channels + col;
      OutputStage piece = os;  // parameters start at this piece's first column
      if (!broadcast) {
        piece.multiplier = os.multiplier + col;
        piece.shift = os.shift + col;
        piece.fmultiplier = os.fmultiplier + col;
      }
      k.requantize(acc + at, len, bias ? bias + col : nullptr, piece, broadcast, o + at);
    });
  });
}

namespace {

// dst[h][ch] = src[ch][h] for h < len, ch < c; src rows are kTile apart. Plain locals: the byte stores may
// alias anything, so nothing here may live behind a reference.
// The channel count is a template argument for the common image depths so that the inner loop unrolls.
template <int64_t C>
void tile_to_nhwc_fixed(const uint8_t* src, int64_t len, uint8_t* dst) {
  for (int64_t h = 0; h < len; ++h)
    for (int64_t ch = 0; ch < C; ++ch) dst[h * C + ch] = src[ch * kTile + h];
}

void tile_to_nhwc(const uint8_t* src, int64_t c, int64_t len, uint8_t* dst) {
  if (c == 2) return tile_to_nhwc_fixed<2>(src, len, dst);
  if (c == 3) return tile_to_nhwc_fixed<3>(src, len, dst);
  if (c == 4) return tile_to_nhwc_fixed<4>(src, len, dst);
  for (int64_t h = 0; h < len; ++h)
    for (int64_t ch = 0; ch < c; ++ch) dst[h * c + ch] = src[ch * kTile + h];
}

// dst[ch][h] = src[h][ch]; dst rows are kTile apart.
void tile_to_nchw(const uint8_t* src, int64_t c, int64_t len, uint8_t* dst) {
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t h = 0; h < len; ++h) dst[ch * kTile + h] = src[h * c + ch];
}

struct LayoutJob {
  const ElemKernels* k;
  int64_t c, hw, tiles;
  float inv, zp, qmin, qmax, scale;
  int32_t izp;
  DType dt;
};

bool quantize_tiles(const LayoutJob j, const float* x, int64_t tb, int64_t te, uint8_t* o) {
  std::vector<uint8_t> buf(static_cast<size_t>(j.c * kTile));
  bool nan = false;
  for (int64_t t = tb; t < te; ++t) {
    const int64_t img = t / j.tiles, h0 = t % j.tiles * kTile, len = std::min(kTile, j.hw - h0);
    for (int64_t ch = 0; ch < j.c; ++ch)
      nan |= j.k->quantize_fma(x + (img * j.c + ch) * j.hw + h0, len, j.inv, j.zp, j.qmin, j.qmax, j.dt,
                               buf.data() + ch * kTile);
    tile_to_nhwc(buf.data(), j.c, len, o + (img * j.hw + h0) * j.c);
  }
  return nan;
}

void dequantize_tiles(const LayoutJob j, const uint8_t* q, int64_t tb, int64_t te, float* out) {
  std::vector<uint8_t> buf(static_cast<size_t>(j.c * kTile));
  for (int64_t t = tb; t < te; ++t) {
    const int64_t img = t / j.tiles, h0 = t % j.tiles * kTile, len = std::min(kTile, j.hw - h0);
    tile_to_nchw(q + (img * j.hw + h0) * j.c, j.c, len, buf.data());
    for (int64_t ch = 0; ch < j.c; ++ch)
      j.k->dequantize(buf.data() + ch * kTile, j.dt, len, j.scale, j.izp, out + (img * j.c + ch) * j.hw + h0);
  }
}

}  // namespace

bool quantize_nchw_to_nhwc(const float* x, int64_t n, int64_t c, int64_t hw, float inv, float zp, float qmin,
                           float qmax, DType dt, void* out) {
  // One channel: NCHW and NHWC are the same layout.
  if (c == 1) return quantize_array(x, 1, 1, n * hw, &inv, &zp, false, qmin, qmax, dt, out);
  const LayoutJob job{&elem_kernels(current_isa()), c, hw, (hw + kTile - 1) / kTile, inv, zp, qmin, qmax, 0.f, 0,
                      dt};
  std::atomic<bool> nan{false};
  auto* o = static_cast<uint8_t*>(out);
  const int64_t tiles_per_task = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, c * kTile));
  chunked(n * job.tiles, tiles_per_task, [&](int64_t tb, int64_t te) {
    if (quantize_tiles(job, x, tb, te, o)) nan.store(true);
  });
  return nan.load();
}

void dequantize_nhwc_to_nchw(const void* q, DType dt, int64_t n, int64_t hw, int64_t c, float scale, int32_t zp,
                             float* out) {
  if (c == 1) return dequantize_per_tensor(q, dt, n * hw, scale, zp, out);  // the same layout
  const LayoutJob job{&elem_kernels(current_isa()), c, hw, (hw + kTile - 1) / kTile, 0.f, 0.f, 0.f, 0.f, scale, zp,
                      dt};
  const auto* qb = static_cast<const uint8_t*>(q);
  const int64_t tiles_per_task = std::max<int64_t>(1, kGrain / std::max<int64_t>(1, c * kTile));
  chunked(n * job.tiles, tiles_per_task, [&](int64_t tb, int64_t te) { dequantize_tiles(job, qb, tb, te, out); });
}

bool min_max_array(const float* x, int64_t n, float* mn, float* mx) {
  const ElemKernels& k = elem_kernels(current_isa());
  const int64_t tasks = (n + kGrain * 4 - 1) / (kGrain * 4);
  std::vector<float> lo(static_cast<size_t>(tasks)), hi(static_cast<size_t>(tasks));
  std::vector<char> nan(static_cast<size_t>(tasks), 0);
  chunked(n, kGrain * 4, [&](int64_t b, int64_t e) {
    const auto t = static_cast<size_t>(b / (kGrain * 4));
    nan[t] = k.min_max(x + b, e - b, &lo[t], &hi[t]);
  });
  float l = lo[0], h = hi[0];
  bool any_nan = false;
  for (size_t t = 0; t < lo.size(); ++t) {
    any_nan |= nan[t] != 0;
    l = std::min(l, lo[t]);
    h = std::max(h, hi[t]);
  }
  *mn = l;
  *mx = h;
  return any_nan;
}

namespace {

// Counts of x[0, n) into c (see histc_array); returns false if a quotient is NaN or infinite.
bool histc_range(const float* x, int64_t n, int64_t bins, float lo, float hi, int64_t* c) {
  const float width = hi - lo, fbins = static_cast<float>(bins);
  bool ok = true;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (!(v >= lo && v <= hi)) continue;
    const float pos = (v - lo) * fbins / width;  // float32 throughout, torch's order
    if (!(pos < 9.0e18f)) {  // NaN or inf (a range wider than float32): no bin; the caller falls back
      ok = false;
      continue;
    }
    ++c[std::min(static_cast<int64_t>(pos), bins - 1)];
  }
  return ok;
}

// Counts of x[0, n) into c by sorted edges (see histogram_edges_array). Bin j is the last with
// edges[j] <= v (capped at the last bin, which also holds v == edges[bins]). Edges are usually near-uniform,
// so a linear guess followed by a short walk finds j; a binary search finishes when the walk is long.
void edges_range(const float* x, int64_t n, const float* edges, int64_t nedges, int64_t* c) {
  const int64_t bins = nedges - 1;
  const float first = edges[0], last = edges[bins];
  const double per_unit = last > first ? static_cast<double>(bins) / (static_cast<double>(last) - first) : 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    if (!(v >= first && v <= last)) continue;
    const double guess = (static_cast<double>(v) - first) * per_unit;
    int64_t j = std::min<int64_t>(bins - 1, std::max<int64_t>(0, static_cast<int64_t>(guess)));
    int steps = 0;
    while (j > 0 && edges[j] > v && ++steps < 4) --j;
    while (j < bins - 1 && edges[j + 1] <= v && ++steps < 4) ++j;
    if (steps >= 4 || (j > 0 && edges[j] > v) || (j < bins - 1 && edges[j + 1] <= v))
      j = std::min<int64_t>(bins - 1, std::upper_bound(edges, edges + nedges, v) - edges - 1);
    ++c[j];
  }
}

// Runs count(begin, end, partial counts) over chunks of x on the pool and sums the partial counts.
template <typename F>
void histogram_chunks(int64_t n, int64_t bins, int64_t* counts, const F& count) {
  // At most ~2^20 partial counters in all (8 MiB), however many bins.
  const int64_t max_tasks = std::max<int64_t>(1, (int64_t{1} << 20) / std::max<int64_t>(1, bins));
  const int64_t grain = std::max({kGrain * 4, n / 8 + 1, (n + max_tasks - 1) / max_tasks});
  const int64_t tasks = std::max<int64_t>(1, (n + grain - 1) / grain);
  std::vector<int64_t> part(static_cast<size_t>(tasks * bins), 0);
  chunked(n, grain, [&](int64_t b, int64_t e) { count(b, e, part.data() + b / grain * bins); });
  std::fill(counts, counts + bins, 0);
  for (int64_t t = 0; t < tasks; ++t)
    for (int64_t j = 0; j < bins; ++j) counts[j] += part[static_cast<size_t>(t * bins + j)];
}

}  // namespace

bool histc_array(const float* x, int64_t n, int64_t bins, float lo, float hi, int64_t* counts) {
  std::atomic<bool> ok{true};
  histogram_chunks(n, bins, counts, [&](int64_t b, int64_t e, int64_t* c) {
    if (!histc_range(x + b, e - b, bins, lo, hi, c)) ok.store(false);
  });
  return ok.load();
}

void histogram_edges_array(const float* x, int64_t n, const float* edges, int64_t nedges, int64_t* counts) {
  histogram_chunks(n, nedges - 1, counts,
                   [&](int64_t b, int64_t e, int64_t* c) { edges_range(x + b, e - b, edges, nedges, c); });
}

}  // namespace qk
