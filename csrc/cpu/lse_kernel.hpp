// The CPU log-sum-exp kernel, written once with GCC/Clang vector extensions and compiled
// once per instruction set.  The including translation unit defines
//
//   INFOFLOW_ISA        namespace of this copy (generic, avx2, avx512)
//   INFOFLOW_VEC_BYTES  SIMD register width in bytes (16, 32, 64)
//   INFOFLOW_TILE_Q_F32, INFOFLOW_TILE_V_F32   float register tile: queries x centre vectors
//   INFOFLOW_TILE_Q_F64, INFOFLOW_TILE_V_F64   the same for double
//
// Work layout.  Centres are packed once per call into groups of G = TILE_V * lanes
// centres, stored dimension-major ([group][k][G]) so that one aligned load gives one
// coordinate of `lanes` centres.  A task owns up to 64 queries.  It walks the centres in
// blocks of ~256; for each group of a block it computes, register tile by register tile
// (TILE_Q queries x G centres), the squared distances by direct differences (accurate at
// small beta, unlike the expanded ||q||^2 + ||c||^2 - 2 q.c), so a group is read from L1/L2
// once per tile however large d is.  Then each query folds the block into its online
// log-sum-exp state with one rescale.  The task's distance buffer is 64 x 256 values;
// no m x n buffer ever exists.
//
// GEMM-form screen.  At small beta almost every block is negligible next to the nearest
// centre (its terms underflow), yet the direct form pays two operations per coordinate
// to find that out.  The expanded form ||q||^2 + ||c||^2 - 2 q.c costs one FMA per
// coordinate (~1.5x faster here) but cancels catastrophically, so its values never enter
// a sum: it only serves as a proof.  With a rigorous bound E on its rounding error, a
// register tile of queries skips a block when, for each query, the expanded distance
// minus E exceeds the nearest distance so far by more than kNegligible / scale, the
// same test the direct path applies.  Every term that is added is a direct-form value,
// so the float32 accuracy is the direct form's at any beta.  A task screens only while
// most of its recent blocks were negligible, so large beta pays (almost) nothing for it.
//
// No include guard: each ISA translation unit includes this once, inside its own namespace.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cpu/problem.hpp"
#include "infoflow/lse_math.hpp"

