// module.cc: the qkern._core extension module; it only calls the register_* functions.
#include <pybind11/pybind11.h>

#include "qkern/common.h"

namespace py = pybind11;

namespace qk::bind {
void register_ops(py::module_& m);
void register_quant(py::module_& m);
void register_runtime(py::module_& m);
void register_dynamic(py::module_& m);
void register_model_ops(py::module_& m);
void register_program(py::module_& m);
void register_testing(py::module_& m);
}  // namespace qk::bind

PYBIND11_MODULE(_core, m) {
  m.doc() = "qkern native core: exact quantized kernels (see python/qkern for the public API)";
  py::register_exception<qk::ArgumentError>(m, "ArgumentError", PyExc_ValueError);
  qk::bind::register_program(m);  // first: BoundCall is the return type of the bind functions below
  qk::bind::register_ops(m);
  qk::bind::register_quant(m);
  qk::bind::register_runtime(m);
  qk::bind::register_dynamic(m);
  qk::bind::register_model_ops(m);
  qk::bind::register_testing(m);
}
