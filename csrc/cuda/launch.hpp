// Host interface of the CUDA kernels: plain C++ so that the pybind11 module is compiled
// by the host compiler and only lse_kernel.cu goes through nvcc.
#pragma once

#include <cstdint>
#include <string>

#include "infoflow/lse_math.hpp"

namespace infoflow::cuda {

// Device pointers with element strides, as read from a tensor on the caller's stream.
struct DeviceProblem {
  const void* queries;
  index_t query_stride[3];  // (batch, m, d)
  const void* centers;
  index_t center_stride[3];  // (batch, n, d)
  void* out;                 // (batch, m), contiguous
  index_t batch, m, n, d;
  double beta;
  std::uintptr_t stream;  // cudaStream_t of the caller (0: legacy default stream)
  int device;             // the device that owns the pointers
};

// Enqueue the kernel on problem.stream; throws std::runtime_error on a CUDA error.
void log_density_f32(const DeviceProblem& problem);
void log_density_f64(const DeviceProblem& problem);

// The number of usable devices and, when CUDA reports an error instead (no driver, a
// driver older than the runtime, no device), that error's name and message.
struct DeviceCount {
  int count;
  std::string error;  // empty on success
};
DeviceCount device_count();
int runtime_version();  // e.g. 13000
int driver_version();   // 0 when there is no driver
std::string device_name(int device);

}  // namespace infoflow::cuda
