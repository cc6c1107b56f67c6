// quantize.h: elementwise quantize / dequantize / requantize / histogram kernels, per ISA, and their threaded drivers.
#pragma once

#include <cstdint>

#include "qkern/common.h"
#include "qkern/isa.h"
#include "qkern/requant.h"

namespace qk {

// Row kernels of one ISA. None of them threads; the drivers below split work into rows or chunks.
// Quantize kernels return true when a result was NaN (the input held NaN); the outputs are then unspecified.
// qmin/qmax/zero points are passed as floats: exact small integers.
struct ElemKernels {
  // Eq. (4): clamp(rne(fma_f32(x, inv, zp))) for n values.
  bool (*quantize_fma)(const float* x, int64_t n, float inv, float zp, float qmin, float qmax, DType dt, void* out);
  // Eq. (5): clamp(rne(f32(f32(x * inv) + zp))), one (inv, zp) for the n values.
  bool (*quantize_mul_add)(const float* x, int64_t n, float inv, float zp, float qmin, float qmax, DType dt,
                           void* out);
  // Eq. (5) with one (inv[i], zp[i]) per value (channels last).
  bool (*quantize_mul_add_each)(const float* x, int64_t n, const float* inv, const float* zp, float qmin,
                                float qmax, DType dt, void* out);
  // Per tensor: f32(scale) * f32(q - zp).
  void (*dequantize)(const void* q, DType dt, int64_t n, float scale, int32_t zp, float* out);
  // Per channel: f32(f64(scale) * (q - zp)), one (scale, zp) for the n values.
  void (*dequantize_f64)(const void* q, DType dt, int64_t n, double scale, int32_t zp, float* out);
  // Per channel, one (scale[i], zp[i]) per value (channels last).
  void (*dequantize_f64_each)(const void* q, DType dt, int64_t n, const double* scale, const int32_t* zp,
                              float* out);
  // Eqs. (14)-(16) for n accumulators: column j uses bias[j] (if bias) and stage parameters [j], or [0] when
  // `broadcast` (a per-tensor stage). os.out_dtype is uint8 or int8.
  void (*requantize)(const int32_t* acc, int64_t n, const int32_t* bias, const OutputStage& os, bool broadcast,
                     void* out);
  // Min and max of n > 0 floats; returns true if any is NaN (then min/max are unspecified).
  bool (*min_max)(const float* x, int64_t n, float* mn, float* mx);
};

const ElemKernels& elem_kernels_scalar();
const ElemKernels& elem_kernels_avx2();
const ElemKernels& elem_kernels_avx512();
const ElemKernels& elem_kernels(Isa isa);

// Threaded drivers over the current ISA's kernels. Shapes are C-contiguous.
// x[outer][channels][inner] quantized with one (inv, zp) per channel when per_channel, else eq. (4) throughout.
bool quantize_array(const float* x, int64_t outer, int64_t channels, int64_t inner, const float* inv,
                    const float* zp, bool per_channel, float qmin, float qmax, DType dt, void* out);
void dequantize_per_tensor(const void* q, DType dt, int64_t n, float scale, int32_t zp, float* out);
void dequantize_per_channel(const void* q, DType dt, int64_t outer, int64_t channels, int64_t inner,
                            const double* scale, const int32_t* zp, float* out);
// acc[rows][channels] (+ bias[channels]); the stage is per-tensor when `broadcast`.
void requantize_array(const int32_t* acc, int64_t rows, int64_t channels, const int32_t* bias,
                      const OutputStage& os, bool broadcast, void* out);
// float32 x[n][c][hw] -> out[n][hw][c] with eq. (4); returns true on NaN.
bool quantize_nchw_to_nhwc(const float* x, int64_t n, int64_t c, int64_t hw, float inv, float zp, float qmin,
                           float qmax, DType dt, void* out);
// q[n][hw][c] -> float32 out[n][c][hw], per tensor.
void dequantize_nhwc_to_nchw(const void* q, DType dt, int64_t n, int64_t hw, int64_t c, float scale, int32_t zp,
                             float* out);
// Min and max of n > 0 floats; returns true if any is NaN.
bool min_max_array(const float* x, int64_t n, float* mn, float* mx);
// torch.histc on float32: counts[int(f32(f32(f32(x - lo) * bins) / f32(hi - lo)))] for lo <= x <= hi, the
// top edge in the last bin (requires lo < hi). counts has `bins` entries and is overwritten. Returns false
// (counts unspecified) when some quotient is NaN or infinite, which has no bin.
bool histc_array(const float* x, int64_t n, int64_t bins, float lo, float hi, int64_t* counts);
// numpy.histogram with explicit sorted edges: bin i holds edges[i] <= x < edges[i+1], the last bin also
// x == edges[nedges-1]; others are dropped. counts has nedges - 1 entries and is overwritten.
void histogram_edges_array(const float* x, int64_t n, const float* edges, int64_t nedges, int64_t* counts);

}  // namespace qk
