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
// Two paths share the packing and the block computation (phases 1 and 2 below): the
// brute path visits every block of every task (with the screen), the pruned path (phase
// 3b) takes the centres in k-d order and skips, with a proven error bound below the
// dtype's rounding, the subtrees that cannot change a query's sum.  run() chooses.
//
// No include guard: each ISA translation unit includes this once, inside its own namespace.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#if INFOFLOW_VEC_BYTES == 64
#include <immintrin.h>  // _mm512_permutex2var_pd (the exp table lookup)
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
template <class V>
inline V vmax(V a, V b) {
  return a > b ? a : b;
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
  // 2^(j/16): vpermt2pd, through the intrinsic that GCC and Clang both provide.
  const vdouble two_j16 = (vdouble)_mm512_permutex2var_pd((__m512d)table_lo, (__m512i)(ki & 15), (__m512d)table_hi);
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

#include "cpu/spatial_order.hpp"

// Fold `count` squared distances (a multiple of the lane count; padding holds +inf)
// into one query's log-sum-exp state: one min pass, one exp pass, one rescale.
// `nearest_bound` is an upper bound on the query's nearest squared distance (see
// run_brute); returns true when the block was negligible (nothing was added).
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

// Weighted mixtures fold exp(-(D_j + o_j) scale) with o_j = ln(w_max / w_j) / scale >= 0:
// the weight becomes an offset of the squared distance, so that every test above (the
// nearest term, negligible blocks, the screen's lower bounds) holds unchanged, and a
// zero weight (o_j = +inf) is a padding centre.
template <class T>
inline void add_offsets(T* __restrict dist, const T* __restrict offsets, index_t count) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::lanes;
  for (index_t j = 0; j < count; j += L) store(dist + j, load<V>(dist + j) + load<V>(offsets + j));
}

// The offset of a centre of weight w (see add_offsets), given ln of the largest weight.
inline double weight_offset(double w, double log_max_weight, double scale) {
  return w > 0.0 ? (log_max_weight - std::log(w)) / scale : std::numeric_limits<double>::infinity();
}

// ---------------------------------------------------------------------------------------
// Phase 1: the centres, packed
// ---------------------------------------------------------------------------------------

// The geometry every phase shares: G centres per packed group, blocks of block_groups
// groups (one log-sum-exp rescale each).
template <class T>
struct Layout {
  static constexpr index_t G = static_cast<index_t>(Simd<T>::tile_v) * Simd<T>::lanes;
  index_t n, d, groups, block_groups, block_width, blocks;
  Layout(index_t n_, index_t d_) : n(n_), d(d_) {
    groups = (n + G - 1) / G;
    block_groups = std::max<index_t>(1, kExpBlock / G);
    block_width = block_groups * G;
    blocks = (groups + block_groups - 1) / block_groups;
  }
};

// The centres of every batch element, dimension-major per group ([batch][group][k][G],
// zero past n), optionally in a given order; with weights, their offsets ([batch][group
// * G], +inf past n); for the screen, their squared norms (+inf past n) and each block's
// largest norm.
template <class T>
struct PackedCentres {
  AlignedArray<T> coords, offsets, norms;
  std::unique_ptr<double[]> block_max_norm;
  std::unique_ptr<double[]> log_max_weight;  // per batch element: ln max_j w_j (0 unweighted)
  std::unique_ptr<double[]> out_shift;       // per batch element: added to every result
  PackedCentres(const Problem<T>& p, const Layout<T>& lay, bool with_norms)
      : coords(p.batch * lay.groups * lay.d * Layout<T>::G),
        offsets(p.weights ? p.batch * lay.groups * Layout<T>::G : 0),
        norms(with_norms ? p.batch * lay.groups * Layout<T>::G : 0),
        block_max_norm(with_norms ? new double[p.batch * lay.blocks]() : nullptr),
        log_max_weight(new double[p.batch]()), out_shift(new double[p.batch]()) {}
  const T* group(index_t b, index_t g, const Layout<T>& lay) const {
    return coords.ptr + (b * lay.groups + g) * lay.d * Layout<T>::G;
  }
  const T* group_offsets(index_t b, index_t g, const Layout<T>& lay) const {
    return offsets.ptr + (b * lay.groups + g) * Layout<T>::G;
  }
};

// The calling thread (OpenMP thread 0) asks the interrupt every 50 ms; every thread then
// stops at its next block.
struct CancelPoint {
  const Interrupt& interrupt;
  std::atomic<bool> cancelled{false};
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  explicit CancelPoint(const Interrupt& i) : interrupt(i) {}
  bool operator()(bool polls) {
    if (polls && interrupt.poll != nullptr &&
        std::chrono::steady_clock::now() - last > std::chrono::milliseconds(50)) {
      last = std::chrono::steady_clock::now();
      if (interrupt.poll(interrupt.context)) cancelled.store(true);
    }
    return cancelled.load(std::memory_order_relaxed);
  }
};

inline bool polling_thread(const Interrupt& interrupt) {
#ifdef _OPENMP
  return omp_get_thread_num() == 0 && interrupt.poll != nullptr;
#else
  return interrupt.poll != nullptr;
#endif
}

