// The backward pass of the log-sum-exp (included by lse_kernel.hpp inside its ISA
// namespace; it uses that file's SIMD helpers, packing and cancellation).
//
// With s_ij = -||q_i - c_j||^2 / (2 beta^2), L_i = log sum_j w_j exp(s_ij) (the forward's
// result), r_ij = w_j exp(s_ij - L_i) (the responsibilities, summing to 1 over j) and the
// upstream gradient g_i, the pass computes, each only when asked for,
//
//   dq_i = g_i sum_j r_ij (c_j - q_i) / beta^2          (a row sum)
//   dc_j = sum_i g_i r_ij (q_i - c_j) / beta^2          (a column sum)
//   dbeta = sum_i g_i sum_j r_ij D_ij / beta^3          (D_ij = ||q_i - c_j||^2)
//   dw_j = sum_i g_i exp(s_ij - L_i)
//
// FlashAttention's scheme: L is saved by the forward and r recomputed here, so memory is
// O((m + n) d), never m x n.  The coordinate sums are never taken as sum_j r_ij c_j - q_i,
// which at small beta would cancel to a few digits: either from the differences c_j - q_i
// or, for a tile of nearby queries, expanded around one of them (add_coordinates_expanded).
//
// Work layout.  Rows and columns are both sums over pairs, so one fused pass computes
// each pair's distance and responsibility once and adds it to both.  To give every sum a
// single owner without per-thread copies, a mixture's queries and centres are cut into S
// stripes each (S = 4 threads, at most the packed groups) and the pass runs in S rounds:
// in round r, task t takes query stripe t against centre stripe (t + r) mod S, so no two
// tasks share a row or a column in a round.  Mixtures of a batch with few queries each are instead taken whole,
// one per thread.  Partial sums are kept in T within a tile of queries (rows) or a chunk
// of kBackwardChunk queries (columns), and in double across them.
//
// Per tile of queries and packed group the phases are: the distances and
// responsibilities (group_responsibilities), the column totals (add_column_totals),
// the coordinate sums (add_coordinates_expanded or _direct); per tile, flush_tile_rows.

// Which sums a pass computes, fixed at compile time so that the inner loops carry no
// tests and values only the rarer sums need (the distances for dbeta, the offsets of a
// weighted mixture) hold no registers when unused: with AVX2's 16, a 3 x 3 tile of
// responsibilities and its factors fill them.  `extras` (dbeta, dw or weights) is the
// general case, in which those are tested at run time.
template <bool kQueries, bool kCenters, bool kExtras>
struct Wanted {
  static constexpr bool queries = kQueries;  // dq
  static constexpr bool centers = kCenters;  // dc
  static constexpr bool extras = kExtras;
};

template <class T>
struct BackwardScratch {
  AlignedArray<T> qbuf, shifted, diff, row, col;
  BackwardScratch(index_t d, index_t max_groups)
      : qbuf(Simd<T>::tile_q * d), shifted(2 * Simd<T>::tile_q * d), diff(d * Simd<T>::tile_q * Layout<T>::G),
        row(Simd<T>::tile_q * (d + 2) * Simd<T>::lanes), col(max_groups * (d + 2) * Layout<T>::G) {}
};

// A tile whose queries lie within kCompactTile beta of its first query, coordinate by
// coordinate, takes the coordinate sums in the form expanded around that query (see
// add_coordinates_expanded); its rounding error is then at most a few times that of the direct
// differences.
constexpr double kCompactTile = 8.0;

// Queries per call of backward_block: its column partials, summed in T over the chunk,
// go to double at its end (n (d + 2) conversions, which at 64 queries cost a tenth of
// the pass), and Ctrl-C is polled between chunks.
constexpr index_t kBackwardChunk = 256;

