// bound_call.h: native calls checked once and run many times: the steps of a model plan (docs/model.md).
//
// A binding that has a bound form splits into `*_work(args)`, which checks every argument and returns the
// call as a Work, and the Python-visible function, which runs that Work with the GIL released. The bound
// form keeps the Work with the Python objects it points into; a Program runs a list of them in one call.
#pragma once

#include <pybind11/pybind11.h>

#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace qk::bind {

namespace py = pybind11;

// A checked native call: it touches no Python object and runs without the GIL.
using Work = std::function<void()>;

inline void run_released(const Work& work) {
  py::gil_scoped_release release;
  work();
}

// A Work and the Python objects behind its pointers (arrays, packed weights), which it keeps alive.
struct BoundCall {
  Work work;
  std::vector<py::object> keep;
};

template <class A>
void keep_if_object(std::vector<py::object>& keep, const A& arg) {
  if constexpr (std::is_base_of_v<py::handle, std::decay_t<A>>) keep.push_back(py::reinterpret_borrow<py::object>(arg));
}

// The bound form of a `*_work` function: same arguments, returns the BoundCall (every Python object among
// the arguments kept).
template <class... Args>
auto bound(Work (*make)(Args...)) {
  return [make](Args... args) {
    BoundCall call{make(args...), {}};
    (keep_if_object(call.keep, args), ...);
    return call;
  };
}

// The Python-visible form of a `*_work` function: checks, then runs with the GIL released.
template <class... Args>
auto released(Work (*make)(Args...)) {
  return [make](Args... args) { run_released(make(args...)); };
}

// Defines `name` (released) and `bind_<name>` (bound) with the same argument names.
template <class... Args, class... Extra>
void def_with_bound(py::module_& m, const char* name, Work (*make)(Args...), const char* doc, const Extra&... extra) {
  m.def(name, released(make), extra..., doc);
  m.def(("bind_" + std::string(name)).c_str(), bound(make), extra...,
        "The same call checked once, as a BoundCall for a Program (internal).");
}

}  // namespace qk::bind