// `order` (batch x n, or nullptr for the identity) says which centre each packed slot
// holds; `rows` (batch x n x d, with `order`) are the centres already in that order.
// Returns false when cancelled: the calling thread polls between chunks of ~2^22 values,
// so that Ctrl-C reaches a call with millions of centres before its first block.
template <class T>
bool pack_centres(const Problem<T>& p, const Layout<T>& lay, const index_t* order, const T* rows, int threads,
                  PackedCentres<T>& out, CancelPoint& cancel) {
  constexpr index_t G = Layout<T>::G;
  const index_t d = lay.d, groups = lay.groups;
  const double scale = exponent_scale(p.beta);
  for (index_t b = 0; b < p.batch; ++b) {
    if (p.weights != nullptr) {
      const T* w = p.weights + b * p.n;
      out.log_max_weight[b] = std::log(static_cast<double>(*std::max_element(w, w + p.n)));
    }
    out.out_shift[b] = out.log_max_weight[b] + (p.shift != nullptr ? p.shift[b] : 0.0);
  }
  const index_t items = p.batch * groups;
  const index_t chunk = std::max<index_t>(1, (index_t{1} << 22) / (d * G));
  for (index_t first = 0; first < items; first += chunk) {
    if (cancel(true)) return false;
    const index_t last = std::min(items, first + chunk);
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1 && last - first > 1)
#endif
    for (index_t item = first; item < last; ++item) {
      const index_t b = item / groups, g = item % groups;
      T* dst = out.coords.ptr + item * d * G;
      for (index_t j = 0; j < G; ++j) {
        const index_t slot = g * G + j;
        const index_t c = slot < p.n ? (order ? order[b * p.n + slot] : slot) : -1;
        const T* row = rows != nullptr && c >= 0 ? rows + (b * p.n + slot) * d : nullptr;
        for (index_t k = 0; k < d; ++k) dst[k * G + j] = c < 0 ? T(0) : row ? row[k] : p.centers(b, c, k);
        if (p.weights != nullptr) {
          const double w = c >= 0 ? static_cast<double>(p.weights[b * p.n + c]) : 0.0;
          out.offsets.ptr[item * G + j] = static_cast<T>(weight_offset(w, out.log_max_weight[b], scale));
        }
        if (out.block_max_norm != nullptr) {  // norms wanted
          double norm = 0.0;
          for (index_t k = 0; k < d; ++k) norm += static_cast<double>(dst[k * G + j]) * dst[k * G + j];
          out.norms.ptr[item * G + j] = c >= 0 ? static_cast<T>(norm) : std::numeric_limits<T>::infinity();
        }
      }
    }
  }
  if (out.block_max_norm != nullptr) {  // norms wanted
    for (index_t b = 0; b < p.batch; ++b) {
      for (index_t c = 0; c < p.n; ++c) {
        double& block_max = out.block_max_norm[b * lay.blocks + c / lay.block_width];
        block_max = std::max(block_max, static_cast<double>(out.norms.ptr[b * groups * G + c]));
      }
    }
  }
  return true;
}

// ---------------------------------------------------------------------------------------
// Phase 2: one task (up to kMaxQueriesPerTask queries) against blocks of centres
// ---------------------------------------------------------------------------------------

// Per-thread buffers of a task, and what it did.
template <class T>
struct TaskScratch {
  AlignedArray<T> qbuf, dist, smin;
  std::unique_ptr<LseState[]> state;
  std::unique_ptr<double[]> qnorm, nearest_bound;
  std::unique_ptr<bool[]> skip;
  KernelStats stats;
  TaskScratch(index_t per_task, const Layout<T>& lay, bool with_screen)
      : qbuf(per_task * lay.d), dist(per_task * lay.block_width),
        smin(with_screen ? per_task * Simd<T>::lanes : 0), state(new LseState[per_task]),
        qnorm(new double[per_task]), nearest_bound(new double[per_task]),
        skip(new bool[per_task / Simd<T>::tile_q]) {}
};

// Copy query rows (of batch element b, row index row(a)) into the task's buffer, zero
// rows up to a whole register tile, and reset their states.
template <class T, class RowOf>
void load_queries(const Problem<T>& p, index_t b, index_t rows, index_t rows_padded, RowOf row_of,
                  TaskScratch<T>& s) {
  const index_t d = p.d;
  for (index_t a = 0; a < rows_padded; ++a) {
    s.state[a] = lse_empty();
    s.nearest_bound[a] = std::numeric_limits<double>::infinity();
    T* row = s.qbuf.ptr + a * d;
    if (a < rows) {
      const index_t i = row_of(a);
      for (index_t k = 0; k < d; ++k) row[k] = p.queries(b, i, k);
    } else {
      std::fill(row, row + d, T(0));
    }
  }
}

// Distances of the task's unskipped register tiles to the groups g0..g1 of one block,
// folded into their states.  Returns how many tiles found the block negligible.
template <class T>
index_t compute_block(const Problem<T>& p, const Layout<T>& lay, const PackedCentres<T>& packed,
                      index_t b, index_t g0, index_t g1, index_t rows, index_t tiles, TaskScratch<T>& s) {
  constexpr int kTileQ = Simd<T>::tile_q;
  constexpr index_t G = Layout<T>::G;
  const double scale = exponent_scale(p.beta);
  const T neg_scale = static_cast<T>(-scale);
  const index_t width = (g1 - g0) * G, ld = lay.block_width;
  const index_t valid = std::min(width, p.n - g0 * G);
  for (index_t g = g0; g < g1; ++g)
    for (index_t t = 0; t < tiles; ++t)
      if (!s.skip[t])
        distance_tile(s.qbuf.ptr + t * kTileQ * p.d, packed.group(b, g, lay), p.d,
                      s.dist.ptr + t * kTileQ * ld + (g - g0) * G, ld);
  index_t negligible_tiles = 0;
  for (index_t t = 0; t < tiles; ++t) {
    bool negligible = true;
    if (!s.skip[t]) {
      for (index_t a = t * kTileQ; a < std::min(rows, (t + 1) * kTileQ); ++a) {
        T* drow = s.dist.ptr + a * ld;
        if (p.weights != nullptr) {
          add_offsets(drow, packed.group_offsets(b, g0, lay), width);  // +inf past n
        } else {
          std::fill(drow + valid, drow + width, std::numeric_limits<T>::infinity());
        }
        negligible &= fold_block(drow, width, s.state[a], s.nearest_bound[a], neg_scale, scale);
      }
    }
    negligible_tiles += negligible;
  }
  return negligible_tiles;
}

