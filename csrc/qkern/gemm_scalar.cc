// gemm_scalar.cc: the scalar GEMM, plain loops over the unpacked operands with wrapping int32 sums, and its
// float32 output form.
#include <vector>

#include "qkern/ops.h"
#include "qkern/scalar_common.h"

namespace qk {

void gemm_scalar(const GemmProblem& p) {
  const std::vector<int32_t> bc = centre_matrix(p.b, p.b_type, p.k, p.n, p.ldb, p.b_zero_point, p.n);
  std::vector<uint32_t> acc(static_cast<size_t>(p.n));
  char* c = static_cast<char*>(p.c);
  const int64_t esize = out_elem_size(p.stage.out_dtype);
  for (int64_t i = 0; i < p.m; ++i) {
    init_acc(acc.data(), p.bias, p.n);
    const int32_t za = p.stage.row_zp ? p.stage.row_zp[i] : p.a_zero_point;
    for (int64_t kk = 0; kk < p.k; ++kk) {
      const int32_t a = load_q(p.a, p.a_type, i * p.lda + kk) - za;
      if (a != 0) axpy_wrap(acc.data(), a, bc.data() + kk * p.n, p.n);
    }
    if (p.stage.mode == RequantMode::kFloat) {  // eq. (19); row_scale is per row of this call
      float* out = reinterpret_cast<float*>(c + i * p.ldc * esize);
      for (int64_t j = 0; j < p.n; ++j)
        out[j] = float_output_one(static_cast<int32_t>(acc[j]), p.stage.row_scale[i], p.stage, j);
      continue;
    }
    store_row(acc.data(), p.n, p.n, p.stage, c + i * p.ldc * esize);
  }
}

}  // namespace qk
