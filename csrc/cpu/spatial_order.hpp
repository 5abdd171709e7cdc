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

// A range of positions [lo, hi), the bounding box of its rows (d lows, d highs), and
// which of the two buffers holds them.
template <class T>
struct Range {
  index_t lo, hi;
  std::vector<T> box;
  bool in_spare;
};

template <class T>
void widen(std::vector<T>& box, const T* row, index_t d) {
  for (index_t k = 0; k < d; ++k) {
    box[k] = std::min(box[k], row[k]);
    box[d + k] = std::max(box[d + k], row[k]);
  }
}

template <class T>
std::vector<T> empty_box(index_t d) {
  std::vector<T> box(2 * d, std::numeric_limits<T>::infinity());
  std::fill(box.begin() + d, box.end(), -std::numeric_limits<T>::infinity());
  return box;
}

// Split `range` at a multiple of `leaf` along its widest coordinate: its rows (row-major,
// d per position) and order entries move from one buffer to the same positions of the
// other, and the two halves come back with their boxes, measured while moving.
// Returns false when the range is one leaf (nothing moves).
template <class T>
bool split_range(index_t d, index_t leaf, const T* rows, const index_t* order, T* to_rows, index_t* to_order,
                 const Range<T>& range, Range<T>& left, Range<T>& right, std::vector<T>& keys) {
  const index_t lo = range.lo, hi = range.hi;
  const index_t leaves = (hi - lo + leaf - 1) / leaf;
  if (leaves <= 1) return false;
  index_t widest = 0;
  for (index_t k = 1; k < d; ++k)
    if (range.box[d + k] - range.box[k] > range.box[d + widest] - range.box[widest]) widest = k;
  const index_t mid = lo + (leaves + 1) / 2 * leaf;
  left = {lo, mid, empty_box<T>(d), !range.in_spare};
  right = {mid, hi, empty_box<T>(d), !range.in_spare};
  // The split value is found on a copy of the keys alone; the rows are then distributed
  // in one sequential pass (below it to the left, above to the right, ties filling the
  // left up to mid), so that no level gathers rows in random order, and no level copies
  // them back: the two buffers take turns.
  keys.resize(hi - lo);
  for (index_t r = lo; r < hi; ++r) keys[r - lo] = rows[r * d + widest];
  std::nth_element(keys.begin(), keys.begin() + (mid - lo), keys.end());
  const T split = keys[mid - lo];
  index_t ties_left = mid - lo;  // everything before mid is <= split
  for (index_t r = 0; r < mid - lo; ++r) ties_left -= keys[r] < split;
  index_t to_left = lo, to_right = mid;
  for (index_t r = lo; r < hi; ++r) {
    const T key = rows[r * d + widest];
    // A full side takes nothing more, so that even NaN keys (which compare false) cannot
    // move a row out of the range.
    const bool left_side =
        to_right == hi || (to_left < mid && (key < split || (!(key > split) && ties_left > 0 && ties_left--)));
    const index_t at = left_side ? to_left++ : to_right++;
    for (index_t k = 0; k < d; ++k) to_rows[at * d + k] = rows[r * d + k];  // d is small: no memmove
    widen(left_side ? left.box : right.box, rows + r * d, d);
    to_order[at] = order[r];
  }
  return true;
}

}  // namespace detail

// order[0..n) becomes a permutation of the rows 0..n-1 of batch element b of x in which
// every run of `leaf` consecutive rows is one leaf of a k-d partition (see above), and
// rows[0..n*d) the rows themselves in that order (row-major).  Splits of one level run
// in parallel once there are several ranges (for large n).
template <class T>
void kd_order(const StridedView3<T>& x, index_t b, index_t n, index_t d, index_t leaf, index_t* order,
              T* rows, int threads) {
  std::vector<T> spare_rows(n * d);
  std::vector<index_t> spare_order(n);
  std::vector<detail::Range<T>> ranges(1, {0, n, detail::empty_box<T>(d), false}), next, finished;
  for (index_t r = 0; r < n; ++r) {
    order[r] = r;
    for (index_t k = 0; k < d; ++k) rows[r * d + k] = x(b, r, k);
    detail::widen(ranges[0].box, rows + r * d, d);
  }
  while (!ranges.empty()) {
    const index_t count = static_cast<index_t>(ranges.size());
    next.assign(2 * count, {0, 0, {}, false});
#ifdef _OPENMP
    // A thread team pays only for large orderings (waking one can cost a scheduler tick).
#pragma omp parallel num_threads(threads) if (threads > 1 && count > 1 && n >= (1 << 17))
#endif
    {
      std::vector<T> keys;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
      for (index_t i = 0; i < count; ++i) {
        const bool spare = ranges[i].in_spare;
        detail::split_range(d, leaf, spare ? spare_rows.data() : rows, spare ? spare_order.data() : order,
                            spare ? rows : spare_rows.data(), spare ? order : spare_order.data(), ranges[i],
                            next[2 * i], next[2 * i + 1], keys);
      }
    }
    for (index_t i = 0; i < count; ++i)  // a range that did not split is a finished leaf
      if (next[2 * i].hi == 0) finished.push_back(std::move(ranges[i]));
    ranges.clear();
    for (auto& range : next) {
      if (range.hi == 0) continue;
      if (range.hi - range.lo > leaf) ranges.push_back(std::move(range));
      else finished.push_back(std::move(range));
    }
  }
  for (const auto& range : finished) {  // leaves left in the spare buffer come home
    if (!range.in_spare) continue;
    std::copy(spare_rows.begin() + range.lo * d, spare_rows.begin() + range.hi * d, rows + range.lo * d);
    std::copy(spare_order.begin() + range.lo, spare_order.begin() + range.hi, order + range.lo);
  }
  (void)threads;
}
