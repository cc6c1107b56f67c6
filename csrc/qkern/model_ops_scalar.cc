// model_ops_scalar.cc: the model ops compiled for the baseline ISA (the scalar level).
#include "qkern/model_ops_impl.inc"

namespace qk {

const ModelOpsTable& model_ops__scalar() {
  static const ModelOpsTable table = MODEL_OPS_TABLE();
  return table;
}

}  // namespace qk