namespace infoflow::cpu::INFOFLOW_ISA {
namespace {  // internal linkage keeps this ISA's copy apart from the others

typedef float vfloat __attribute__((vector_size(INFOFLOW_VEC_BYTES)));
typedef double vdouble __attribute__((vector_size(INFOFLOW_VEC_BYTES)));
typedef std::int64_t vint64 __attribute__((vector_size(INFOFLOW_VEC_BYTES)));
typedef std::uint32_t vuint32 __attribute__((vector_size(INFOFLOW_VEC_BYTES)));
typedef std::uint64_t vuint64 __attribute__((vector_size(INFOFLOW_VEC_BYTES)));

template <class T>
struct Simd;
template <>
struct Simd<float> {
  using V = vfloat;
  static constexpr int lanes = INFOFLOW_VEC_BYTES / 4;
  static constexpr int tile_q = INFOFLOW_TILE_Q_F32;  // queries per register tile
  static constexpr int tile_v = INFOFLOW_TILE_V_F32;  // centre vectors per register tile
};
template <>
struct Simd<double> {
  using V = vdouble;
  static constexpr int lanes = INFOFLOW_VEC_BYTES / 8;
  static constexpr int tile_q = INFOFLOW_TILE_Q_F64;
  static constexpr int tile_v = INFOFLOW_TILE_V_F64;
};
constexpr std::size_t kAlign = 64;
constexpr index_t kExpBlock = 256;  // centres per log-sum-exp rescale
constexpr index_t kMaxQueriesPerTask = 64;

// Exponents below -kNegligible<T> are dropped: next to the block's largest term (exactly
// 1) they are below the smallest normal number, so even 10^9 of them change no bit.
template <class T>
constexpr T kNegligible = T(87);
template <>
constexpr double kNegligible<double> = 708.0;

// The screen runs for d >= kScreenMinDim (at d = 1 it costs as much as the direct form)
// while a task's moving average of skippable tiles exceeds kScreenWorthwhile: screening
// a block costs about 2/3 of computing it.
constexpr index_t kScreenMinDim = 2;
constexpr double kScreenWorthwhile = 0.7;
constexpr double kScreenMemory = 0.75;  // weight of the past in that average

template <class V, class S>
inline V splat(S s) {
  return V{} + s;
}
template <class V>
inline V load(const void* p) {  // p is kAlign-aligned
  return *static_cast<const V*>(__builtin_assume_aligned(p, INFOFLOW_VEC_BYTES));
}
template <class V>
inline void store(void* p, V v) {
  *static_cast<V*>(__builtin_assume_aligned(p, INFOFLOW_VEC_BYTES)) = v;
}
template <class V>
inline V vmin(V a, V b) {
  return a < b ? a : b;
}

// e^x for x <= 0 (Cephes expf: Cody-Waite reduction, degree-6 polynomial, ~1 ulp).
// Arguments below -87 return about 1e-38 instead of underflowing: such terms are
// negligible next to the block's largest term, which is exactly 1.
inline vfloat vexp(vfloat x) {
  const vfloat lo = splat<vfloat>(-87.0f);
  x = x > lo ? x : lo;
  // 1.5 * 2^23 rounds x log2(e) to an integer k; the extra 127 (the exponent bias) lands
  // in the low mantissa bits of t, so shifting t's bits left by 23 yields 2^k directly.
  const vfloat magic = splat<vfloat>(12582912.0f + 127.0f);
  const vfloat t = x * 1.44269504088896341f + magic;
  const vfloat k = t - magic;
  vfloat r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  vfloat p = splat<vfloat>(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const vfloat y = p * (r * r) + r + 1.0f;
  return y * (vfloat)((vuint32)t << 23);
}

#if INFOFLOW_VEC_BYTES == 64
// e^x for x <= 0 in double, with AVX-512's two-register permute as a 16-entry table:
// x = (16 e + j) ln2/16 + r with |r| <= ln2/32, e^x = 2^e 2^(j/16) e^r, and
// e^r = 1 + r + r^2 P(r) with P of degree 4 interpolating (e^r - 1 - r) / r^2 at the
// Chebyshev nodes (coefficients from 60-digit arithmetic; 0.25 ulp before the final
// roundings).  About 20% fewer operations than the table-free version below, which
// matters because the exp pass is half of the double kernel's time at small d.
// Arguments below -708 return about 1e-308.
inline vdouble vexp(vdouble x) {
  const vdouble lo = splat<vdouble>(-708.0);
  x = x > lo ? x : lo;
  const vdouble magic = splat<vdouble>(6755399441055744.0);  // 1.5 * 2^52: rounds to integer
  const vdouble t = x * 23.083120654223414518 + magic;   // 16 / ln 2
  const vdouble k = t - magic;
  vdouble r = x - k * 0.04332169878489367;  // ln2/16 split: 36 bits, so k * hi is exact
  r = r - k * 1.0291218489310675801e-13;
  vdouble p = splat<vdouble>(0.0013889034348599463469);
  p = p * r + 0.0083334497012534567511;
  p = p * r + 0.041666666664960449688;
  p = p * r + 0.1666666666530169086;
  p = p * r + 0.5;
  const vdouble expm1_r = p * (r * r) + r;
  const vint64 ki = (vint64)t - (vint64)magic;  // the integer 16 e + j
  const vdouble table_lo = {1.0, 1.0442737824274138403, 1.0905077326652576592,
                            1.1387886347566916537, 1.1892071150027210667, 1.2418578120734840486,
                            1.2968395546510096659, 1.3542555469368927283};
  const vdouble table_hi = {1.4142135623730950488, 1.4768261459394993114, 1.5422108254079408236,
                            1.6104903319492543082, 1.6817928305074290861, 1.7562521603732994831,
                            1.8340080864093424635, 1.9152065613971472939};
  const vdouble two_j16 = __builtin_shuffle(table_lo, table_hi, ki & 15);  // 2^(j/16)
  const vdouble y = two_j16 * expm1_r + two_j16;
  // Multiply by 2^e by adding e to the exponent field (e = floor(ki / 16)).
  return (vdouble)((vuint64)y + ((vuint64)(ki >> 4) << 52));
}
#else
// e^x for x <= 0 in double: the same reduction, then e^r = 1 + r + r^2 P(r) with P of
// degree 9 interpolating (e^r - 1 - r) / r^2 at the Chebyshev nodes of |r| <= ln(2)/2
// (coefficients computed in 50-digit arithmetic; < 1 ulp, two terms fewer than Taylor).
// Arguments below -708 return about 1e-308.
inline vdouble vexp(vdouble x) {
  const vdouble lo = splat<vdouble>(-708.0);
  x = x > lo ? x : lo;
  const vdouble magic = splat<vdouble>(6755399441055744.0 + 1023.0);  // as for float
  const vdouble t = x * 1.4426950408889634074 + magic;
  const vdouble k = t - magic;
  vdouble r = x - k * 6.93145751953125e-1;
  r = r - k * 1.42860682030941723212e-6;
  vdouble p = splat<vdouble>(2.5100375832561233664e-8);
  p = p * r + 2.7620075879983366586e-7;
  p = p * r + 2.7557268480310025526e-6;
  p = p * r + 2.4801521322368693266e-5;
  p = p * r + 1.9841269863040545271e-4;
  p = p * r + 1.3888888917196719077e-3;
  p = p * r + 8.3333333333300644495e-3;
  p = p * r + 4.1666666666624161903e-2;
  p = p * r + 1.6666666666666667452e-1;
  p = p * r + 5.0000000000000010211e-1;
  const vdouble y = p * (r * r) + r + 1.0;
  return y * (vdouble)((vuint64)t << 52);
}
#endif

template <class T>
struct AlignedArray {
  explicit AlignedArray(index_t count)
      : ptr(static_cast<T*>(::operator new(std::max<index_t>(count, 1) * sizeof(T),
                                           std::align_val_t(kAlign)))) {}
  ~AlignedArray() { ::operator delete(ptr, std::align_val_t(kAlign)); }
  AlignedArray(const AlignedArray&) = delete;
  AlignedArray& operator=(const AlignedArray&) = delete;
  T* ptr;
};

// The register-tiled loop shared by the direct and the expanded form: for tile_q
// queries (rows of q, stride d) and the G = tile_v * lanes centres of one packed group,
// acc[a][v] = sum_k step(c_k, q_ak), with step a squared difference or a product.
template <class T, class Step>
inline void tile_accumulate(const T* __restrict q, const T* __restrict group, index_t d,
                            typename Simd<T>::V (&acc)[Simd<T>::tile_q][Simd<T>::tile_v], Step step) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes, kTileQ = Simd<T>::tile_q, kTileV = Simd<T>::tile_v;
  for (int a = 0; a < kTileQ; ++a)
    for (int v = 0; v < kTileV; ++v) acc[a][v] = V{};
  for (index_t k = 0; k < d; ++k) {
    V c[kTileV];
    for (int v = 0; v < kTileV; ++v) c[v] = load<V>(group + (k * kTileV + v) * L);
    for (int a = 0; a < kTileQ; ++a) {
      const V qk = splat<V>(q[a * d + k]);
      for (int v = 0; v < kTileV; ++v) acc[a][v] += step(c[v], qk);
    }
  }
}

// Squared distances of tile_q queries to one packed group, by direct differences,
// written to out[row * ld + j].
template <class T>
inline void distance_tile(const T* __restrict q, const T* __restrict group, index_t d,
                          T* __restrict out, index_t ld) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes, kTileQ = Simd<T>::tile_q, kTileV = Simd<T>::tile_v;
  V acc[kTileQ][kTileV];
  tile_accumulate<T>(q, group, d, acc, [](V c, V qk) {
    const V diff = c - qk;
    return diff * diff;
  });
  for (int a = 0; a < kTileQ; ++a)
    for (int v = 0; v < kTileV; ++v) store(out + a * ld + v * L, acc[a][v]);
}

// The GEMM-form screen of one group for tile_q queries: smin[a * L + l] becomes the
// minimum over lane l's centres so far of fl(||c_j||^2 - 2 q_a.c_j), with ||c_j||^2 from
// `group_norms` (+inf for padding).  Rounding error: see screen_error_factor.
template <class T>
inline void screen_tile(const T* __restrict q, const T* __restrict group,
                        const T* __restrict group_norms, index_t d, T* __restrict smin) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes, kTileQ = Simd<T>::tile_q, kTileV = Simd<T>::tile_v;
  V acc[kTileQ][kTileV];
  tile_accumulate<T>(q, group, d, acc, [](V c, V qk) { return c * qk; });
  for (int a = 0; a < kTileQ; ++a) {
    V m = load<V>(smin + a * L);
    for (int v = 0; v < kTileV; ++v) m = vmin(m, load<V>(group_norms + v * L) - acc[a][v] * T(2));
    store(smin + a * L, m);
  }
}

