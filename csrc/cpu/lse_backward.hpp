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
// O((m + n) d), never m x n.  The differences c_j - q_i are summed directly rather than
// as sum_j r_ij c_j - q_i, which at small beta would cancel to a few digits.
//
// Work layout.  Rows and columns are both sums over pairs, so one fused pass computes
// each pair's distance and responsibility once and adds it to both.  To give every sum a
// single owner without per-thread copies, a mixture's queries and centres are cut into P
// stripes each (P = threads) and the pass runs in P rounds: in round r thread t takes
// query stripe t against centre stripe (t + r) mod P, so no two threads share a row or a
// column in a round.  Mixtures of a batch with few queries each are instead taken whole,
// one per thread.  Partial sums are kept in T within a register tile and a packed group,
// and in double across them.

template <class T>
struct BackwardScratch {
  AlignedArray<T> qbuf, r, neg_gr, row, col;
  BackwardScratch(index_t d, index_t max_groups)
      : qbuf(Simd<T>::tile_q * d), r(Simd<T>::tile_q * Layout<T>::G), neg_gr(Simd<T>::tile_q * Layout<T>::G),
        row(Simd<T>::tile_q * (d + 1) * Simd<T>::lanes), col(max_groups * (d + 2) * Layout<T>::G) {}
};

