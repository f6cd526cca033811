// Device choice and mixed precision. On CUDA, `train.precision: bf16` (the default there, via `auto`) runs the
// forward passes under autocast with bfloat16 compute while parameters, gradients and the
// optimizer state stay float32 (the "master weights"); bf16 has float32's exponent range, so
// no loss scaling is needed. On CPU `auto` means fp32 (bf16 autocast is available with
// `bf16`, but only CPUs with AMX/AVX512-BF16 gain from it).
#pragma once
#include <torch/types.h>

#include <string>

namespace cts {

// "auto" (cuda when this libtorch sees a CUDA device, else cpu) | "cpu" | "cuda"; InputError
// for cuda without a CUDA device or another name.
torch::Device choose_device(const std::string& wanted);

// "auto" | "fp32" | "bf16" -> whether autocast is used on `device`; InputError otherwise.
bool use_bf16_autocast(const std::string& precision, const torch::Device& device);

// Enables bf16 autocast for the device type while alive (no-op when `enabled` is false);
// restores the previous state and clears the autocast cast cache on exit. Compiles against
// libtorch 1.13 and 2.x (the autocast API changed in 2.4).
class AutocastScope {
 public:
  AutocastScope(const torch::Device& device, bool enabled);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_ = false, cuda_ = false, previous_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

}  // namespace cts