inline void add_stats(KernelStats& into, const KernelStats& s) {
  into.tile_blocks += s.tile_blocks;
  into.screened += s.screened;
  into.skipped += s.skipped;
  into.pruned += s.pruned;
  into.block_visits += s.block_visits;
  into.blocks_computed += s.blocks_computed;
}

// Queries per task: enough tasks to balance the threads, few enough to reuse the tiles.
template <class T>
index_t queries_per_task(const Problem<T>& p, int threads) {
  constexpr int kTileQ = Simd<T>::tile_q;
  const index_t want_tasks = 4 * static_cast<index_t>(threads);
  index_t per_task = (p.batch * p.m + want_tasks - 1) / want_tasks;
  per_task = std::min<index_t>(std::max<index_t>(per_task, kTileQ), kMaxQueriesPerTask);
  per_task = std::min<index_t>(per_task, p.m);
  return (per_task + kTileQ - 1) / kTileQ * kTileQ;
}

// ---------------------------------------------------------------------------------------
// Phase 3a: the brute path, every block of every task (with the GEMM-form screen)
// ---------------------------------------------------------------------------------------

// The brute path's start of a task: the queries' squared norms (for the screen) and, per
// query, an upper bound on its nearest distance.  Blocks far beyond the nearest centre are
// skipped, but a query meets its nearest centre only somewhere along the way.  One centre
// that is likely near (the one a Monte Carlo query was drawn around: the caller's hint,
// else i n / m) gives an upper bound from the start; the factor covers the float rounding
// of the same distance in the tiles.
template <class T>
void start_brute_task(const Problem<T>& p, const PackedCentres<T>& packed, index_t b, index_t i0, index_t rows,
                      bool may_screen, double screen_factor, TaskScratch<T>& s) {
  const index_t d = p.d;
  const double scale = exponent_scale(p.beta);
  for (index_t a = 0; a < rows; ++a) {
    const T* row = s.qbuf.ptr + a * d;
    if (may_screen) {
      double norm = 0.0;
      for (index_t k = 0; k < d; ++k) norm += static_cast<double>(row[k]) * row[k];
      s.qnorm[a] = norm;
    }
    const index_t i = i0 + a;
    const index_t j = p.near_centre != nullptr
                          ? p.near_centre[i]
                          : std::min(p.n - 1, static_cast<index_t>(static_cast<double>(i) * p.n / p.m));
    double dist_j = 0.0;
    for (index_t k = 0; k < d; ++k) {
      const double diff = static_cast<double>(row[k]) - p.centers(b, j, k);
      dist_j += diff * diff;
    }
    if (p.weights != nullptr)  // the offset of centre j (see add_offsets)
      dist_j += weight_offset(static_cast<double>(p.weights[b * p.n + j]), packed.log_max_weight[b], scale);
    s.nearest_bound[a] = dist_j * (1.0 + screen_factor);
  }
}

// The GEMM-form screen of one block (groups g0..g1) for the task's tiles: s.skip[t] is
// set for each tile whose every query provably finds the block negligible.
template <class T>
void screen_block(const Problem<T>& p, const Layout<T>& lay, const PackedCentres<T>& packed, index_t b,
                  index_t g0, index_t g1, index_t rows, index_t tiles, double screen_factor, TaskScratch<T>& s) {
  constexpr int L = Simd<T>::lanes, kTileQ = Simd<T>::tile_q;
  constexpr index_t G = Layout<T>::G;
  const index_t d = p.d, rows_padded = tiles * kTileQ;
  const double scale = exponent_scale(p.beta);
  s.stats.screened += tiles;
  std::fill(s.smin.ptr, s.smin.ptr + rows_padded * L, std::numeric_limits<T>::infinity());
  for (index_t g = g0; g < g1; ++g) {
    const T* group_norms = packed.norms.ptr + (b * lay.groups + g) * G;
    for (index_t a0 = 0; a0 < rows_padded; a0 += kTileQ)
      screen_tile(s.qbuf.ptr + a0 * d, packed.group(b, g, lay), group_norms, d, s.smin.ptr + a0 * L);
  }
  const double block_norm = packed.block_max_norm[b * lay.blocks + g0 / lay.block_groups];
  for (index_t t = 0; t < tiles; ++t) {
    bool negligible = true;
    for (index_t a = t * kTileQ; a < std::min(rows, (t + 1) * kTileQ) && negligible; ++a) {
      T lane_min = s.smin.ptr[a * L];
      for (int l = 1; l < L; ++l) lane_min = std::min(lane_min, s.smin.ptr[a * L + l]);
      // A lower bound on every squared distance of query a to the block.
      const double lower =
          s.qnorm[a] + static_cast<double>(lane_min) - screen_factor * (s.qnorm[a] + block_norm);
      negligible = (lower - std::min(s.state[a].dmin, s.nearest_bound[a])) * scale > kNegligible<T>;
    }
    s.skip[t] = negligible;
    s.stats.skipped += negligible;
  }
}

