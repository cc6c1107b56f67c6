// ops.h: problem descriptors of the three kernels (GEMM, NHWC conv3x3, 2x2 stride-2 transposed conv).
//
// The descriptors carry raw pointers into caller-owned, C-contiguous arrays; every size and zero point
// has been validated by the Python layer (python/qkern/ops.py) and is re-checked by the bindings.
#pragma once

#include <cstdint>

#include "qkern/common.h"
#include "qkern/conv_shape.h"
#include "qkern/requant.h"

namespace qk {

// C[M,N] = stage(bias[n] + sum_k (A[m,k] - a_zp) * (B[k,n] - b_zp[n]))   (docs/quantization.md eq. (7)).
struct GemmProblem {
  int64_t m = 0, n = 0, k = 0;
  const void* a = nullptr;  // [M, lda] of a_type
  DType a_type = DType::kUint8;
  int64_t lda = 0;
  const void* b = nullptr;  // [K, ldb] of b_type
  DType b_type = DType::kInt8;
  int64_t ldb = 0;
  int32_t a_zero_point = 0;
  const int32_t* b_zero_point = nullptr;  // [N]
  const int32_t* bias = nullptr;          // [N] or null
  OutputStage stage;
  void* c = nullptr;  // [M, ldc] of stage.out_dtype
  int64_t ldc = 0;
};

// out[n,y,x,o] over x[N,H,W,C] and w[O,3,3,C]; padding reads as x_zero_point.
struct Conv3x3Problem {
  int64_t batch = 0, height = 0, width = 0, in_channels = 0, out_channels = 0;
  int stride = 1, padding = 1;
  const void* x = nullptr;
  DType x_type = DType::kUint8;
  const void* w = nullptr;
  DType w_type = DType::kInt8;
  int32_t x_zero_point = 0;
  const int32_t* w_zero_point = nullptr;  // [O]
  const int32_t* bias = nullptr;          // [O] or null
  OutputStage stage;
  void* out = nullptr;  // [N, OH, OW, O]
  int64_t out_height() const { return conv3x3_out_size(height, stride, padding); }
  int64_t out_width() const { return conv3x3_out_size(width, stride, padding); }
};

// out[n, 2i+di, 2j+dj, o] over x[N,H,W,C] and w[C,2,2,O].
struct Deconv2x2Problem {
  int64_t batch = 0, height = 0, width = 0, in_channels = 0, out_channels = 0;
  const void* x = nullptr;
  DType x_type = DType::kUint8;
  const void* w = nullptr;
  DType w_type = DType::kInt8;
  int32_t x_zero_point = 0;
  const int32_t* w_zero_point = nullptr;  // [O]
  const int32_t* bias = nullptr;          // [O] or null
  OutputStage stage;
  void* out = nullptr;  // [N, 2H, 2W, O]
};

// Plain-loop scalar kernels on the unpacked arrays: the always-built native fallback and oracle.
void gemm_scalar(const GemmProblem& p);
void conv3x3_scalar(const Conv3x3Problem& p);
void deconv2x2_scalar(const Deconv2x2Problem& p);

}  // namespace qk
