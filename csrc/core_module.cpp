// pybind11 bindings of the CPU core.  Validation with clear messages happens in Python
// (python/infoflow/_intake.py); the checks here only guard the C++ from misuse.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <optional>
#include <stdexcept>
#include <string>

#include "cpu/problem.hpp"
#include "python_cancel.hpp"

namespace py = pybind11;
using infoflow::index_t;

namespace {

// The most threads a call may ask for (Python states the same bound to its users):
// GNU OpenMP fails to create tens of thousands and crashes beyond.
constexpr int kMaxThreads = 1024;

template <class T>
infoflow::cpu::StridedView3<T> view3(const py::array_t<T>& a, const char* name) {
  if (a.ndim() != 3) throw std::invalid_argument(std::string(name) + ": expected 3 dimensions");
  infoflow::cpu::StridedView3<T> v{a.data(), {0, 0, 0}};
  for (int axis = 0; axis < 3; ++axis) {
    if (a.strides(axis) % static_cast<py::ssize_t>(sizeof(T)) != 0)
      throw std::invalid_argument(std::string(name) + ": strides must be whole elements");
    v.stride[axis] = a.strides(axis) / static_cast<py::ssize_t>(sizeof(T));
  }
  return v;
}

// The checked shapes, beta and thread count of a forward or backward call.
template <class T>
infoflow::cpu::Problem<T> problem(const py::array_t<T>& queries, const py::array_t<T>& centers, double beta,
                                  int num_threads) {
  infoflow::cpu::Problem<T> p{view3(queries, "queries"), view3(centers, "centers"), nullptr,
                              0, 0, 0, 0, beta, num_threads};
  p.batch = queries.shape(0);
  p.m = queries.shape(1);
  p.n = centers.shape(1);
  p.d = queries.shape(2);
  if (centers.shape(0) != p.batch || centers.shape(2) != p.d)
    throw std::invalid_argument("centers: batch size and dimension must match queries");
  if (p.n < 1 || p.d < 1) throw std::invalid_argument("centers: need n >= 1 and d >= 1");
  if (!(std::isfinite(beta) && beta > 0)) throw std::invalid_argument("beta: must be > 0");
  if (num_threads < 0 || num_threads > kMaxThreads)
    throw std::invalid_argument("num_threads: must lie in [0, " + std::to_string(kMaxThreads) + "]");
  return p;
}

template <class T>
py::object log_density(const py::array_t<T>& queries, const py::array_t<T>& centers,
                       double beta, int num_threads, const std::string& isa,
                       const std::string& screen,
                       const std::optional<py::array_t<std::int64_t>>& near_centre,
                       bool return_stats, const std::string& prune,
                       const std::optional<py::array_t<T>>& weights, bool centres_ordered,
                       const std::optional<py::array_t<double>>& shift) {
  auto p = problem(queries, centers, beta, num_threads);
  const auto chosen = infoflow::cpu::parse_isa(isa);
  p.screen = infoflow::cpu::parse_screen(screen);
  p.prune = infoflow::cpu::parse_prune(prune);
  p.centres_ordered = centres_ordered;
  if (weights) {
    const auto& w = *weights;
    if (w.ndim() != 2 || w.shape(0) != p.batch || w.shape(1) != p.n ||
        !(w.flags() & py::array::c_style))
      throw std::invalid_argument("weights: must be a C-contiguous (batch, n) array");
    const T* data = w.data();
    for (index_t b = 0; b < p.batch; ++b) {
      bool positive = false;
      for (index_t j = 0; j < p.n; ++j) {
        const T v = data[b * p.n + j];
        if (!(v >= T(0) && std::isfinite(v)))
          throw std::invalid_argument("weights: must be finite and >= 0");
        positive |= v > T(0);
      }
      if (!positive) throw std::invalid_argument("weights: each mixture needs a positive weight");
    }
    p.weights = data;
  }
  if (near_centre) {
    const auto& hint = *near_centre;
    if (hint.ndim() != 1 || hint.shape(0) != p.m || (p.m > 1 && hint.strides(0) != sizeof(std::int64_t)))
      throw std::invalid_argument("near_centre: must be a contiguous (m,) int64 array");
    const std::int64_t* index = hint.data();
    for (py::ssize_t i = 0; i < p.m; ++i)
      if (index[i] < 0 || index[i] >= p.n)
        throw std::invalid_argument("near_centre: indices must lie in [0, n)");
    p.near_centre = index;
  }

  if (shift) {
    const auto& values = *shift;
    if (values.ndim() != 1 || values.shape(0) != p.batch || !(values.flags() & py::array::c_style))
      throw std::invalid_argument("shift: must be a contiguous (batch,) float64 array");
    p.shift = values.data();
  }

  py::array_t<T> out({p.batch, p.m});
  p.out = out.mutable_data();
  infoflow::cpu::KernelStats stats;
  p.stats = &stats;
  if (p.batch * p.m > 0) {
    infoflow::python::CallCancel cancel;
    const bool finished = infoflow::python::without_gil(
        [&] { return infoflow::cpu::log_density(p, chosen, cancel.interrupt()); });
    if (!finished) cancel.raise();  // KeyboardInterrupt (or another signal's error)
  }
  if (!return_stats) return std::move(out);
  py::dict kernel_stats;
  kernel_stats["tile_blocks"] = stats.tile_blocks;
  kernel_stats["screened"] = stats.screened;
  kernel_stats["skipped"] = stats.skipped;
  kernel_stats["pruned"] = stats.pruned;
  kernel_stats["block_visits"] = stats.block_visits;
  kernel_stats["blocks_computed"] = stats.blocks_computed;
  return py::make_tuple(out, kernel_stats);
}

template <class T>
py::tuple log_density_backward(const py::array_t<T>& queries, const py::array_t<T>& centers, double beta,
                               const py::array_t<double>& lse, const py::array_t<double>& upstream,
                               int num_threads, const std::string& isa,
                               const std::optional<py::array_t<T>>& weights, bool want_queries,
                               bool want_centers, bool want_beta, bool want_weights) {
  auto p = problem(queries, centers, beta, num_threads);
  for (const auto* a : {&lse, &upstream})
    if (a->ndim() != 2 || a->shape(0) != p.batch || a->shape(1) != p.m || !(a->flags() & py::array::c_style))
      throw std::invalid_argument("lse, upstream: must be C-contiguous (batch, m) float64 arrays");
  if (weights) {
    const auto& w = *weights;
    if (w.ndim() != 2 || w.shape(0) != p.batch || w.shape(1) != p.n || !(w.flags() & py::array::c_style))
      throw std::invalid_argument("weights: must be a C-contiguous (batch, n) array");
    p.weights = w.data();
  }
  const auto chosen = infoflow::cpu::parse_isa(isa);
  infoflow::cpu::Gradients<T> grads;
  grads.lse = lse.data();
  grads.upstream = upstream.data();
  py::object grad_q = py::none(), grad_c = py::none(), grad_beta = py::none(), grad_w = py::none();
  if (want_queries) {
    py::array_t<T> a({p.batch, p.m, p.d});
    grads.queries = a.mutable_data();
    grad_q = a;
  }
  if (want_centers) {
    py::array_t<T> a({p.batch, p.n, p.d});
    grads.centers = a.mutable_data();
    grad_c = a;
  }
  if (want_beta) {
    py::array_t<double> a(p.batch);
    grads.beta = a.mutable_data();
    grad_beta = a;
  }
  if (want_weights) {
    py::array_t<T> a({p.batch, p.n});
    grads.weights = a.mutable_data();
    grad_w = a;
  }
  if (p.batch * p.m > 0) {
    infoflow::python::CallCancel cancel;
    const bool finished = infoflow::python::without_gil(
        [&] { return infoflow::cpu::log_density_backward(p, grads, chosen, cancel.interrupt()); });
    if (!finished) cancel.raise();
  }
  return py::make_tuple(grad_q, grad_c, grad_beta, grad_w);
}

template <class T>
py::array_t<std::int64_t> spatial_order(const py::array_t<T>& centers, const std::string& isa) {
  if (centers.ndim() != 2 || centers.shape(0) < 1 || centers.shape(1) < 1)
    throw std::invalid_argument("centers: expected a non-empty (n, d) array");
  for (int axis = 0; axis < 2; ++axis)
    if (centers.strides(axis) % static_cast<py::ssize_t>(sizeof(T)) != 0)
      throw std::invalid_argument("centers: strides must be whole elements");
  const infoflow::cpu::StridedView3<T> view{
      centers.data(), {0, centers.strides(0) / static_cast<py::ssize_t>(sizeof(T)),
                       centers.strides(1) / static_cast<py::ssize_t>(sizeof(T))}};
  const auto chosen = infoflow::cpu::parse_isa(isa);
  py::array_t<std::int64_t> order(centers.shape(0));
  infoflow::python::without_gil([&] {
    infoflow::cpu::spatial_order(view, centers.shape(0), centers.shape(1), order.mutable_data(), chosen);
    return true;
  });
  return order;
}

py::dict build_info() {
  py::dict info;
  info["version"] = INFOFLOW_VERSION;
#if defined(__clang__)
  info["compiler"] = "clang " __clang_version__;
#elif defined(__GNUC__)
  info["compiler"] = "gcc " __VERSION__;
#else
  info["compiler"] = "unknown";
#endif
  info["openmp"] = infoflow::cpu::has_openmp();
#ifdef _OPENMP
  info["openmp_version"] = _OPENMP;
#else
  info["openmp_version"] = py::none();
#endif
  py::list compiled;
  for (auto isa : {infoflow::cpu::Isa::generic, infoflow::cpu::Isa::avx2,
                   infoflow::cpu::Isa::avx512}) {
#if !defined(INFOFLOW_HAVE_X86_ISAS)
    if (isa != infoflow::cpu::Isa::generic) continue;
#endif
    compiled.append(infoflow::cpu::isa_name(isa));
  }
  info["simd_compiled"] = compiled;
  py::list supported;
  for (auto isa : {infoflow::cpu::Isa::generic, infoflow::cpu::Isa::avx2,
                   infoflow::cpu::Isa::avx512})
    if (infoflow::cpu::isa_supported(isa)) supported.append(infoflow::cpu::isa_name(isa));
  info["simd_supported"] = supported;
  info["simd_runtime"] = infoflow::cpu::isa_name(infoflow::cpu::best_supported_isa());
  info["max_threads"] = infoflow::cpu::max_threads();
  info["max_threads_per_call"] = kMaxThreads;
  info["serial_after_fork"] = infoflow::cpu::serial_after_fork();
  return info;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "infoflow CPU core: exact batched Gaussian log-sum-exp (C++/OpenMP/SIMD)";
  const char* doc =
      "out[b, i] = log sum_j exp(-||q[b,i] - c[b,j]||^2 / (2 beta^2)) for queries (B, m, d)\n"
      "and centers (B, n, d) of one float dtype; returns a (B, m) array of that dtype.\n"
      "screen: the GEMM-form screen, 'auto', 'off' or 'always'.  near_centre: optional (m,)\n"
      "int64 indices of centres likely near each query (a speed hint).  return_stats: also\n"
      "return a dict of what the kernel did (screen: tile_blocks, screened, skipped; pruning:\n"
      "pruned, block_visits, blocks_computed).  prune: the exact block pruning, 'auto', 'off'\n"
      "or 'always'.  weights: optional (B, n) non-negative centre weights of the same dtype,\n"
      "giving log sum_j w_j exp(...).  centres_ordered: the centres are in spatial_order's\n"
      "order (or a subsequence of it), so the pruned path need not order them (speed only).\n"
      "shift: optional (B,) float64 values added to each mixture's results before the rounding\n"
      "to the dtype.  num_threads: 0 (OpenMP's default) to 1024.";
  m.def("log_density", &log_density<float>, doc, py::arg("queries").noconvert(),
        py::arg("centers").noconvert(), py::arg("beta"), py::arg("num_threads") = 0,
        py::arg("isa") = "auto", py::arg("screen") = "auto", py::arg("near_centre") = py::none(),
        py::arg("return_stats") = false, py::arg("prune") = "auto",
        py::arg("weights").noconvert() = py::none(), py::arg("centres_ordered") = false, py::arg("shift") = py::none());
  m.def("log_density", &log_density<double>, doc, py::arg("queries").noconvert(),
        py::arg("centers").noconvert(), py::arg("beta"), py::arg("num_threads") = 0,
        py::arg("isa") = "auto", py::arg("screen") = "auto", py::arg("near_centre") = py::none(),
        py::arg("return_stats") = false, py::arg("prune") = "auto",
        py::arg("weights").noconvert() = py::none(), py::arg("centres_ordered") = false, py::arg("shift") = py::none());
  const char* backward_doc =
      "Gradients of out[b, i] = log sum_j w_j exp(-||q - c_j||^2 / (2 beta^2)) weighted by the upstream\n"
      "gradient g = upstream (B, m): returns (dq (B, m, d), dc (B, n, d), dbeta (B,) float64, dw (B, n)),\n"
      "each None unless asked for.  lse (B, m) float64 is the forward's result.";
  m.def("log_density_backward", &log_density_backward<float>, backward_doc, py::arg("queries").noconvert(),
        py::arg("centers").noconvert(), py::arg("beta"), py::arg("lse").noconvert(), py::arg("upstream").noconvert(),
        py::arg("num_threads") = 0, py::arg("isa") = "auto", py::arg("weights").noconvert() = py::none(),
        py::arg("want_queries") = true, py::arg("want_centers") = true, py::arg("want_beta") = false,
        py::arg("want_weights") = false);
  m.def("log_density_backward", &log_density_backward<double>, backward_doc, py::arg("queries").noconvert(),
        py::arg("centers").noconvert(), py::arg("beta"), py::arg("lse").noconvert(), py::arg("upstream").noconvert(),
        py::arg("num_threads") = 0, py::arg("isa") = "auto", py::arg("weights").noconvert() = py::none(),
        py::arg("want_queries") = true, py::arg("want_centers") = true, py::arg("want_beta") = false,
        py::arg("want_weights") = false);
  const char* order_doc =
      "The (n,) int64 order in which the pruned kernel of the given ISA would take the rows of\n"
      "centers (n, d): a k-d order whose consecutive blocks are the kernel's leaves.  Reorder\n"
      "once, then pass centres_ordered=True for that array and any subsequence of it.";
  m.def("spatial_order", &spatial_order<float>, order_doc, py::arg("centers").noconvert(), py::arg("isa") = "auto");
  m.def("spatial_order", &spatial_order<double>, order_doc, py::arg("centers").noconvert(),
        py::arg("isa") = "auto");
  m.def("build_info", &build_info, "How this _core was built and what the CPU supports.");
  m.def("isa_supported", [](const std::string& name) {
    try {
      infoflow::cpu::parse_isa(name);
      return true;
    } catch (const std::invalid_argument&) {
      return false;
    }
  }, "Whether the named kernel ('generic', 'avx2', 'avx512') can run here.");
}