// The brute path's end when the centres were cut into segments: each query's partial
// states (`partial`, [query task][segment][query]) merged into its result.
template <class T>
void merge_segments(const Problem<T>& p, const PackedCentres<T>& packed, const LseState* partial, index_t per_task,
                    index_t segments) {
  const double scale = exponent_scale(p.beta);
  const index_t tasks_per_batch = (p.m + per_task - 1) / per_task;
  for (index_t query_task = 0; query_task < p.batch * tasks_per_batch; ++query_task) {
    const index_t b = query_task / tasks_per_batch;
    const index_t i0 = (query_task % tasks_per_batch) * per_task;
    const index_t rows = std::min(per_task, p.m - i0);
    const LseState* parts = partial + query_task * segments * per_task;
    for (index_t a = 0; a < rows; ++a) {
      LseState merged = parts[a];
      for (index_t segment = 1; segment < segments; ++segment) lse_merge(merged, parts[segment * per_task + a], scale);
      p.out[b * p.m + i0 + a] = static_cast<T>(lse_result(merged, scale) + packed.out_shift[b]);
    }
  }
}

// Every block of every task, with the screen while it pays.
template <class T>
bool run_brute(const Problem<T>& p, const Interrupt& interrupt, int threads, KernelStats& stats) {
  constexpr int kTileQ = Simd<T>::tile_q;
  const Layout<T> lay(p.n, p.d);
  const index_t d = p.d;
  const double scale = exponent_scale(p.beta);
  const double screen_factor = screen_error_factor<T>(d);
  const bool may_screen =
      screen_factor < 0.02 && (p.screen == Screen::always ||
                               (p.screen == Screen::automatic && d >= kScreenMinDim));
  CancelPoint cancel(interrupt);
  PackedCentres<T> packed(p, lay, may_screen);
  if (!pack_centres<T>(p, lay, nullptr, nullptr, threads, packed, cancel)) return false;

  const index_t per_task = queries_per_task(p, threads);
  const index_t tasks_per_batch = (p.m + per_task - 1) / per_task;
  const index_t query_tasks = p.batch * tasks_per_batch;
  // Too few query blocks to occupy the threads (a few queries against many centres):
  // split the centres into segments as well and merge the partial states at the end.
  const index_t segments = std::min(
      lay.blocks, std::max<index_t>(1, 4 * static_cast<index_t>(threads) / std::max<index_t>(query_tasks, 1)));
  const index_t tasks = query_tasks * segments;
  std::unique_ptr<LseState[]> partial(segments > 1 ? new LseState[tasks * per_task] : nullptr);

#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
  {
    const bool polls = polling_thread(interrupt);
    TaskScratch<T> s(per_task, lay, may_screen);

#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t task = 0; task < tasks; ++task) {
      if (cancel(false)) continue;
      const index_t query_task = task / segments, segment = task % segments;
      const index_t b = query_task / tasks_per_batch;
      const index_t i0 = (query_task % tasks_per_batch) * per_task;
      const index_t first_group = segment * lay.blocks / segments * lay.block_groups;
      const index_t end_group =
          std::min(lay.groups, (segment + 1) * lay.blocks / segments * lay.block_groups);
      const index_t rows = std::min(per_task, p.m - i0);
      const index_t rows_padded = (rows + kTileQ - 1) / kTileQ * kTileQ;
      const index_t tiles = rows_padded / kTileQ;
      load_queries(p, b, rows, rows_padded, [i0](index_t a) { return i0 + a; }, s);
      start_brute_task(p, packed, b, i0, rows, may_screen, screen_factor, s);
      // Moving average of the fraction of tiles a block let us skip.  The first block
      // runs in full; if it was negligible, the screen starts with the second.
      double skippable = kScreenWorthwhile;

      for (index_t g0 = first_group; g0 < end_group; g0 += lay.block_groups) {
        if (cancel(polls)) break;
        const index_t g1 = std::min(end_group, g0 + lay.block_groups);
        const bool screen =
            may_screen && (p.screen == Screen::always || skippable > kScreenWorthwhile);
        std::fill(s.skip.get(), s.skip.get() + tiles, false);
        s.stats.tile_blocks += tiles;
        if (screen) screen_block(p, lay, packed, b, g0, g1, rows, tiles, screen_factor, s);
        const index_t negligible_tiles = compute_block(p, lay, packed, b, g0, g1, rows, tiles, s);
        // While screening, count what the screen proved: a loose bound stops it.
        index_t proved = 0;
        for (index_t t = 0; t < tiles; ++t) proved += s.skip[t];
        skippable = kScreenMemory * skippable +
                    (1.0 - kScreenMemory) * static_cast<double>(screen ? proved : negligible_tiles) / tiles;
      }
      if (segments > 1) {
        std::copy(s.state.get(), s.state.get() + rows, partial.get() + task * per_task);
      } else {
        T* out = p.out + b * p.m + i0;
        for (index_t a = 0; a < rows; ++a)
          out[a] = static_cast<T>(lse_result(s.state[a], scale) + packed.out_shift[b]);
      }
    }
#ifdef _OPENMP
#pragma omp critical
#endif
    add_stats(stats, s.stats);
  }
  if (cancel.cancelled.load()) return false;
  if (segments > 1) merge_segments(p, packed, partial.get(), per_task, segments);
  return true;
}

// ---------------------------------------------------------------------------------------
// Phase 3b: the pruned path
// ---------------------------------------------------------------------------------------
//
// Centres are packed in k-d order (spatial_order.hpp), so that every block of the packed
// layout is a leaf of a k-d tree; each node of the tree keeps its bounding box and its
// mass M = (sum of its weights) / w_max.  Queries are taken in k-d order too, in tasks of
// kPrunedTask queries that share one neighbourhood (and one bounding box).  For a query
// q, every term of node N is at most exp(-gap(q, N)^2 scale), gap being the distance from
// q to N's box, so N adds at most
//     bound(q, N) = M_N exp(-gap(q, N)^2 scale).
// A task walks the tree depth first, the nearer child first, and skips a node when,
// for each of its queries, its bound is at most eps (sum so far) M_N / M, M the mass of
// the whole mixture (see TaskBudget): the skipped nodes are disjoint, so the result
// differs from the full sum by at most a relative eps, below the rounding of T.  The
// first leaf reached (the nearest) is always computed, so that every query has a sum to
// compare with.