// Squared distances of the tile's queries to one packed group, by direct differences.
// The differences c_jk - q_ak are kept in `diff` ([k][a][v] vectors) for every query
// when kAllRows, else for the first query only ([k][v]: the group relative to it).
template <class T, bool kAllRows>
inline void distance_tile_keeping_differences(const T* __restrict q, const T* __restrict group, index_t d,
                                              T* __restrict diff,
                                              typename Simd<T>::V (&dist)[Simd<T>::tile_q][Simd<T>::tile_v]) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes, kTileQ = Simd<T>::tile_q, kTileV = Simd<T>::tile_v;
  constexpr int kKept = kAllRows ? kTileQ : 1;
  for (int a = 0; a < kTileQ; ++a)
    for (int v = 0; v < kTileV; ++v) dist[a][v] = V{};
  for (index_t k = 0; k < d; ++k) {
    V c[kTileV];
    for (int v = 0; v < kTileV; ++v) c[v] = load<V>(group + (k * kTileV + v) * L);
    T* diff_k = diff + k * kKept * kTileV * L;
    for (int a = 0; a < kTileQ; ++a) {
      const V qk = splat<V>(q[a * d + k]);
      for (int v = 0; v < kTileV; ++v) {
        const V delta = c[v] - qk;
        if (a < kKept) store(diff_k + (a * kTileV + v) * L, delta);
        dist[a][v] += delta * delta;
      }
    }
  }
}

// One register tile of consecutive queries, as the pass needs it: the queries (qbuf;
// padding rows repeat the first, with g = 0), per query the reference distance D_ref =
// -(L - ln w_max) / scale, so that r = exp((D + o - D_ref) (-scale)) needs no large T
// subtraction (-inf for padding: r ~ 0), the weights' shift -L / scale, the upstream
// gradient, and whether the tile is compact (its queries within kCompactTile beta of the
// first, coordinate by coordinate).
template <class T>
struct QueryTile {
  static constexpr int kTileQ = Simd<T>::tile_q;
  int count = 0;
  bool compact = true;
  T reference[kTileQ], weight_shift[kTileQ], grad_up[kTileQ];
};

// Phase 1: loads the tile of queries t0.. into s.qbuf, with q_a - o and g_a (q_a - o)
// into s.shifted for the expanded form.
template <class T>
[[gnu::always_inline]] inline void load_query_tile(const Problem<T>& p, const Gradients<T>& grads,
                                                   const PackedCentres<T>& packed, index_t b, index_t t0, int count,
                                                   BackwardScratch<T>& s, QueryTile<T>& tile) {
  constexpr int kTileQ = Simd<T>::tile_q;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const index_t d = p.d;
  const double scale = exponent_scale(p.beta);
  const double lse_shift = packed.log_max_weight[b];
  const T compact_limit = static_cast<T>(kCompactTile * p.beta);
  const double* lse = grads.lse + b * p.m;
  T* q_rel = s.shifted.ptr;                // q_a - o, [a][k]
  T* gq_rel = s.shifted.ptr + kTileQ * d;  // g_a (q_a - o), [a][k]
  tile.count = count;
  tile.compact = true;
  for (int a = 0; a < kTileQ; ++a) {
    const bool real = a < count;
    T* q = s.qbuf.ptr + a * d;
    for (index_t k = 0; k < d; ++k) q[k] = p.queries(b, real ? t0 + a : t0, k);
    tile.reference[a] = real ? static_cast<T>(-(lse[t0 + a] - lse_shift) / scale) : -kInf;
    tile.weight_shift[a] = real ? static_cast<T>(-lse[t0 + a] / scale) : -kInf;
    tile.grad_up[a] = real ? static_cast<T>(grads.upstream[b * p.m + t0 + a]) : T(0);
    for (index_t k = 0; k < d; ++k) {
      q_rel[a * d + k] = q[k] - s.qbuf.ptr[k];
      gq_rel[a * d + k] = tile.grad_up[a] * q_rel[a * d + k];
      tile.compact = tile.compact && std::abs(q_rel[a * d + k]) <= compact_limit;
    }
  }
}