// E / (||q||^2 + max_j ||c_j||^2), a bound on the screen's relative rounding error, with
// u the unit roundoff of T: each lane's dot product q.c accumulates d products in
// sequence, |error| <= gamma_d sum_k |q_k c_k| <= gamma_d (||q||^2 + ||c||^2) / 2 with
// gamma_d = d u / (1 - d u); the rounding of ||c||^2 to T and the final FMA add
// u ||c||^2 + 2u (||q||^2 + ||c||^2) at most.  Twice (d + 4) u covers it all for
// d u < 0.01, where the screen is allowed.
template <class T>
constexpr double screen_error_factor(index_t d) {
  return 2.0 * static_cast<double>(d + 4) * (std::numeric_limits<T>::epsilon() / 2);
}

// Fold `count` squared distances (a multiple of the lane count; padding holds +inf)
// into one query's log-sum-exp state: one min pass, one exp pass, one rescale.
// `nearest_bound` is an upper bound on the query's nearest squared distance (see
// run); returns true when the block was negligible (nothing was added).
template <class T>
inline bool fold_block(const T* __restrict dist, index_t count, LseState& state,
                       double nearest_bound, T neg_scale, double scale) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes;
  V vm = splat<V>(std::numeric_limits<T>::infinity());
  for (index_t j = 0; j < count; j += L) vm = vmin(vm, load<V>(dist + j));
  T block_min = vm[0];
  for (int l = 1; l < L; ++l) block_min = std::min(block_min, vm[l]);
  if (!(block_min < std::numeric_limits<T>::infinity())) return true;  // all padding
  // A block far beyond the nearest centre so far adds nothing representable: at small
  // beta this skips the exp pass for most blocks.
  const double nearest = std::min(state.dmin, nearest_bound);
  if ((static_cast<double>(block_min) - nearest) * scale > kNegligible<T>) return true;
  // The state's minimum came from a T value too, so this is exact in T.
  const T new_min = static_cast<T>(std::min(state.dmin, static_cast<double>(block_min)));
  const V shift = splat<V>(new_min);
  V sum0 = V{}, sum1 = V{};
  index_t j = 0;
  for (; j + 2 * L <= count; j += 2 * L) {
    sum0 += vexp((load<V>(dist + j) - shift) * neg_scale);
    sum1 += vexp((load<V>(dist + j + L) - shift) * neg_scale);
  }
  if (j < count) sum0 += vexp((load<V>(dist + j) - shift) * neg_scale);
  const V total = sum0 + sum1;
  double block_sum = 0.0;
  for (int l = 0; l < L; ++l) block_sum += static_cast<double>(total[l]);
  lse_fold(state, static_cast<double>(new_min), block_sum, scale);
  return false;
}