template <class T>
constexpr double kLogPruneTolerance = -25.0 * 0.69314718055994531;  // eps = 2^-25 of a float sum
template <>
constexpr double kLogPruneTolerance<double> = -54.0 * 0.69314718055994531;  // 2^-54 of a double

// Queries per pruned task: small enough that the task's box stays within one cluster of
// a layer's samples (the R samples of one input), large enough for whole register tiles.
constexpr index_t kPrunedTask = 16;

inline double log_add(double a, double b) {  // ln(e^a + e^b), -inf safe
  if (a < b) std::swap(a, b);
  // Below e^-40 the smaller adds nothing to a double; skipping exp also avoids libm's
  // slow underflow path, which otherwise dominates the pruning's bookkeeping.
  if (!(b - a > -40.0)) return a;
  return a + std::log1p(std::exp(b - a));
}

// Lower bound on the squared distance between two boxes ([lo, hi] per coordinate; a
// point is a box with lo = hi).  The factor covers the rounding of the double arithmetic.
inline double box_gap2(const double* lo_a, const double* hi_a, const double* lo_b, const double* hi_b,
                       index_t d) {
  double gap2 = 0.0;
  for (index_t k = 0; k < d; ++k) {
    const double gap = std::max({0.0, lo_b[k] - hi_a[k], lo_a[k] - hi_b[k]});
    gap2 += gap * gap;
  }
  return gap2 * (1.0 - 1e-12);
}

// The k-d tree over the centre blocks of one batch element, nodes in depth-first order
// (node 0 the root).  Node ranges follow kd_order's splits, in blocks.
struct BlockTree {
  struct Node {
    index_t first_block, end_block, left, right;  // children -1 for a leaf
    double log_mass;                              // -inf when every weight is zero
  };
  std::vector<Node> nodes;
  std::vector<double> box;  // per node: d lows, then d highs
};

// Node `first_block..end_block` and its subtree; w_max is the largest weight of batch
// element b (1 unweighted).
template <class T>
index_t add_node(BlockTree& tree, const Problem<T>& p, const Layout<T>& lay, index_t b, const index_t* order,
                 const T* rows, double w_max, index_t first_block, index_t end_block) {
  const index_t id = static_cast<index_t>(tree.nodes.size()), d = p.d;
  tree.nodes.push_back({first_block, end_block, -1, -1, 0.0});
  tree.box.resize((id + 1) * 2 * d);
  const index_t count = end_block - first_block;
  if (count > 1) {
    const index_t mid = first_block + (count + 1) / 2;  // kd_order's split, in blocks
    const index_t left = add_node(tree, p, lay, b, order, rows, w_max, first_block, mid);
    const index_t right = add_node(tree, p, lay, b, order, rows, w_max, mid, end_block);
    tree.nodes[id].left = left;
    tree.nodes[id].right = right;
    tree.nodes[id].log_mass = log_add(tree.nodes[left].log_mass, tree.nodes[right].log_mass);
    for (index_t k = 0; k < d; ++k) {
      tree.box[id * 2 * d + k] = std::min(tree.box[left * 2 * d + k], tree.box[right * 2 * d + k]);
      tree.box[id * 2 * d + d + k] = std::max(tree.box[left * 2 * d + d + k], tree.box[right * 2 * d + d + k]);
    }
    return id;
  }
  // A leaf: one block of rows of the order.
  const index_t lo = first_block * lay.block_width, hi = std::min(p.n, lo + lay.block_width);
  double* box_lo = tree.box.data() + id * 2 * d;
  double* box_hi = box_lo + d;
  std::fill(box_lo, box_lo + d, std::numeric_limits<double>::infinity());
  std::fill(box_hi, box_hi + d, -std::numeric_limits<double>::infinity());
  double mass = 0.0;
  const T* w = p.weights != nullptr ? p.weights + b * p.n : nullptr;
  for (index_t r = lo; r < hi; ++r) {
    const double weight = w != nullptr ? static_cast<double>(w[order[r]]) / w_max : 1.0;
    if (!(weight > 0.0)) continue;  // an absent centre does not widen the box
    mass += weight;
    for (index_t k = 0; k < d; ++k) {
      const double v = static_cast<double>(rows[r * d + k]);
      box_lo[k] = std::min(box_lo[k], v);
      box_hi[k] = std::max(box_hi[k], v);
    }
  }
  tree.nodes[id].log_mass = std::log(mass);
  return id;
}

// The k-d orders of every batch element's centres and queries, the centres in that
// order (row-major), and each batch element's block tree.
template <class T>
struct PruneIndex {
  std::unique_ptr<index_t[]> centre_order, query_order;
  std::unique_ptr<T[]> centre_rows;
  std::vector<BlockTree> trees;
};

