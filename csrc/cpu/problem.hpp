// What the Python binding hands to the CPU kernels: raw pointers, shapes and element
// strides of the (batch, rows, dims) inputs, and a way to ask whether to stop.
#pragma once

#include <string>

#include "infoflow/lse_math.hpp"

namespace infoflow::cpu {

template <class T>
struct StridedView3 {
  const T* data;
  index_t stride[3];  // in elements, may be negative or zero
  const T& operator()(index_t b, index_t i, index_t k) const {
    return data[b * stride[0] + i * stride[1] + k * stride[2]];
  }
};

// The GEMM-form screen of the CPU kernel (see lse_kernel.hpp): `automatic` uses it for
// d >= 16 while it pays, `off` never, `always` on every block (for tests).
enum class Screen { automatic = 0, off = 1, always = 2 };
Screen parse_screen(const std::string& name);  // "auto", "off", "always"

// Block pruning (see lse_kernel.hpp): `automatic` prunes problems large enough to pay
// for the ordering, `off` runs the brute path, `always` prunes every problem (for tests).
enum class Prune { automatic = 0, off = 1, always = 2 };
Prune parse_prune(const std::string& name);  // "auto", "off", "always"

// What the kernel did, summed over a call (for tests and benchmarks).  Screen: register
// tiles x blocks in all, how many were screened, how many of those were skipped.
// Pruning: batch elements that ran the pruned path, and for those the (query task,
// centre block) pairs there were and how many of them were computed.
struct KernelStats {
  index_t tile_blocks = 0, screened = 0, skipped = 0;
  index_t pruned = 0, block_visits = 0, blocks_computed = 0;
};

template <class T>
struct Problem {
  StridedView3<T> queries;  // (batch, m, d)
  StridedView3<T> centers;  // (batch, n, d)
  T* out;                   // (batch, m), C-contiguous
  index_t batch, m, n, d;
  double beta;
  int num_threads;  // <= 0: the OpenMP default
  Screen screen = Screen::automatic;
  Prune prune = Prune::automatic;
  // Optional, length m: for query i, a centre likely to be near it (a speed hint only).
  const index_t* near_centre = nullptr;
  // Optional, C-contiguous (batch, n): non-negative centre weights, out[b, i] becoming
  // log sum_j w_j exp(...).  Each batch element needs one positive weight.
  const T* weights = nullptr;
  // The centres are already in the order spatial_order gives (or a subsequence of it):
  // the pruned path takes their blocks as they are instead of ordering them.
  bool centres_ordered = false;
  // Optional, length batch: added to every result of batch element b in double before
  // the rounding to T, so that a caller's normaliser (log-densities near 0 out of
  // log-sum-exps near -600) costs no float32 precision.
  const double* shift = nullptr;
  KernelStats* stats = nullptr;  // optional, filled in when given
};

// What the backward pass of log_density writes (see lse_backward.hpp); a null output is
// not computed.  lse and upstream are (batch, m) float64: the forward's log-sum-exp
// L_i = log sum_j w_j exp(s_ij) and the gradient of the loss with respect to it.
template <class T>
struct Gradients {
  const double* lse = nullptr;
  const double* upstream = nullptr;
  T* queries = nullptr;       // (batch, m, d): g_i sum_j r_ij (c_j - q_i) / beta^2
  T* centers = nullptr;       // (batch, n, d): sum_i g_i r_ij (q_i - c_j) / beta^2
  double* beta = nullptr;     // (batch,): sum_i g_i sum_j r_ij D_ij / beta^3
  T* weights = nullptr;       // (batch, n): sum_i g_i exp(s_ij - L_i)
};

// Called by the calling thread every few tens of milliseconds; returns true to cancel
// (the Python binding checks for Ctrl-C there).
struct Interrupt {
  bool (*poll)(void* context) = nullptr;
  void* context = nullptr;
};

enum class Isa { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
Isa best_supported_isa();
bool isa_supported(Isa isa);
Isa parse_isa(const std::string& name);  // "auto", "generic", "avx2", "avx512"

// Returns false when the interrupt asked to stop (the output is then incomplete).
template <class T>
bool log_density(const Problem<T>& problem, Isa isa, const Interrupt& interrupt);

// The backward pass; returns false when the interrupt asked to stop.
template <class T>
bool log_density_backward(const Problem<T>& problem, const Gradients<T>& gradients, Isa isa,
                          const Interrupt& interrupt);

// order[0..n) becomes the k-d order in which the pruned path of this ISA's kernel would
// take the n rows of x (batch element 0): callers that estimate several mixtures from
// subsets of one set of centres order it once (see Problem::centres_ordered).
template <class T>
void spatial_order(const StridedView3<T>& x, index_t n, index_t d, index_t* order, Isa isa);

int max_threads();
bool has_openmp();

// The number of threads a parallel region may use for a request (<= 0: OpenMP's
// default).  GNU OpenMP's thread pool does not survive fork(): in a child forked after
// this process started a team, every region runs on the calling thread alone.
int team_size(int requested);
// Whether this process is such a child (reported by build_info).
bool serial_after_fork();

}  // namespace infoflow::cpu