// Phase 2: the tile's squared distances to group g and their responsibilities r; adds
// sum_j r_aj D_aj (for beta) and sum_j r_aj (for a compact tile) to the row partials.
// Returns false, with nothing added, when every responsibility is below e^-87 (float) or
// e^-708 (double), i.e. beyond kNegligible of the query's largest term: a float sum of
// responsibilities that total 1 cannot hold them, and at small beta that skips the
// coordinate work for almost every group, as the forward skips their blocks.  (Not when
// the weights' gradient is wanted: it needs every e_ij.)
template <class T, class W>
[[gnu::always_inline]] inline bool group_responsibilities(
    const Problem<T>& p, const Gradients<T>& grads, const Layout<T>& lay, const PackedCentres<T>& packed,
    index_t b, index_t g, const QueryTile<T>& tile, BackwardScratch<T>& s,
    typename Simd<T>::V (&dist)[Simd<T>::tile_q][Simd<T>::tile_v],
    typename Simd<T>::V (&r)[Simd<T>::tile_q][Simd<T>::tile_v]) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes, kTileQ = Simd<T>::tile_q, kTileV = Simd<T>::tile_v;
  constexpr index_t G = Layout<T>::G;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const index_t d = p.d;
  const T neg_scale = static_cast<T>(-exponent_scale(p.beta));
  const T* group = packed.group(b, g, lay);
  const bool weighted = W::extras && p.weights != nullptr;
  const bool weights_wanted = W::extras && grads.weights != nullptr;
  if (tile.compact)
    distance_tile_keeping_differences<T, false>(s.qbuf.ptr, group, d, s.diff.ptr, dist);
  else
    distance_tile_keeping_differences<T, true>(s.qbuf.ptr, group, d, s.diff.ptr, dist);
  // Offsets: ln(w_max / w_j) / scale with weights, +inf for zero weights and padding.
  V offset[kTileV];
  const index_t valid = std::min<index_t>(G, p.n - g * G);
  for (int v = 0; v < kTileV; ++v) {
    offset[v] = weighted ? load<V>(packed.group_offsets(b, g, lay) + v * L) : V{};
    if (valid < G)  // the last group's padding (weighted offsets are +inf there already)
      for (int l = 0; l < L; ++l)
        if (v * L + l >= valid) offset[v][l] = kInf;
  }
  V exponent[kTileQ][kTileV];
  V largest_exponent = splat<V>(-kInf);
  for (int a = 0; a < kTileQ; ++a)
    for (int v = 0; v < kTileV; ++v) {
      exponent[a][v] = (dist[a][v] + offset[v] - splat<V>(tile.reference[a])) * neg_scale;
      largest_exponent = vmax(largest_exponent, exponent[a][v]);
    }
  T largest = largest_exponent[0];
  for (int l = 1; l < L; ++l) largest = std::max(largest, largest_exponent[l]);
  if (largest < -kNegligible<T> && !weights_wanted) return false;
  // Absent centres (zero weight, padding) get r exactly 0; a full unweighted group has none.
  const bool all_present = !weighted && valid == G;
  for (int a = 0; a < kTileQ; ++a)
    for (int v = 0; v < kTileV; ++v) r[a][v] = vexp(exponent[a][v]);
  if (!all_present)
    for (int a = 0; a < kTileQ; ++a)
      for (int v = 0; v < kTileV; ++v) r[a][v] = offset[v] < splat<V>(kInf) ? r[a][v] : V{};
  const index_t row_width = (d + 2) * L;
  if (W::extras && grads.beta != nullptr)  // sum_j r_aj D_aj
    for (int a = 0; a < kTileQ; ++a) {
      V dr = V{};
      for (int v = 0; v < kTileV; ++v) dr += r[a][v] * dist[a][v];
      T* row = s.row.ptr + a * row_width + d * L;
      store(row, load<V>(row) + dr);
    }
  if (W::queries && tile.compact)  // sum_j r_aj, for the expanded form's correction
    for (int a = 0; a < kTileQ; ++a) {
      V sum_r = V{};
      for (int v = 0; v < kTileV; ++v) sum_r += r[a][v];
      T* row = s.row.ptr + a * row_width + (d + 1) * L;
      store(row, load<V>(row) + sum_r);
    }
  return true;
}

