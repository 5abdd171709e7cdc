// CUDA kernel of the batched Gaussian log-sum-exp (contract in lse_math.hpp).
//
// One thread per query.  A thread block walks the centres in tiles of kTileC; each
// tile is staged through shared memory kTileD dimensions at a time, so any d works
// without a d-sized buffer.  Squared distances are direct differences (accurate at
// small beta); after each centre tile the thread folds its kTileC distances into its
// online log-sum-exp state with one rescale per tile.
#include <cuda_runtime.h>

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <string>

#include "cuda/launch.hpp"

namespace infoflow::cuda {
namespace {

constexpr int kBlock = 128;
constexpr int kTileC = 32;
constexpr int kTileD = 16;
constexpr index_t kMaxGridY = 65535;

__device__ __forceinline__ float exp_t(float x) { return expf(x); }
__device__ __forceinline__ double exp_t(double x) { return exp(x); }

template <typename T>
__global__ void __launch_bounds__(kBlock)
    log_density_kernel(const T* __restrict__ queries, const T* __restrict__ centers,
                       T* __restrict__ out, DeviceProblem p, index_t batch0) {
  __shared__ T tile[kTileC][kTileD];
  const index_t b = batch0 + blockIdx.y;
  const index_t i = static_cast<index_t>(blockIdx.x) * kBlock + threadIdx.x;
  const bool active = i < p.m;
  const T* qrow = queries + b * p.query_stride[0] + (active ? i : 0) * p.query_stride[1];
  const T* cbatch = centers + b * p.center_stride[0];
  const double scale = exponent_scale(p.beta);
  const T neg_scale = static_cast<T>(-scale);
  const T inf = std::numeric_limits<T>::infinity();
  LseState state = lse_empty();

  for (index_t c0 = 0; c0 < p.n; c0 += kTileC) {
    T acc[kTileC];
#pragma unroll
    for (int j = 0; j < kTileC; ++j) acc[j] = T(0);
    for (index_t k0 = 0; k0 < p.d; k0 += kTileD) {
      __syncthreads();  // the previous tile is no longer read
      for (int e = threadIdx.x; e < kTileC * kTileD; e += kBlock) {
        const int j = e / kTileD, kk = e % kTileD;
        const index_t c = c0 + j, k = k0 + kk;
        tile[j][kk] = (c < p.n && k < p.d)
                          ? cbatch[c * p.center_stride[1] + k * p.center_stride[2]]
                          : T(0);
      }
      __syncthreads();
      T qk[kTileD];
#pragma unroll
      for (int kk = 0; kk < kTileD; ++kk)
        qk[kk] = (k0 + kk < p.d) ? qrow[(k0 + kk) * p.query_stride[2]] : T(0);
#pragma unroll
      for (int j = 0; j < kTileC; ++j) {
#pragma unroll
        for (int kk = 0; kk < kTileD; ++kk) {
          const T diff = qk[kk] - tile[j][kk];  // same address for all threads: broadcast
          acc[j] = fma(diff, diff, acc[j]);
        }
      }
    }
    const int valid = static_cast<int>(min(static_cast<index_t>(kTileC), p.n - c0));
    T tile_min = inf;
#pragma unroll
    for (int j = 0; j < kTileC; ++j)
      if (j < valid) tile_min = min(tile_min, acc[j]);
    if (!(tile_min < inf)) continue;
    const T new_min = min(static_cast<T>(state.dmin), tile_min);
    T tile_sum = T(0);
#pragma unroll
    for (int j = 0; j < kTileC; ++j)
      if (j < valid) tile_sum += exp_t((acc[j] - new_min) * neg_scale);
    lse_fold(state, static_cast<double>(new_min), static_cast<double>(tile_sum), scale);
  }
  if (active) out[b * p.m + i] = static_cast<T>(lse_result(state, scale));
}

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("infoflow CUDA error in ") + what + ": " +
                             cudaGetErrorName(status) + ": " + cudaGetErrorString(status));
}

template <typename T>
void launch(const DeviceProblem& p) {
  if (p.batch * p.m == 0) return;
  check(cudaSetDevice(p.device), "cudaSetDevice");
  auto stream = reinterpret_cast<cudaStream_t>(p.stream);
  const index_t blocks_x = (p.m + kBlock - 1) / kBlock;
  if (blocks_x > std::numeric_limits<int>::max())
    throw std::invalid_argument("queries: too many rows for one launch");
  for (index_t batch0 = 0; batch0 < p.batch; batch0 += kMaxGridY) {
    const dim3 grid(static_cast<unsigned>(blocks_x),
                    static_cast<unsigned>(std::min(kMaxGridY, p.batch - batch0)));
    log_density_kernel<T><<<grid, kBlock, 0, stream>>>(
        static_cast<const T*>(p.queries), static_cast<const T*>(p.centers),
        static_cast<T*>(p.out), p, batch0);
    check(cudaGetLastError(), "log_density kernel launch");
  }
}

}  // namespace

void log_density_f32(const DeviceProblem& p) { launch<float>(p); }
void log_density_f64(const DeviceProblem& p) { launch<double>(p); }

DeviceCount device_count() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error, so that later calls start afresh
    return {0, std::string(cudaGetErrorName(status)) + ": " + cudaGetErrorString(status)};
  }
  return {count, ""};
}

int runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return v;
}

int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) return 0;
  return v;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  return prop.name;
}

}  // namespace infoflow::cuda
