// pybind11 bindings of the CUDA kernels.  Tensors arrive as raw device pointers with
// shapes and element strides (no compile-time dependency on PyTorch); the Python side
// validates them and passes the caller's current stream.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <string>

#include "cuda/launch.hpp"

namespace py = pybind11;
using infoflow::index_t;

namespace {

void log_density(const std::string& dtype, std::uintptr_t queries,
                 std::array<index_t, 3> query_shape, std::array<index_t, 3> query_stride,
                 std::uintptr_t centers, std::array<index_t, 3> center_shape,
                 std::array<index_t, 3> center_stride, std::uintptr_t out, double beta,
                 std::uintptr_t stream, int device) {
  if (center_shape[0] != query_shape[0] || center_shape[2] != query_shape[2])
    throw std::invalid_argument("centers: batch size and dimension must match queries");
  if (center_shape[1] < 1 || query_shape[2] < 1)
    throw std::invalid_argument("centers: need n >= 1 and d >= 1");
  infoflow::cuda::DeviceProblem p{};
  p.queries = reinterpret_cast<const void*>(queries);
  p.centers = reinterpret_cast<const void*>(centers);
  p.out = reinterpret_cast<void*>(out);
  for (int a = 0; a < 3; ++a) {
    p.query_stride[a] = query_stride[a];
    p.center_stride[a] = center_stride[a];
  }
  p.batch = query_shape[0];
  p.m = query_shape[1];
  p.n = center_shape[1];
  p.d = query_shape[2];
  p.beta = beta;
  p.stream = stream;
  p.device = device;
  py::gil_scoped_release release;  // the launch is asynchronous, but cudaSetDevice may block
  if (dtype == "float32") {
    infoflow::cuda::log_density_f32(p);
  } else if (dtype == "float64") {
    infoflow::cuda::log_density_f64(p);
  } else {
    throw py::type_error("dtype: expected 'float32' or 'float64', got '" + dtype + "'");
  }
}

py::dict build_info() {
  py::dict info;
  info["cuda_compiler_version"] = INFOFLOW_CUDA_COMPILER_VERSION;
  info["cuda_architectures"] = INFOFLOW_CUDA_ARCHS;
  info["cuda_runtime_version"] = infoflow::cuda::runtime_version();
  info["cuda_driver_version"] = infoflow::cuda::driver_version();
  const auto devices = infoflow::cuda::device_count();
  info["cuda_device_count"] = devices.count;
  info["cuda_device_error"] = devices.error.empty() ? py::object(py::none()) : py::object(py::str(devices.error));
  py::list names;
  for (int dev = 0; dev < devices.count; ++dev) names.append(infoflow::cuda::device_name(dev));
  info["cuda_devices"] = names;
  return info;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "infoflow CUDA kernels: exact batched Gaussian log-sum-exp on the GPU";
  m.def("log_density", &log_density,
        "Enqueue out[b, i] = log sum_j exp(-||q[b,i] - c[b,j]||^2 / (2 beta^2)) on a stream.",
        py::arg("dtype"), py::arg("queries"), py::arg("query_shape"), py::arg("query_stride"),
        py::arg("centers"), py::arg("center_shape"), py::arg("center_stride"), py::arg("out"),
        py::arg("beta"), py::arg("stream"), py::arg("device"));
  m.def("device_count", [] {
    const auto devices = infoflow::cuda::device_count();
    return py::make_tuple(devices.count, devices.error.empty() ? py::object(py::none()) : py::object(py::str(devices.error)));
  }, "(number of usable CUDA devices, None or the CUDA error that explains a count of 0).  Initialises the\n"
     "CUDA runtime: infoflow calls it only when CUDA is first needed, never at import.");
  m.def("build_info", &build_info, "How _cuda was built and which devices it sees.");
}