// Phase 3: the group's column totals sum_a g_a r_aj (returned in `total` as well) and,
// with weights, sum_a g_a e_aj.  All rows, unrolled: padding rows have g = 0.
template <class T, class W>
[[gnu::always_inline]] inline void add_column_totals(
    const Problem<T>& p, const Gradients<T>& grads, const QueryTile<T>& tile, T* col,
    const typename Simd<T>::V (&dist)[Simd<T>::tile_q][Simd<T>::tile_v],
    const typename Simd<T>::V (&r)[Simd<T>::tile_q][Simd<T>::tile_v], typename Simd<T>::V (&total)[Simd<T>::tile_v]) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes, kTileQ = Simd<T>::tile_q, kTileV = Simd<T>::tile_v;
  constexpr index_t G = Layout<T>::G;
  const index_t d = p.d;
  const T neg_scale = static_cast<T>(-exponent_scale(p.beta));
  for (int v = 0; v < kTileV; ++v) {
    total[v] = V{};
    for (int a = 0; a < kTileQ; ++a) total[v] += r[a][v] * tile.grad_up[a];
    store(col + d * G + v * L, load<V>(col + d * G + v * L) + total[v]);
  }
  if (W::extras && grads.weights != nullptr)  // e_ij = exp(s_ij - L_i), the weight's own derivative
    for (int v = 0; v < kTileV; ++v) {
      V total_e = load<V>(col + (d + 1) * G + v * L);
      for (int a = 0; a < kTileQ; ++a)
        total_e += vexp((dist[a][v] - splat<V>(tile.weight_shift[a])) * neg_scale) * tile.grad_up[a];
      store(col + (d + 1) * G + v * L, total_e);
    }
}

// Phase 4a, a compact tile: the coordinate sums expanded around its first query o,
//
//   sum_j r_aj (c_j - q_a)     = sum_j r_aj (c_j - o) - (q_a - o) sum_j r_aj
//   sum_a g_a r_aj (q_a - c_j) = sum_a r_aj g_a (q_a - o) - (c_j - o) sum_a g_a r_aj,
//
// in one loop with r in registers: two FMAs per pair and coordinate and no subtraction.
// c_j - o are the first query's differences, kept by the distance pass; the rows'
// correction waits for the end of the tile (flush_tile_rows), as it needs only
// sum_j r_aj.  Relevant centres lie within sqrt(2 kNegligible) beta of a query (13 beta in
// float, 38 in double; beyond, r is below T's resolution next to 1), so every term is at
// most a few tens of beta: the cancellation costs a few bits of T, not the result.
template <class T, class W>
[[gnu::always_inline]] inline void add_coordinates_expanded(
    const Problem<T>& p, BackwardScratch<T>& s, T* col,
    const typename Simd<T>::V (&r)[Simd<T>::tile_q][Simd<T>::tile_v],
    const typename Simd<T>::V (&total)[Simd<T>::tile_v]) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes, kTileQ = Simd<T>::tile_q, kTileV = Simd<T>::tile_v;
  constexpr index_t G = Layout<T>::G;
  const index_t d = p.d, row_width = (d + 2) * L;
  const T* gq_rel = s.shifted.ptr + kTileQ * d;
  for (index_t k = 0; k < d; ++k) {
    const T* c_rel = s.diff.ptr + k * kTileV * L;
    if constexpr (W::queries)
      for (int a = 0; a < kTileQ; ++a) {
        T* row_k = s.row.ptr + a * row_width + k * L;
        V acc = load<V>(row_k);
        for (int v = 0; v < kTileV; ++v) acc += r[a][v] * load<V>(c_rel + v * L);
        store(row_k, acc);
      }
    if constexpr (W::centers) {
      V u[kTileQ];
      for (int a = 0; a < kTileQ; ++a) u[a] = splat<V>(gq_rel[a * d + k]);
      for (int v = 0; v < kTileV; ++v) {
        V acc = load<V>(col + k * G + v * L) - load<V>(c_rel + v * L) * total[v];
        for (int a = 0; a < kTileQ; ++a) acc += r[a][v] * u[a];
        store(col + k * G + v * L, acc);
      }
    }
  }
}