template <class T>
PruneIndex<T> build_prune_index(const Problem<T>& p, const Layout<T>& lay, index_t per_task, int threads) {
  PruneIndex<T> index{std::unique_ptr<index_t[]>(new index_t[p.batch * p.n]),
                      std::unique_ptr<index_t[]>(new index_t[p.batch * p.m]),
                      std::unique_ptr<T[]>(new T[p.batch * p.n * p.d]), std::vector<BlockTree>(p.batch)};
  // Many small mixtures: one per thread.  Few large ones: each ordering uses the threads.
  const bool across_batch = p.batch >= threads;
  const int inner_threads = across_batch ? 1 : threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (threads > 1 && across_batch)
#endif
  for (index_t b = 0; b < p.batch; ++b) {
    index_t* order = index.centre_order.get() + b * p.n;
    T* rows = index.centre_rows.get() + b * p.n * p.d;
    if (p.centres_ordered) {  // the caller's order: take the blocks as they are
      for (index_t r = 0; r < p.n; ++r) {
        order[r] = r;
        for (index_t k = 0; k < p.d; ++k) rows[r * p.d + k] = p.centers(b, r, k);
      }
    } else {
      kd_order(p.centers, b, p.n, p.d, lay.block_width, order, rows, inner_threads);
    }
    std::vector<T> query_rows(p.m * p.d);  // only the order is kept
    kd_order(p.queries, b, p.m, p.d, per_task, index.query_order.get() + b * p.m, query_rows.data(),
             inner_threads);
    index.trees[b].nodes.reserve(2 * lay.blocks);
    const T* w = p.weights != nullptr ? p.weights + b * p.n : nullptr;
    const double w_max = w != nullptr ? static_cast<double>(*std::max_element(w, w + p.n)) : 1.0;
    add_node(index.trees[b], p, lay, b, order, rows, w_max, 0, lay.blocks);
  }
  return index;
}

// The pruning test of one task's queries.  Query a may skip node N when N's bound is at
// most eps sum_a M_N / M, with sum_a what the query has accumulated so far and M the
// mass of the whole mixture: the skipped nodes are disjoint, so together they stay
// below eps sum_a whatever their number and order.  The masses cancel, leaving a
// distance test: gap(q_a, N)^2 >= (ln M - ln eps - ln sum_a) / scale =: need_a.  It is
// made first with the task's box against the largest need (one comparison), then query
// by query.  Before the first computed block nothing is skipped.
template <class T>
struct TaskBudget {
  using VD = vdouble;
  static constexpr int L = Simd<double>::lanes;
  index_t d, rows, vectors;
  AlignedArray<double> queries;  // [vector][k][L], transposed; padding lanes copy query 0
  AlignedArray<double> need;     // need_a, squared gaps
  double most_need = std::numeric_limits<double>::infinity();

  TaskBudget(index_t per_task, index_t d_)
      : d(d_), rows(0), vectors(0), queries((per_task + L) * d_), need(per_task + L) {}

  void start(const T* qbuf, index_t rows_) {
    rows = rows_;
    vectors = (rows + L - 1) / L;
    for (index_t v = 0; v < vectors; ++v)
      for (index_t k = 0; k < d; ++k)
        for (int l = 0; l < L; ++l) {
          const index_t a = v * L + l < rows ? v * L + l : 0;
          queries.ptr[(v * d + k) * L + l] = static_cast<double>(qbuf[a * d + k]);
        }
    std::fill(need.ptr, need.ptr + vectors * L, std::numeric_limits<double>::infinity());
    most_need = std::numeric_limits<double>::infinity();
  }

  // After a block was computed: the queries' log-sums so far.
  void update(const double* log_sum, double log_total_mass, double scale) {
    most_need = 0.0;
    for (index_t i = 0; i < vectors * L; ++i) {
      const double log_allowed = kLogPruneTolerance<T> + log_sum[i < rows ? i : 0] - log_total_mass;
      need.ptr[i] = std::max(0.0, -log_allowed / scale);  // +inf while the sum is 0
      most_need = std::max(most_need, need.ptr[i]);
    }
  }

  bool skip_for_all(double task_gap2) const { return task_gap2 >= most_need; }

  // Whether every query may skip the box.  With `may_skip` (a leaf about to be
  // computed), also which queries may: those can leave it out on their own.
  bool skip_each(const double* box_lo, const double* box_hi, bool* may_skip = nullptr) const {
    bool all = true;
    for (index_t v = 0; v < vectors; ++v) {
      VD gap2 = VD{};
      for (index_t k = 0; k < d; ++k) {
        const VD q = load<VD>(queries.ptr + (v * d + k) * L);
        VD gap = splat<VD>(box_lo[k]) - q;
        const VD above = q - splat<VD>(box_hi[k]);
        gap = gap > above ? gap : above;
        gap = gap > VD{} ? gap : VD{};
        gap2 += gap * gap;
      }
      gap2 *= 1.0 - 1e-12;  // rounding of the double arithmetic
      const VD short_of = load<VD>(need.ptr + v * L) - gap2;
      for (int l = 0; l < L; ++l) {
        const bool skips = short_of[l] <= 0.0;
        if (may_skip != nullptr && v * L + l < rows) may_skip[v * L + l] = skips;
        all &= skips;
      }
      if (!all && may_skip == nullptr) return false;
    }
    return all;
  }
};

template <class T>
index_t pruned_task_size(const Problem<T>& p) {
  constexpr int kTileQ = Simd<T>::tile_q;
  return (std::min<index_t>(kPrunedTask, p.m) + kTileQ - 1) / kTileQ * kTileQ;
}

