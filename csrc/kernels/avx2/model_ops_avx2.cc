// model_ops_avx2.cc: the model ops compiled with AVX2 (the compiler vectorises the same exact integer loops).
#include "qkern/model_ops_impl.inc"

namespace qk {

const ModelOpsTable& model_ops__avx2() {
  static const ModelOpsTable table = MODEL_OPS_TABLE();
  return table;
}

}  // namespace qk
