// Spatial ordering for the pruned kernel: a k-d partition whose leaves are runs of
// consecutive rows.
//
// The rows of one mixture (or one batch of queries) are split recursively at the median
// of their widest coordinate, like the build of a k-d tree, except that every split
// position is a multiple of `leaf` rows from the start.  Every run of `leaf` consecutive
// rows of the resulting order is then exactly one leaf of the tree: a spatially compact
// block, which is what makes its bounding box tight and its pruning effective.  The
// split follows the data (clusters of trained-network layers are elongated along
// arbitrary directions), where a space-filling curve of a fixed grid would cut blocks
// across its jumps.
//
// No include guard and no includes: lse_kernel.hpp includes this inside each ISA's
// internal namespace, so that every copy is compiled with its own instruction set and
// none can be picked by the linker for a CPU that lacks it.

namespace detail {

// Split rows order[lo, hi) at a multiple of `leaf` along their widest coordinate;
// returns the split position (lo or hi when the range is one leaf or degenerate).
template <class T>
index_t split_range(const StridedView3<T>& x, index_t b, index_t d, index_t leaf, index_t* order,
                    index_t lo, index_t hi, std::vector<std::pair<T, index_t>>& keys) {
  const index_t leaves = (hi - lo + leaf - 1) / leaf;
  if (leaves <= 1) return hi;
  index_t widest = 0;
  T widest_extent = T(-1);
  for (index_t k = 0; k < d; ++k) {
    T lo_k = std::numeric_limits<T>::infinity(), hi_k = -lo_k;
    for (index_t r = lo; r < hi; ++r) {
      const T v = x(b, order[r], k);
      lo_k = std::min(lo_k, v);
      hi_k = std::max(hi_k, v);
    }
    if (hi_k - lo_k > widest_extent) {
      widest_extent = hi_k - lo_k;
      widest = k;
    }
  }
  const index_t mid = lo + (leaves + 1) / 2 * leaf;
  if (!(widest_extent > T(0))) return mid;  // identical rows: any split is as good
  // Sorting (key, row) pairs keeps the comparisons in cache, unlike indirect keys.
  keys.resize(hi - lo);
  for (index_t r = lo; r < hi; ++r) keys[r - lo] = {x(b, order[r], widest), order[r]};
  std::nth_element(keys.begin(), keys.begin() + (mid - lo), keys.end());
  for (index_t r = lo; r < hi; ++r) order[r] = keys[r - lo].second;
  return mid;
}

}  // namespace detail

// order[0..n) becomes a permutation of the rows 0..n-1 of batch element b of x in which
// every run of `leaf` consecutive rows is one leaf of a k-d partition (see above).
// Splits of one level run in parallel once there are several ranges (for large n).
template <class T>
void kd_order(const StridedView3<T>& x, index_t b, index_t n, index_t d, index_t leaf, index_t* order,
              int threads) {
  for (index_t r = 0; r < n; ++r) order[r] = r;
  std::vector<std::pair<index_t, index_t>> ranges{{0, n}}, next;
  while (!ranges.empty()) {
    next.assign(2 * ranges.size(), {0, 0});
    const index_t count = static_cast<index_t>(ranges.size());
#ifdef _OPENMP
    // A thread team pays only for large orderings (waking one can cost a scheduler tick).
#pragma omp parallel num_threads(threads) if (threads > 1 && count > 1 && n >= (1 << 17))
#endif
    {
      std::vector<std::pair<T, index_t>> keys;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
      for (index_t i = 0; i < count; ++i) {
        const auto [lo, hi] = ranges[i];
        const index_t mid = detail::split_range(x, b, d, leaf, order, lo, hi, keys);
        if (mid < hi) next[2 * i] = {lo, mid}, next[2 * i + 1] = {mid, hi};
      }
    }
    ranges.clear();
    for (const auto& range : next)
      if (range.second - range.first > leaf) ranges.push_back(range);
  }
  (void)threads;
}
