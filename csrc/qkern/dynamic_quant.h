// dynamic_quant.h: run-time quantization of float32 activations (qparams by eq. (18), values by eq. (4)).
#pragma once

#include <cstdint>

#include "qkern/common.h"

namespace qk {

// uint8 affine (torch's rule for dynamic quantization) or int8 symmetric (zero point 0, narrow range).
enum class DynamicScheme : int { kAffineUint8 = 0, kSymmetricInt8 = 1 };

struct ActQParams {
  float scale;
  int32_t zero_point;
  int32_t qmin, qmax;  // the clamp of eq. (4)
};

// Eq. (18): scale and zero point for the observed range [min_val, max_val] (finite).
ActQParams choose_dynamic_qparams(float min_val, float max_val, DynamicScheme scheme, bool reduce_range);

// Quantizes x[m, k] (row stride ldx) into q[m, k] (contiguous; uint8 for kAffineUint8, int8 otherwise) with
// one (scale, zero point) per row (per_row; m entries in scale/zero_point) or one for the whole tensor (one
// entry). Throws ArgumentError if x holds NaN or inf. One pass over each row when per_row.
void quantize_dynamic(const float* x, int64_t m, int64_t k, int64_t ldx, DynamicScheme scheme, bool per_row,
                      bool reduce_range, void* q, float* scale, int32_t* zero_point);

}  // namespace qk