// Phase 4b, any other tile: the coordinate sums from the kept differences, rows r (c - q)
// and then columns g r (q - c), each pass with its factors in registers (both at once
// would not fit in AVX2's 16).  r is overwritten.
template <class T, class W>
[[gnu::always_inline]] inline void add_coordinates_direct(const Problem<T>& p, const QueryTile<T>& tile,
                                                          BackwardScratch<T>& s, T* col,
                                                          typename Simd<T>::V (&r)[Simd<T>::tile_q][Simd<T>::tile_v]) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes, kTileQ = Simd<T>::tile_q, kTileV = Simd<T>::tile_v;
  constexpr index_t G = Layout<T>::G;
  const index_t d = p.d, row_width = (d + 2) * L;
  if constexpr (W::queries) {
    for (index_t k = 0; k < d; ++k) {
      const T* diff_k = s.diff.ptr + k * kTileQ * kTileV * L;
      for (int a = 0; a < kTileQ; ++a) {
        T* row_k = s.row.ptr + a * row_width + k * L;
        V acc = load<V>(row_k);
        for (int v = 0; v < kTileV; ++v) acc += r[a][v] * load<V>(diff_k + (a * kTileV + v) * L);
        store(row_k, acc);
      }
    }
  }
  if constexpr (W::centers) {
    for (int a = 0; a < kTileQ; ++a)
      for (int v = 0; v < kTileV; ++v) r[a][v] *= -tile.grad_up[a];
    for (index_t k = 0; k < d; ++k) {
      const T* diff_k = s.diff.ptr + k * kTileQ * kTileV * L;
      for (int v = 0; v < kTileV; ++v) {
        V acc = load<V>(col + k * G + v * L);
        for (int a = 0; a < kTileQ; ++a) acc += r[a][v] * load<V>(diff_k + (a * kTileV + v) * L);
        store(col + k * G + v * L, acc);
      }
    }
  }
}

// Phase 5: the tile's row partials (vectors of T over the groups) into `rows`, in double,
// with the expanded form's correction.
template <class T>
[[gnu::always_inline]] inline void flush_tile_rows(const Problem<T>& p, const QueryTile<T>& tile,
                                                   const BackwardScratch<T>& s, double* rows) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes;
  const index_t d = p.d, row_width = (d + 2) * L;
  const T* q_rel = s.shifted.ptr;
  for (int a = 0; a < tile.count; ++a) {
    const T* row = s.row.ptr + a * row_width;
    const V sum_r = load<V>(row + (d + 1) * L);
    for (index_t k = 0; k <= d; ++k) {
      V sum = load<V>(row + k * L);
      if (tile.compact && k < d) sum -= splat<V>(q_rel[a * d + k]) * sum_r;
      double value = 0.0;
      for (int l = 0; l < L; ++l) value += static_cast<double>(sum[l]);
      rows[a * (d + 1) + k] += value;
    }
  }
}