template <class T>
bool run(const Problem<T>& p, const Interrupt& interrupt) {
  constexpr int L = Simd<T>::lanes, kTileQ = Simd<T>::tile_q;
  constexpr index_t G = static_cast<index_t>(Simd<T>::tile_v) * L;  // centres per packed group
  const index_t d = p.d;
  const index_t groups = (p.n + G - 1) / G;
  const index_t block_groups = std::max<index_t>(1, kExpBlock / G);
  const index_t block_width = block_groups * G;
  const double scale = exponent_scale(p.beta);
  const T neg_scale = static_cast<T>(-scale);

#ifdef _OPENMP
  // Waking a thread team costs microseconds on a quiet machine and a scheduler tick
  // (~milliseconds) on a busy one: small problems (under ~1 ms of work) run serially.
  const bool small = static_cast<double>(p.batch) * p.m * p.n * (d + 8) < 1e7;
  const int threads = small ? 1 : p.num_threads > 0 ? p.num_threads : omp_get_max_threads();
#endif

  const index_t blocks = (groups + block_groups - 1) / block_groups;
  const double screen_factor = screen_error_factor<T>(d);
  const bool may_screen =
      screen_factor < 0.02 && (p.screen == Screen::always ||
                               (p.screen == Screen::automatic && d >= kScreenMinDim));

  // Pack the centres: [batch][group][k][G], zero-padded past n.  For the screen, also
  // their squared norms ([batch][group][G], +inf past n) and each block's largest norm.
  AlignedArray<T> packed(p.batch * groups * d * G);
  AlignedArray<T> norms(may_screen ? p.batch * groups * G : 0);
  std::unique_ptr<double[]> block_max_norm(may_screen ? new double[p.batch * blocks]() : nullptr);
  const index_t pack_items = p.batch * groups;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
#endif
  for (index_t item = 0; item < pack_items; ++item) {
    const index_t b = item / groups, g = item % groups;
    T* dst = packed.ptr + item * d * G;
    for (index_t j = 0; j < G; ++j) {
      const index_t c = g * G + j;
      if (c < p.n) {
        for (index_t k = 0; k < d; ++k) dst[k * G + j] = p.centers(b, c, k);
      } else {
        for (index_t k = 0; k < d; ++k) dst[k * G + j] = T(0);
      }
    }
    if (may_screen) {
      for (index_t j = 0; j < G; ++j) {
        double norm = 0.0;
        for (index_t k = 0; k < d; ++k) norm += static_cast<double>(dst[k * G + j]) * dst[k * G + j];
        norms.ptr[item * G + j] =
            g * G + j < p.n ? static_cast<T>(norm) : std::numeric_limits<T>::infinity();
      }
    }
  }
  if (may_screen) {
    for (index_t b = 0; b < p.batch; ++b) {
      for (index_t c = 0; c < p.n; ++c) {
        double& block_max = block_max_norm[b * blocks + c / block_width];
        block_max = std::max(block_max, static_cast<double>(norms.ptr[b * groups * G + c]));
      }
    }
  }

  // Enough tasks to balance the threads, few enough to keep the query tiles reused.
#ifdef _OPENMP
  const index_t want_tasks = 4 * static_cast<index_t>(threads);
#else
  const index_t want_tasks = 1;
#endif
  index_t per_task = (p.batch * p.m + want_tasks - 1) / want_tasks;
  per_task = std::min<index_t>(std::max<index_t>(per_task, kTileQ), kMaxQueriesPerTask);
  per_task = std::min<index_t>(per_task, p.m);
  per_task = (per_task + kTileQ - 1) / kTileQ * kTileQ;
  const index_t tasks_per_batch = (p.m + per_task - 1) / per_task;
  const index_t query_tasks = p.batch * tasks_per_batch;
  // Too few query blocks to occupy the threads (a few queries against many centres):
  // split the centres into segments as well and merge the partial states at the end.
  const index_t segments =
      std::min(blocks, std::max<index_t>(1, want_tasks / std::max<index_t>(query_tasks, 1)));
  const index_t tasks = query_tasks * segments;
  std::unique_ptr<LseState[]> partial(segments > 1 ? new LseState[tasks * per_task] : nullptr);

  std::atomic<bool> cancelled{false};
  std::atomic<index_t> tile_blocks{0}, screened_tiles{0}, skipped_tiles{0};
  using clock = std::chrono::steady_clock;
  auto last_poll = clock::now();

#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
  {
#ifdef _OPENMP
    const bool polls = omp_get_thread_num() == 0 && interrupt.poll != nullptr;
#else
    const bool polls = interrupt.poll != nullptr;
#endif
    AlignedArray<T> qbuf(per_task * d);
    AlignedArray<T> dist(per_task * block_width);
    std::unique_ptr<LseState[]> state(new LseState[per_task]);
    // Screen buffers: squared query norms, per-lane screen minima, tiles to skip.
    std::unique_ptr<double[]> qnorm(new double[per_task]);
    std::unique_ptr<double[]> nearest_bound(new double[per_task]);
    AlignedArray<T> smin(may_screen ? per_task * L : 0);
    std::unique_ptr<bool[]> skip(new bool[per_task / kTileQ]);
    index_t my_tile_blocks = 0, my_screened = 0, my_skipped = 0;

#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t task = 0; task < tasks; ++task) {
      if (cancelled.load(std::memory_order_relaxed)) continue;
      const index_t query_task = task / segments, segment = task % segments;
      const index_t b = query_task / tasks_per_batch;
      const index_t i0 = (query_task % tasks_per_batch) * per_task;
      const index_t first_group = segment * blocks / segments * block_groups;
      const index_t end_group = std::min(groups, (segment + 1) * blocks / segments * block_groups);
      const index_t rows = std::min(per_task, p.m - i0);
      const index_t rows_padded = (rows + kTileQ - 1) / kTileQ * kTileQ;
      const index_t tiles = rows_padded / kTileQ;
      for (index_t a = 0; a < rows_padded; ++a) {
        state[a] = lse_empty();
        T* row = qbuf.ptr + a * d;
        if (a < rows) {
          for (index_t k = 0; k < d; ++k) row[k] = p.queries(b, i0 + a, k);
        } else {
          std::fill(row, row + d, T(0));
        }
        if (may_screen) {
          double norm = 0.0;
          for (index_t k = 0; k < d; ++k) norm += static_cast<double>(row[k]) * row[k];
          qnorm[a] = norm;
        }
        // Blocks far beyond the nearest centre are skipped, but a query meets its nearest
        // centre only somewhere along the way.  One centre that is likely near (the one
        // a Monte Carlo query was drawn around: the caller's hint, else i n / m) gives an
        // upper bound from the start; the factor covers the float rounding of the same
        // distance in the tiles.
        nearest_bound[a] = std::numeric_limits<double>::infinity();
        if (a < rows) {
          const index_t i = i0 + a;
          const index_t j = p.near_centre != nullptr
                                ? p.near_centre[i]
                                : std::min(p.n - 1, static_cast<index_t>(static_cast<double>(i) * p.n / p.m));
          double dist_j = 0.0;
          for (index_t k = 0; k < d; ++k) {
            const double diff = static_cast<double>(row[k]) - p.centers(b, j, k);
            dist_j += diff * diff;
          }
          nearest_bound[a] = dist_j * (1.0 + screen_factor);
        }
      }
      const T* batch_groups = packed.ptr + b * groups * d * G;
      // Moving average of the fraction of tiles a block let us skip.  The first block
      // runs in full; if it was negligible, the screen starts with the second.
      double skippable = kScreenWorthwhile;

      for (index_t g0 = first_group; g0 < end_group; g0 += block_groups) {
        if (polls && clock::now() - last_poll > std::chrono::milliseconds(50)) {
          last_poll = clock::now();
          if (interrupt.poll(interrupt.context)) cancelled.store(true);
        }
        if (cancelled.load(std::memory_order_relaxed)) break;
        const index_t g1 = std::min(end_group, g0 + block_groups);
        const index_t width = (g1 - g0) * G;
        const index_t valid = std::min(width, p.n - g0 * G);
        const bool screen =
            may_screen && (p.screen == Screen::always || skippable > kScreenWorthwhile);
        std::fill(skip.get(), skip.get() + tiles, false);
        my_tile_blocks += tiles;
        if (screen) {
          my_screened += tiles;
          std::fill(smin.ptr, smin.ptr + rows_padded * L, std::numeric_limits<T>::infinity());
          for (index_t g = g0; g < g1; ++g) {
            const T* group = batch_groups + g * d * G;
            const T* group_norms = norms.ptr + (b * groups + g) * G;
            for (index_t a0 = 0; a0 < rows_padded; a0 += kTileQ)
              screen_tile(qbuf.ptr + a0 * d, group, group_norms, d, smin.ptr + a0 * L);
          }
          const double block_norm = block_max_norm[b * blocks + g0 / block_groups];
          for (index_t t = 0; t < tiles; ++t) {
            bool negligible = true;
            for (index_t a = t * kTileQ; a < std::min(rows, (t + 1) * kTileQ) && negligible; ++a) {
              T lane_min = smin.ptr[a * L];
              for (int l = 1; l < L; ++l) lane_min = std::min(lane_min, smin.ptr[a * L + l]);
              // A lower bound on every squared distance of query a to the block.
              const double lower = qnorm[a] + static_cast<double>(lane_min) -
                                   screen_factor * (qnorm[a] + block_norm);
              negligible =
                  (lower - std::min(state[a].dmin, nearest_bound[a])) * scale > kNegligible<T>;
            }
            skip[t] = negligible;
            my_skipped += negligible;
          }
        }
        for (index_t g = g0; g < g1; ++g) {
          const T* group = batch_groups + g * d * G;
          for (index_t t = 0; t < tiles; ++t)
            if (!skip[t])
              distance_tile(qbuf.ptr + t * kTileQ * d, group, d,
                            dist.ptr + t * kTileQ * block_width + (g - g0) * G, block_width);
        }
        index_t negligible_tiles = 0;
        for (index_t t = 0; t < tiles; ++t) {
          bool negligible = true;
          if (!skip[t]) {
            for (index_t a = t * kTileQ; a < std::min(rows, (t + 1) * kTileQ); ++a) {
              T* drow = dist.ptr + a * block_width;
              std::fill(drow + valid, drow + width, std::numeric_limits<T>::infinity());
              negligible &= fold_block(drow, width, state[a], nearest_bound[a], neg_scale, scale);
            }
          }
          // While screening, count what the screen proved: a loose bound stops it.
          negligible_tiles += screen ? skip[t] : negligible;
        }
        skippable = kScreenMemory * skippable +
                    (1.0 - kScreenMemory) * static_cast<double>(negligible_tiles) / tiles;
      }
      if (segments > 1) {
        std::copy(state.get(), state.get() + rows, partial.get() + task * per_task);
      } else {
        T* out = p.out + b * p.m + i0;
        for (index_t a = 0; a < rows; ++a) out[a] = static_cast<T>(lse_result(state[a], scale));
      }
    }
    tile_blocks += my_tile_blocks;
    screened_tiles += my_screened;
    skipped_tiles += my_skipped;
  }
  if (cancelled.load()) return false;
  if (p.stats != nullptr) *p.stats = {tile_blocks.load(), screened_tiles.load(), skipped_tiles.load()};
  if (segments > 1) {
    for (index_t query_task = 0; query_task < query_tasks; ++query_task) {
      const index_t b = query_task / tasks_per_batch;
      const index_t i0 = (query_task % tasks_per_batch) * per_task;
      const index_t rows = std::min(per_task, p.m - i0);
      const LseState* parts = partial.get() + query_task * segments * per_task;
      for (index_t a = 0; a < rows; ++a) {
        LseState merged = parts[a];
        for (index_t segment = 1; segment < segments; ++segment)
          lse_merge(merged, parts[segment * per_task + a], scale);
        p.out[b * p.m + i0 + a] = static_cast<T>(lse_result(merged, scale));
      }
    }
  }
  return true;
}

}  // namespace

template <class T>
bool log_density(const Problem<T>& problem, const Interrupt& interrupt) {
  return run(problem, interrupt);
}
template bool log_density<float>(const Problem<float>&, const Interrupt&);
template bool log_density<double>(const Problem<double>&, const Interrupt&);

}  // namespace infoflow::cpu::INFOFLOW_ISA