// Whether pruning can pay: the share of (query, leaf) pairs, over a sample of queries,
// whose gap exceeds the least distance at which any leaf can ever be skipped.  That
// distance is sqrt(-ln(eps) / scale) (need_a with the largest possible sum, the total
// mass), so the share overestimates what pruning will skip: dense data (large beta)
// fall back to the brute path, whose larger tasks run faster when every block is needed.
// The same share on a sample of (query, centre) pairs, with every leaf taken as a ball
// around its centre of the radius that holds a leaf's worth of centres (estimated from
// the sample's nearest neighbours when the sample is dense enough to tell): a cheap
// first look that spares dense data the cost of building the index.
template <class T>
double far_pair_share(const Problem<T>& p, index_t leaf) {
  const index_t samples = std::min<index_t>(64, p.batch * p.m), centres = std::min<index_t>(256, p.n);
  const double least_need = -kLogPruneTolerance<T> / exponent_scale(p.beta);
  auto dist2 = [&](index_t b, const StridedView3<T>& x, index_t row, index_t c) {
    double sum = 0.0;
    for (index_t k = 0; k < p.d; ++k) {
      const double diff = static_cast<double>(x(b, row, k)) - static_cast<double>(p.centers(b, c, k));
      sum += diff * diff;
    }
    return sum;
  };
  double leaf_radius = 0.0;
  const index_t neighbours = (leaf * centres + p.n - 1) / p.n;  // a leaf's worth, among the sample
  if (neighbours < centres / 2) {
    std::vector<double> radii, row(centres);
    for (index_t i = 0; i < centres; i += 8) {
      for (index_t j = 0; j < centres; ++j) row[j] = dist2(0, p.centers, i * p.n / centres, j * p.n / centres);
      std::nth_element(row.begin(), row.begin() + neighbours, row.end());
      radii.push_back(std::sqrt(row[neighbours]));
    }
    std::nth_element(radii.begin(), radii.begin() + radii.size() / 2, radii.end());
    leaf_radius = radii[radii.size() / 2];
  }
  const double far = std::sqrt(least_need) + 2.0 * leaf_radius;
  index_t count = 0;
  for (index_t i = 0; i < samples; ++i) {
    const index_t flat = i * (p.batch * p.m) / samples, b = flat / p.m, row = flat % p.m;
    for (index_t j = 0; j < centres; ++j) count += dist2(b, p.queries, row, j * p.n / centres) > far * far;
  }
  return static_cast<double>(count) / static_cast<double>(samples * centres);
}

template <class T>
double prunable_share(const Problem<T>& p, const PruneIndex<T>& index) {
  const index_t d = p.d, samples = std::min<index_t>(64, p.batch * p.m);
  const double least_need = -kLogPruneTolerance<T> / exponent_scale(p.beta);
  std::vector<double> point(d);
  index_t far = 0, pairs = 0;
  for (index_t i = 0; i < samples; ++i) {
    const index_t flat = i * (p.batch * p.m) / samples, b = flat / p.m, row = flat % p.m;
    for (index_t k = 0; k < d; ++k) point[k] = static_cast<double>(p.queries(b, row, k));
    const BlockTree& tree = index.trees[b];
    for (index_t node = 0; node < static_cast<index_t>(tree.nodes.size()); ++node) {
      if (tree.nodes[node].left >= 0) continue;  // leaves only
      const double* box = tree.box.data() + node * 2 * d;
      far += box_gap2(point.data(), point.data(), box, box + d, d) > least_need;
      ++pairs;
    }
  }
  return static_cast<double>(far) / static_cast<double>(std::max<index_t>(pairs, 1));
}

