// Runtime choice among the per-ISA copies of the CPU kernel.
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define INFOFLOW_HAVE_PTHREAD_ATFORK 1
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu/problem.hpp"

namespace infoflow::cpu {

#define INFOFLOW_DECLARE_ISA(ns)                                                 \
  namespace ns {                                                                 \
  template <class T>                                                             \
  bool log_density(const Problem<T>& problem, const Interrupt& interrupt);      \
  template <class T>                                                             \
  void spatial_order(const StridedView3<T>& x, index_t n, index_t d, index_t* order); \
  template <class T>                                                             \
  bool log_density_backward(const Problem<T>& problem, const Gradients<T>& gradients, \
                            const Interrupt& interrupt);                         \
  }
INFOFLOW_DECLARE_ISA(generic)
#if defined(INFOFLOW_HAVE_X86_ISAS)
INFOFLOW_DECLARE_ISA(avx2)
INFOFLOW_DECLARE_ISA(avx512)
#endif
#undef INFOFLOW_DECLARE_ISA

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::generic: return true;
#if defined(INFOFLOW_HAVE_X86_ISAS)
    // __builtin_cpu_supports also checks that the OS saves the wider registers.
    case Isa::avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
             isa_supported(Isa::avx2);
#endif
    default: return false;
  }
}

Isa best_supported_isa() {
  static const Isa best = [] {
    for (Isa isa : {Isa::avx512, Isa::avx2})
      if (isa_supported(isa)) return isa;
    return Isa::generic;
  }();
  return best;
}

Isa parse_isa(const std::string& name) {
  if (name == "auto") return best_supported_isa();
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512}) {
    if (name == isa_name(isa)) {
      if (!isa_supported(isa))
        throw std::invalid_argument("isa: '" + name + "' is not supported by this CPU or build");
      return isa;
    }
  }
  throw std::invalid_argument("isa: expected 'auto', 'generic', 'avx2' or 'avx512', got '" +
                              name + "'");
}

Screen parse_screen(const std::string& name) {
  if (name == "auto") return Screen::automatic;
  if (name == "off") return Screen::off;
  if (name == "always") return Screen::always;
  throw std::invalid_argument("screen: expected 'auto', 'off' or 'always', got '" + name + "'");
}

Prune parse_prune(const std::string& name) {
  if (name == "auto") return Prune::automatic;
  if (name == "off") return Prune::off;
  if (name == "always") return Prune::always;
  throw std::invalid_argument("prune: expected 'auto', 'off' or 'always', got '" + name + "'");
}

template <class T>
bool log_density(const Problem<T>& problem, Isa isa, const Interrupt& interrupt) {
  switch (isa) {
#if defined(INFOFLOW_HAVE_X86_ISAS)
    case Isa::avx512: return avx512::log_density(problem, interrupt);
    case Isa::avx2: return avx2::log_density(problem, interrupt);
#endif
    default: return generic::log_density(problem, interrupt);
  }
}
template bool log_density<float>(const Problem<float>&, Isa, const Interrupt&);
template bool log_density<double>(const Problem<double>&, Isa, const Interrupt&);

template <class T>
bool log_density_backward(const Problem<T>& problem, const Gradients<T>& gradients, Isa isa,
                          const Interrupt& interrupt) {
  switch (isa) {
#if defined(INFOFLOW_HAVE_X86_ISAS)
    case Isa::avx512: return avx512::log_density_backward(problem, gradients, interrupt);
    case Isa::avx2: return avx2::log_density_backward(problem, gradients, interrupt);
#endif
    default: return generic::log_density_backward(problem, gradients, interrupt);
  }
}
template bool log_density_backward<float>(const Problem<float>&, const Gradients<float>&, Isa, const Interrupt&);
template bool log_density_backward<double>(const Problem<double>&, const Gradients<double>&, Isa,
                                           const Interrupt&);

template <class T>
void spatial_order(const StridedView3<T>& x, index_t n, index_t d, index_t* order, Isa isa) {
  switch (isa) {
#if defined(INFOFLOW_HAVE_X86_ISAS)
    case Isa::avx512: return avx512::spatial_order(x, n, d, order);
    case Isa::avx2: return avx2::spatial_order(x, n, d, order);
#endif
    default: return generic::spatial_order(x, n, d, order);
  }
}
template void spatial_order<float>(const StridedView3<float>&, index_t, index_t, index_t*, Isa);
template void spatial_order<double>(const StridedView3<double>&, index_t, index_t, index_t*, Isa);

int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

namespace {
std::atomic<bool> team_started{false};
std::atomic<bool> forked_after_team{false};

#if defined(INFOFLOW_HAVE_PTHREAD_ATFORK)
void after_fork_in_child() {
  if (team_started.load()) forked_after_team.store(true);
}
// Registered when the extension is loaded, before any team can exist.
const bool fork_handler_registered = pthread_atfork(nullptr, nullptr, &after_fork_in_child) == 0;
#endif
}  // namespace

int team_size(int requested) {
  if (forked_after_team.load(std::memory_order_relaxed)) return 1;
  const int threads = requested > 0 ? requested : max_threads();
  if (threads > 1) team_started.store(true, std::memory_order_relaxed);
  return threads;
}

bool serial_after_fork() { return forked_after_team.load(); }

bool has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace infoflow::cpu