// Adds the pairs of queries i0..i1 and the packed groups g0..g1 of mixture b to its row
// sums (d + 1 per query: sum_j r_ij (c_j - q_i), then sum_j r_ij D_ij; `rows` starts at
// query i0) and column sums (d + 2 per centre: sum_i g_i r_ij (q_i - c_j), sum_i g_i r_ij,
// sum_i g_i e_ij; `cols` starts at group g0), all in double.  Within the call, partial
// sums are vectors of T: a query's over the groups, a group's over the queries.
template <class T, class W>
void backward_block(const Problem<T>& p, const Gradients<T>& grads, const Layout<T>& lay,
                    const PackedCentres<T>& packed, index_t b, index_t i0, index_t i1, index_t g0, index_t g1,
                    double* rows, double* cols, BackwardScratch<T>& s) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes, kTileQ = Simd<T>::tile_q, kTileV = Simd<T>::tile_v;
  constexpr index_t G = Layout<T>::G;
  const index_t d = p.d;
  const bool want_columns = W::centers || (W::extras && grads.weights != nullptr);
  const bool want_rows = W::queries || (W::extras && grads.beta != nullptr);
  const index_t col_width = (d + 2) * G;  // one group's column partials: [k][G]
  std::fill(s.col.ptr, s.col.ptr + (g1 - g0) * col_width, T(0));
  QueryTile<T> tile;
  for (index_t t0 = i0; t0 < i1; t0 += kTileQ) {
    load_query_tile(p, grads, packed, b, t0, static_cast<int>(std::min<index_t>(kTileQ, i1 - t0)), s, tile);
    std::fill(s.row.ptr, s.row.ptr + kTileQ * (d + 2) * L, T(0));
    for (index_t g = g0; g < g1; ++g) {
      T* col = s.col.ptr + (g - g0) * col_width;
      V dist[kTileQ][kTileV], r[kTileQ][kTileV], total[kTileV];
      if (!group_responsibilities<T, W>(p, grads, lay, packed, b, g, tile, s, dist, r)) continue;
      if (want_columns) add_column_totals<T, W>(p, grads, tile, col, dist, r, total);
      if (tile.compact)
        add_coordinates_expanded<T, W>(p, s, col, r, total);
      else
        add_coordinates_direct<T, W>(p, tile, s, col, r);
    }
    if (want_rows) flush_tile_rows(p, tile, s, rows + (t0 - i0) * (d + 1));
  }
  if (want_columns) {  // the chunk's column partials into `cols`, in double
    for (index_t g = g0; g < g1; ++g) {
      const T* col = s.col.ptr + (g - g0) * col_width;
      for (index_t j = 0; j < std::min<index_t>(G, p.n - g * G); ++j) {
        double* out = cols + ((g - g0) * G + j) * (d + 2);
        for (index_t k = 0; k < d + 2; ++k) out[k] += static_cast<double>(col[k * G + j]);
      }
    }
  }
}

template <class T>
using BackwardBlock = void (*)(const Problem<T>&, const Gradients<T>&, const Layout<T>&, const PackedCentres<T>&,
                               index_t, index_t, index_t, index_t, index_t, double*, double*, BackwardScratch<T>&);

// The backward_block compiled for the sums this call wants (with none wanted, the general
// one, which then adds nothing).
template <class T>
BackwardBlock<T> backward_block_for(const Problem<T>& p, const Gradients<T>& grads) {
  const bool q = grads.queries != nullptr, c = grads.centers != nullptr;
  if (grads.beta != nullptr || grads.weights != nullptr || p.weights != nullptr) {
    if (q) return c ? backward_block<T, Wanted<true, true, true>> : backward_block<T, Wanted<true, false, true>>;
    return c ? backward_block<T, Wanted<false, true, true>> : backward_block<T, Wanted<false, false, true>>;
  }
  if (q) return c ? backward_block<T, Wanted<true, true, false>> : backward_block<T, Wanted<true, false, false>>;
  return c ? backward_block<T, Wanted<false, true, false>> : backward_block<T, Wanted<false, false, true>>;
}

// Writes a mixture's gradients from its row and column sums.
template <class T>
void finish_rows(const Problem<T>& p, const Gradients<T>& grads, index_t b, index_t i0, index_t i1,
                 const double* rows, double& beta_sum) {
  const index_t d = p.d;
  const double inv_beta2 = 1.0 / (p.beta * p.beta);
  for (index_t i = i0; i < i1; ++i) {
    const double g = grads.upstream[b * p.m + i];
    const double* row = rows + (i - i0) * (d + 1);
    if (grads.queries != nullptr)
      for (index_t k = 0; k < d; ++k) grads.queries[(b * p.m + i) * d + k] = static_cast<T>(g * row[k] * inv_beta2);
    beta_sum += g * row[d];
  }
}

template <class T>
void finish_columns(const Problem<T>& p, const Gradients<T>& grads, index_t b, index_t g0, index_t g1,
                    const double* cols) {
  const index_t d = p.d;
  const double inv_beta2 = 1.0 / (p.beta * p.beta);
  for (index_t slot = g0 * Layout<T>::G; slot < std::min(p.n, g1 * Layout<T>::G); ++slot) {
    const double* col = cols + (slot - g0 * Layout<T>::G) * (d + 2);
    if (grads.centers != nullptr)
      for (index_t k = 0; k < d; ++k)
        grads.centers[(b * p.n + slot) * d + k] = static_cast<T>(col[k] * inv_beta2);
    if (grads.weights != nullptr) grads.weights[b * p.n + slot] = static_cast<T>(col[d + 1]);
  }
}