template <class T>
bool run_pruned(const Problem<T>& p, const PruneIndex<T>& index, const Interrupt& interrupt, int threads,
                KernelStats& stats) {
  constexpr int kTileQ = Simd<T>::tile_q;
  const Layout<T> lay(p.n, p.d);
  const index_t d = p.d;
  const double scale = exponent_scale(p.beta);
  const index_t per_task = pruned_task_size(p);
  CancelPoint cancel(interrupt);
  PackedCentres<T> packed(p, lay, false);
  if (!pack_centres(p, lay, index.centre_order.get(), index.centre_rows.get(), threads, packed, cancel))
    return false;

  const index_t tasks_per_batch = (p.m + per_task - 1) / per_task;
  const index_t tasks = p.batch * tasks_per_batch;

#ifdef _OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
  {
    const bool polls = polling_thread(interrupt);
    TaskScratch<T> s(per_task, lay, false);
    TaskBudget<T> budget(per_task, d);
    std::vector<double> task_box(2 * d);
    std::unique_ptr<double[]> log_sum(new double[per_task]);
    std::unique_ptr<bool[]> may_skip(new bool[per_task]());
    std::vector<std::pair<index_t, double>> stack;  // (node, its squared gap to the task)

#ifdef _OPENMP
#pragma omp for schedule(dynamic, 1)
#endif
    for (index_t task = 0; task < tasks; ++task) {
      if (cancel(polls)) continue;
      const index_t b = task / tasks_per_batch;
      const index_t r0 = (task % tasks_per_batch) * per_task;
      const index_t rows = std::min(per_task, p.m - r0);
      const index_t rows_padded = (rows + kTileQ - 1) / kTileQ * kTileQ;
      const index_t tiles = rows_padded / kTileQ;
      const index_t* query_order = index.query_order.get() + b * p.m + r0;
      load_queries(p, b, rows, rows_padded, [query_order](index_t a) { return query_order[a]; }, s);
      std::fill(s.skip.get(), s.skip.get() + tiles, false);
      std::fill(task_box.begin(), task_box.begin() + d, std::numeric_limits<double>::infinity());
      std::fill(task_box.begin() + d, task_box.end(), -std::numeric_limits<double>::infinity());
      for (index_t a = 0; a < rows; ++a) {
        for (index_t k = 0; k < d; ++k) {
          const double v = static_cast<double>(s.qbuf.ptr[a * d + k]);
          task_box[k] = std::min(task_box[k], v);
          task_box[d + k] = std::max(task_box[d + k], v);
        }
      }
      budget.start(s.qbuf.ptr, rows);
      const BlockTree& tree = index.trees[b];
      auto gap2_to = [&](index_t node) {
        const double* box = tree.box.data() + node * 2 * d;
        return box_gap2(task_box.data(), task_box.data() + d, box, box + d, d);
      };

      index_t computed = 0, visited = 0;
      stack.assign(1, {0, gap2_to(0)});
      while (!stack.empty()) {
        if (++visited % 64 == 0 && cancel(polls)) break;
        const auto [node_id, gap2] = stack.back();
        stack.pop_back();
        const BlockTree::Node& node = tree.nodes[node_id];
        if (node.log_mass == -std::numeric_limits<double>::infinity()) continue;  // all weights zero
        const double* box = tree.box.data() + node_id * 2 * d;
        const bool leaf = node.left < 0;
        if (budget.skip_for_all(gap2) || budget.skip_each(box, box + d, leaf ? may_skip.get() : nullptr))
          continue;
        if (!leaf) {  // the nearer child on top of the stack
          const double gap2_left = gap2_to(node.left), gap2_right = gap2_to(node.right);
          if (gap2_left <= gap2_right) {
            stack.emplace_back(node.right, gap2_right);
            stack.emplace_back(node.left, gap2_left);
          } else {
            stack.emplace_back(node.left, gap2_left);
            stack.emplace_back(node.right, gap2_right);
          }
          continue;
        }
        // A register tile whose queries may all leave this leaf out does not compute it.
        for (index_t t = 0; t < tiles; ++t)
          s.skip[t] = std::all_of(may_skip.get() + t * kTileQ, may_skip.get() + std::min(rows, (t + 1) * kTileQ),
                                  [](bool skips) { return skips; });
        const index_t g0 = node.first_block * lay.block_groups;
        compute_block(p, lay, packed, b, g0, std::min(lay.groups, g0 + lay.block_groups), rows, tiles, s);
        std::fill(s.skip.get(), s.skip.get() + tiles, false);
        for (index_t a = 0; a < rows; ++a) log_sum[a] = lse_result(s.state[a], scale);
        budget.update(log_sum.get(), tree.nodes[0].log_mass, scale);
        ++computed;
      }
      s.stats.block_visits += lay.blocks;
      s.stats.blocks_computed += computed;
      for (index_t a = 0; a < rows; ++a)
        p.out[b * p.m + query_order[a]] =
            static_cast<T>(lse_result(s.state[a], scale) + packed.out_shift[b]);
    }
#ifdef _OPENMP
#pragma omp critical
#endif
    add_stats(stats, s.stats);
  }
  stats.pruned += p.batch;
  return !cancel.cancelled.load();
}

// ---------------------------------------------------------------------------------------
// The entry point: choose the path
// ---------------------------------------------------------------------------------------

// Pruning pays once there are enough queries to share each ordering and enough centre
// blocks to skip; below that the brute path is already fast.
constexpr index_t kPruneMinCentres = 2048;
constexpr index_t kPruneMinQueries = 256;
// ... and when most leaves are far enough from the queries to be skippable at all.
constexpr double kPruneMinShare = 0.7;

template <class T>
bool run(const Problem<T>& p, const Interrupt& interrupt) {
#ifdef _OPENMP
  // Waking a thread team costs microseconds on a quiet machine and a scheduler tick
  // (~milliseconds) on a busy one: small problems (under ~1 ms of work) run serially.
  const bool small = static_cast<double>(p.batch) * p.m * p.n * (p.d + 8) < 1e7;
  const int threads = small ? 1 : team_size(p.num_threads);
#else
  const int threads = 1;
#endif
  KernelStats stats;
  bool finished;
  const Layout<T> lay(p.n, p.d);
  if (p.prune == Prune::always ||
      (p.prune == Prune::automatic && p.n >= kPruneMinCentres && p.m >= kPruneMinQueries &&
       far_pair_share(p, lay.block_width) >= kPruneMinShare)) {
    const PruneIndex<T> index = build_prune_index(p, lay, pruned_task_size(p), threads);
    if (p.prune == Prune::always || prunable_share(p, index) >= kPruneMinShare) {
      finished = run_pruned(p, index, interrupt, threads, stats);
    } else {
      finished = run_brute(p, interrupt, threads, stats);
    }
  } else {
    finished = run_brute(p, interrupt, threads, stats);
  }
  if (finished && p.stats != nullptr) *p.stats = stats;
  return finished;
}

#include "cpu/lse_backward.hpp"

}  // namespace

template <class T>
bool log_density(const Problem<T>& problem, const Interrupt& interrupt) {
  return run(problem, interrupt);
}

template <class T>
bool log_density_backward(const Problem<T>& problem, const Gradients<T>& gradients, const Interrupt& interrupt) {
  return run_backward(problem, gradients, interrupt);
}
template bool log_density_backward<float>(const Problem<float>&, const Gradients<float>&, const Interrupt&);
template bool log_density_backward<double>(const Problem<double>&, const Gradients<double>&, const Interrupt&);
template bool log_density<float>(const Problem<float>&, const Interrupt&);
template bool log_density<double>(const Problem<double>&, const Interrupt&);

template <class T>
void spatial_order(const StridedView3<T>& x, index_t n, index_t d, index_t* order) {
  std::unique_ptr<T[]> rows(new T[n * d]);
  kd_order(x, 0, n, d, Layout<T>(n, d).block_width, order, rows.get(), team_size(0));
}
template void spatial_order<float>(const StridedView3<float>&, index_t, index_t, index_t*);
template void spatial_order<double>(const StridedView3<double>&, index_t, index_t, index_t*);

}  // namespace infoflow::cpu::INFOFLOW_ISA
