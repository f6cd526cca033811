// bf16 autocast scopes for libtorch 1.13 and 2.x.
#include "cts/train/precision.hpp"

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "cts/core/error.hpp"

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define CTS_AUTOCAST_DEVICE_API 1
#else
#define CTS_AUTOCAST_DEVICE_API 0
#endif

namespace cts {

torch::Device choose_device(const std::string& wanted) {
  if (wanted == "cuda") {
    if (!torch::cuda::is_available()) throw_input("device = cuda but this libtorch build sees no CUDA device; use device: cpu or auto");
    return torch::Device(torch::kCUDA);
  }
  if (wanted == "cpu") return torch::Device(torch::kCPU);
  if (wanted != "auto") throw_input("device = '{}'; accepted: auto, cpu, cuda", wanted);
  return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
}

bool use_bf16_autocast(const std::string& precision, const torch::Device& device) {
  if (precision == "auto") return device.is_cuda();
  if (precision == "fp32") return false;
  if (precision == "bf16") return true;
  throw_input("train.precision = '{}'; accepted: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16", precision);
}

AutocastScope::AutocastScope(const torch::Device& device, bool enabled) : enabled_(enabled), cuda_(device.is_cuda()) {
  if (!enabled_) return;
#if CTS_AUTOCAST_DEVICE_API
  const auto type = cuda_ ? at::kCUDA : at::kCPU;
  previous_ = at::autocast::is_autocast_enabled(type);
  previous_dtype_ = at::autocast::get_autocast_dtype(type);
  at::autocast::set_autocast_dtype(type, at::kBFloat16);
  at::autocast::set_autocast_enabled(type, true);
#else
  if (cuda_) {
    previous_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
    at::autocast::set_enabled(true);
  } else {
    previous_ = at::autocast::is_cpu_enabled();
    previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
#endif
}

AutocastScope::~AutocastScope() {
  if (!enabled_) return;
  at::autocast::clear_cache();
#if CTS_AUTOCAST_DEVICE_API
  const auto type = cuda_ ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_enabled(type, previous_);
  at::autocast::set_autocast_dtype(type, previous_dtype_);
#else
  if (cuda_) {
    at::autocast::set_enabled(previous_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
  } else {
    at::autocast::set_cpu_enabled(previous_);
    at::autocast::set_autocast_cpu_dtype(previous_dtype_);
  }
#endif
}

}  // namespace cts
