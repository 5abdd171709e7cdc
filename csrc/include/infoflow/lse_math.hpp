// The mathematics shared by the CPU and CUDA kernels.
//
// Kernel contract: for every batch b and query i,
//
//     out[b, i] = log sum_j exp(-||q[b, i] - c[b, j]||^2 / (2 beta^2))
//
// Both backends keep, per query, an online log-sum-exp state: the smallest squared
// distance seen so far (the largest exponent) and the sum of exp(-(D - Dmin) * scale)
// over the centres seen, in double.  A new block of distances first lowers Dmin, then
// rescales the old sum once per block rather than once per element.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#if defined(__CUDACC__)
#define INFOFLOW_HD __host__ __device__ __forceinline__
#else
#define INFOFLOW_HD inline
#endif

namespace infoflow {

using index_t = std::int64_t;  // every index is 64-bit: n * d may exceed 2^31

// 1 / (2 beta^2): multiplies a squared distance into a (negated) exponent.
INFOFLOW_HD double exponent_scale(double beta) { return 0.5 / (beta * beta); }

// Online log-sum-exp state of one query.
struct LseState {
  double dmin;  // smallest squared distance so far (+inf before any centre)
  double sum;   // sum_j exp(-(D_j - dmin) * scale) over the centres seen
};

INFOFLOW_HD LseState lse_empty() {
  return {std::numeric_limits<double>::infinity(), 0.0};
}

// Fold in a block whose smallest distance is `block_dmin` and whose sum of
// exp(-(D_j - new_dmin) * scale) is `block_sum`, where new_dmin = min(state.dmin, block_dmin).
INFOFLOW_HD void lse_fold(LseState& state, double new_dmin, double block_sum, double scale) {
  if (new_dmin < state.dmin) {
    // exp(-inf) = 0 also covers the empty state (dmin = +inf, sum = 0).  Factors that
    // underflow are set to 0 without calling exp, whose underflow path is slow.
    const double log_factor = (new_dmin - state.dmin) * scale;
    state.sum = log_factor > -745.0 ? state.sum * exp(log_factor) : 0.0;
    state.dmin = new_dmin;
  }
  state.sum += block_sum;
}

// Merge two partial states of the same query (e.g. from two ranges of centres).
INFOFLOW_HD void lse_merge(LseState& into, const LseState& other, double scale) {
  if (other.dmin < into.dmin) {
    into.sum = into.sum * exp((other.dmin - into.dmin) * scale) + other.sum;
    into.dmin = other.dmin;
  } else if (other.sum > 0.0) {
    into.sum += other.sum * exp((into.dmin - other.dmin) * scale);
  }
}

// log sum_j exp(-D_j * scale) from the state.  -inf when no centre is finite.
INFOFLOW_HD double lse_result(const LseState& state, double scale) {
  if (!(state.sum > 0.0)) return -std::numeric_limits<double>::infinity();
  return -state.dmin * scale + log(state.sum);
}

}  // namespace infoflow
