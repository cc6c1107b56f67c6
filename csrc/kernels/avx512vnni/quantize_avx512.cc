// quantize_avx512.cc: AVX-512 elementwise kernels (placeholder while being written: the AVX2 ones).
#include "qkern/quantize.h"

namespace qk {

const ElemKernels& elem_kernels_avx512() { return elem_kernels_avx2(); }

}  // namespace qk