// Adds the pairs of queries i0..i1 and the packed groups g0..g1 of mixture b to its row
// sums (d + 1 per query: sum_j r_ij (c_j - q_i), then sum_j r_ij D_ij; `rows` starts at
// query i0) and column sums (d + 2 per centre: sum_i g_i r_ij (q_i - c_j), sum_i g_i r_ij,
// sum_i g_i e_ij; `cols` starts at group g0), all in double.  Within the call, partial
// sums are vectors of T: a query's over the groups, a group's over the queries.
template <class T>
void backward_block(const Problem<T>& p, const Gradients<T>& grads, const Layout<T>& lay,
                    const PackedCentres<T>& packed, index_t b, index_t i0, index_t i1, index_t g0, index_t g1,
                    double* rows, double* cols, BackwardScratch<T>& s) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes, kTileQ = Simd<T>::tile_q, kTileV = Simd<T>::tile_v;
  constexpr index_t G = Layout<T>::G;
  constexpr T kInf = std::numeric_limits<T>::infinity();
  const index_t d = p.d;
  const double scale = exponent_scale(p.beta);
  const T neg_scale = static_cast<T>(-scale);
  const bool want_columns = grads.centers != nullptr || grads.weights != nullptr;
  const bool want_rows = grads.queries != nullptr || grads.beta != nullptr;
  const double* lse = grads.lse + b * p.m;
  const double* upstream = grads.upstream + b * p.m;
  const index_t col_width = (d + 2) * G;  // one group's column partials: [k][G]
  std::fill(s.col.ptr, s.col.ptr + (g1 - g0) * col_width, T(0));

  for (index_t t0 = i0; t0 < i1; t0 += kTileQ) {
    const int count = static_cast<int>(std::min<index_t>(kTileQ, i1 - t0));
    // The tile's queries, and per query the reference distance D_ref = -(L - ln w_max) /
    // scale: r = exp((D + o - D_ref) (-scale)) then needs no large T subtraction.
    // Padding rows get D_ref = -inf (r ~ 0) and g = 0.
    T reference[kTileQ], weight_shift[kTileQ], grad_up[kTileQ];
    for (int a = 0; a < kTileQ; ++a) {
      T* q = s.qbuf.ptr + a * d;
      if (a < count) {
        for (index_t k = 0; k < d; ++k) q[k] = p.queries(b, t0 + a, k);
        reference[a] = static_cast<T>(-(lse[t0 + a] - packed.log_max_weight[b]) / scale);
        weight_shift[a] = static_cast<T>(-lse[t0 + a] / scale);
        grad_up[a] = static_cast<T>(upstream[t0 + a]);
      } else {
        std::fill(q, q + d, T(0));
        reference[a] = weight_shift[a] = -kInf;
        grad_up[a] = T(0);
      }
    }
    std::fill(s.row.ptr, s.row.ptr + kTileQ * (d + 1) * L, T(0));
    for (index_t g = g0; g < g1; ++g) {
      const T* group = packed.group(b, g, lay);
      T* col = s.col.ptr + (g - g0) * col_width;
      V dist[kTileQ][kTileV];
      tile_accumulate<T>(s.qbuf.ptr, group, d, dist, [](V c, V qk) {
        const V diff = c - qk;
        return diff * diff;
      });
      // Offsets: ln(w_max / w_j) / scale with weights, +inf for zero weights and padding.
      V offset[kTileV];
      const index_t valid = std::min<index_t>(G, p.n - g * G);
      for (int v = 0; v < kTileV; ++v) {
        offset[v] = p.weights != nullptr ? load<V>(packed.group_offsets(b, g, lay) + v * L) : V{};
        if (valid < G)  // the last group's padding (weighted offsets are +inf there already)
          for (int l = 0; l < L; ++l)
            if (v * L + l >= valid) offset[v][l] = kInf;
      }
      // A group whose every responsibility for the tile is below e^-87 (float) or e^-708
      // (double), i.e. beyond kNegligible of the query's largest term, adds nothing a
      // float sum of responsibilities that total 1 can hold: at small beta that skips
      // the coordinate work for almost every group, as the forward skips their blocks.
      V exponent[kTileQ][kTileV];
      V largest_exponent = splat<V>(-kInf);
      for (int a = 0; a < kTileQ; ++a)
        for (int v = 0; v < kTileV; ++v) {
          exponent[a][v] = (dist[a][v] + offset[v] - splat<V>(reference[a])) * neg_scale;
          largest_exponent = vmax(largest_exponent, exponent[a][v]);
        }
      T largest = largest_exponent[0];
      for (int l = 1; l < L; ++l) largest = std::max(largest, largest_exponent[l]);
      if (largest < -kNegligible<T> && grads.weights == nullptr) continue;
      for (int a = 0; a < kTileQ; ++a) {
        V dr = V{};
        for (int v = 0; v < kTileV; ++v) {
          const V e = vexp(exponent[a][v]);
          const V r = offset[v] < splat<V>(kInf) ? e : V{};  // exactly 0 for absent centres
          store(s.r.ptr + a * G + v * L, r);
          store(s.neg_gr.ptr + a * G + v * L, r * -grad_up[a]);
          dr += r * dist[a][v];
        }
        if (grads.beta != nullptr) {
          T* row_d = s.row.ptr + (a * (d + 1) + d) * L;
          store(row_d, load<V>(row_d) + dr);
        }
      }
      // Coordinates: row sums r (c - q) and column sums g r (q - c) from one difference.
      for (index_t k = 0; k < d; ++k) {
        V c[kTileV], col_k[kTileV];
        for (int v = 0; v < kTileV; ++v) {
          c[v] = load<V>(group + (k * kTileV + v) * L);
          col_k[v] = load<V>(col + k * G + v * L);
        }
        // All kTileQ rows (padding rows have g = 0 and are never written out), so that
        // the loops unroll: one difference and two FMAs per pair and coordinate.
        for (int a = 0; a < kTileQ; ++a) {
          const V qk = splat<V>(s.qbuf.ptr[a * d + k]);
          V row = V{};
          for (int v = 0; v < kTileV; ++v) {
            const V diff = c[v] - qk;
            row += load<V>(s.r.ptr + a * G + v * L) * diff;
            col_k[v] += load<V>(s.neg_gr.ptr + a * G + v * L) * diff;
          }
          T* row_k = s.row.ptr + (a * (d + 1) + k) * L;
          store(row_k, load<V>(row_k) + row);
        }
        for (int v = 0; v < kTileV; ++v) store(col + k * G + v * L, col_k[v]);
      }
      if (want_columns) {
        for (int v = 0; v < kTileV; ++v) {
          V total = load<V>(col + d * G + v * L), total_e = load<V>(col + (d + 1) * G + v * L);
          for (int a = 0; a < count; ++a) {
            total += load<V>(s.r.ptr + a * G + v * L) * grad_up[a];
            if (grads.weights != nullptr) {  // e_ij = exp(s_ij - L_i), the weight's own derivative
              // (zero weights included; padding centres are never written out)
              total_e += vexp((dist[a][v] - splat<V>(weight_shift[a])) * neg_scale) * grad_up[a];
            }
          }
          store(col + d * G + v * L, total);
          store(col + (d + 1) * G + v * L, total_e);
        }
      }
    }
    if (want_rows) {
      for (int a = 0; a < count; ++a)
        for (index_t k = 0; k <= d; ++k) {
          const V sum = load<V>(s.row.ptr + (a * (d + 1) + k) * L);
          double total = 0.0;
          for (int l = 0; l < L; ++l) total += static_cast<double>(sum[l]);
          rows[(t0 + a - i0) * (d + 1) + k] += total;
        }
    }
  }
  if (want_columns) {
    for (index_t g = g0; g < g1; ++g) {
      const T* col = s.col.ptr + (g - g0) * col_width;
      for (index_t j = 0; j < std::min<index_t>(G, p.n - g * G); ++j) {
        double* out = cols + ((g - g0) * G + j) * (d + 2);
        for (index_t k = 0; k < d + 2; ++k) out[k] += static_cast<double>(col[k * G + j]);
      }
    }
  }
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
  // A thread team (and its P rounds) pays only beyond ~10 ms of work.
  const bool small = static_cast<double>(p.batch) * p.m * p.n * (3 * p.d + 8) < 3e7;
  const int threads = small ? 1 : team_size(p.num_threads);
  CancelPoint cancel(interrupt);
  PackedCentres<T> packed(p, lay, false);
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
        for (index_t i0 = 0; i0 < p.m && !cancel(polls); i0 += kMaxQueriesPerTask) {
          const index_t i1 = std::min(p.m, i0 + kMaxQueriesPerTask);
          backward_block(p, grads, lay, packed, b, i0, i1, 0, lay.groups, rows.data() + i0 * (d + 1),
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

  // Few mixtures: stripes of queries and of centres, P rounds (see the file comment).
  const index_t stripes = threads;
  std::vector<double> rows(p.m * (d + 1)), cols(lay.groups * G * (d + 2));
  for (index_t b = 0; b < p.batch; ++b) {
    std::fill(rows.begin(), rows.end(), 0.0);
    std::fill(cols.begin(), cols.end(), 0.0);
    auto query_edge = [&](index_t t) { return t * p.m / stripes; };
    auto group_edge = [&](index_t t) { return t * lay.groups / stripes; };
    for (index_t round = 0; round < stripes; ++round) {
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
      {
        const bool polls = polling_thread(interrupt);
        BackwardScratch<T> s(d, lay.groups / stripes + 1);
#ifdef _OPENMP
#pragma omp for schedule(static, 1)
#endif
        for (index_t t = 0; t < stripes; ++t) {
          const index_t c = (t + round) % stripes;
          const index_t g0 = group_edge(c), g1 = group_edge(c + 1);
          for (index_t i0 = query_edge(t); i0 < query_edge(t + 1) && !cancel(polls); i0 += kMaxQueriesPerTask) {
            const index_t i1 = std::min(query_edge(t + 1), i0 + kMaxQueriesPerTask);
            backward_block(p, grads, lay, packed, b, i0, i1, g0, g1, rows.data() + i0 * (d + 1),
                           cols.data() + g0 * G * (d + 2), s);
          }
        }
      }
      if (cancel.cancelled.load()) return false;
    }
    double beta_sum = 0.0;
    finish_rows(p, grads, b, 0, p.m, rows.data(), beta_sum);
    finish_columns(p, grads, b, 0, lay.groups, cols.data());
    if (grads.beta != nullptr) grads.beta[b] = beta_sum / beta3;
  }
  return true;
}
