// Thread configuration (see header).
#include "cts/core/threads.hpp"

#include <dlfcn.h>
#include <torch/torch.h>

#include <thread>

namespace cts {

int64_t configure_threads(int64_t threads) {
  const int64_t n = threads > 0 ? threads : std::max<int64_t>(1, std::thread::hardware_concurrency());
  torch::set_num_threads(static_cast<int>(n));
  // openblas_set_num_threads exists only when OpenBLAS is the BLAS in use: look it up.
  using SetThreads = void (*)(int);
  if (auto* f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(1);
  return n;
}

}  // namespace cts
