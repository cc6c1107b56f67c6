// register_program.cc: Program, a model plan's native steps run in one call (bound_call.h).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <utility>
#include <vector>

#include "bindings/bound_call.h"

namespace qk::bind {

namespace {

// Bound calls run in order with the GIL released once: a plan's consecutive native steps cost one
// Python call instead of one each.
class Program {
 public:
  explicit Program(std::vector<BoundCall> calls) : calls_(std::move(calls)) {}
  void run() const {
    py::gil_scoped_release release;
    for (const BoundCall& call : calls_) call.work();
  }
  size_t size() const { return calls_.size(); }

 private:
  std::vector<BoundCall> calls_;
};

}  // namespace

void register_program(py::module_& m) {
  py::class_<BoundCall>(m, "BoundCall", "One checked native call with its operands fixed (internal).");
  py::class_<Program>(m, "Program", "Bound calls run in order in one call, without the GIL (internal).")
      .def(py::init<std::vector<BoundCall>>(), py::arg("calls"))
      .def("__call__", &Program::run)
      .def("__len__", &Program::size);
}

}  // namespace qk::bind