template <class T>
bool run_backward(const Problem<T>& p, const Gradients<T>& grads, const Interrupt& interrupt) {
  const Layout<T> lay(p.n, p.d);
  const index_t d = p.d, G = Layout<T>::G;
  // A thread team (and its rounds) pays only beyond ~10 ms of work.
  const bool small = static_cast<double>(p.batch) * p.m * p.n * (3 * p.d + 8) < 3e7;
  const int threads = small ? 1 : team_size(p.num_threads);
  CancelPoint cancel(interrupt);
  PackedCentres<T> packed(p, lay, false);
  const BackwardBlock<T> block = backward_block_for(p, grads);
  if (!pack_centres<T>(p, lay, nullptr, nullptr, threads, packed, cancel)) return false;
  const double beta3 = p.beta * p.beta * p.beta;

  if (p.batch >= 2 * static_cast<index_t>(threads) || threads == 1) {
    // Whole mixtures, one per task: every row and column sum has one owner.
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
      const bool polls = polling_thread(interrupt);
      BackwardScratch<T> s(d, lay.groups);
      std::vector<double> rows, cols;
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
      for (index_t b = 0; b < p.batch; ++b) {
        if (cancel(polls)) continue;
        rows.assign(p.m * (d + 1), 0.0);
        cols.assign(lay.groups * G * (d + 2), 0.0);
        // Queries in chunks, so that a long mixture still polls for Ctrl-C.
        for (index_t i0 = 0; i0 < p.m && !cancel(polls); i0 += kBackwardChunk) {
          const index_t i1 = std::min(p.m, i0 + kBackwardChunk);
          block(p, grads, lay, packed, b, i0, i1, 0, lay.groups, rows.data() + i0 * (d + 1),
                         cols.data(), s);
        }
        double beta_sum = 0.0;
        finish_rows(p, grads, b, 0, p.m, rows.data(), beta_sum);
        finish_columns(p, grads, b, 0, lay.groups, cols.data());
        if (grads.beta != nullptr) grads.beta[b] = beta_sum / beta3;
      }
    }
    return !cancel.cancelled.load();
  }

  // Few mixtures: S = 4 P stripes of queries and of centres, S rounds (see the file
  // comment); S tasks a round, taken dynamically, so that a thread slowed by others on
  // the machine holds up a round by a quarter of its share, not by all of it.
  const index_t stripes = std::min<index_t>(4 * static_cast<index_t>(threads), lay.groups);
  std::vector<double> rows(p.m * (d + 1)), cols(lay.groups * G * (d + 2));
  auto query_edge = [&](index_t t) { return t * p.m / stripes; };
  auto group_edge = [&](index_t t) { return t * lay.groups / stripes; };
  for (index_t b = 0; b < p.batch; ++b) {
    std::fill(rows.begin(), rows.end(), 0.0);
    std::fill(cols.begin(), cols.end(), 0.0);
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
      const bool polls = polling_thread(interrupt);
      BackwardScratch<T> s(d, lay.groups / stripes + 1);
      for (index_t round = 0; round < stripes; ++round) {
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
        for (index_t t = 0; t < stripes; ++t) {  // (the loop's end is the round's barrier)
          const index_t c = (t + round) % stripes;
          const index_t g0 = group_edge(c), g1 = group_edge(c + 1);
          for (index_t i0 = query_edge(t); i0 < query_edge(t + 1) && !cancel(polls); i0 += kBackwardChunk) {
            const index_t i1 = std::min(query_edge(t + 1), i0 + kBackwardChunk);
            block(p, grads, lay, packed, b, i0, i1, g0, g1, rows.data() + i0 * (d + 1),
                           cols.data() + g0 * G * (d + 2), s);
          }
        }
      }
    }
    if (cancel.cancelled.load()) return false;
    double beta_sum = 0.0;
    finish_rows(p, grads, b, 0, p.m, rows.data(), beta_sum);
    finish_columns(p, grads, b, 0, lay.groups, cols.data());
    if (grads.beta != nullptr) grads.beta[b] = beta_sum / beta3;
  }
  return true;
}
