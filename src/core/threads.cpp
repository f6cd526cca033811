// Thread configuration and parallel jobs (see header).
#include "cts/core/threads.hpp"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <torch/torch.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

namespace cts {

void keep_freed_memory() {
#ifdef __GLIBC__
  static const bool done = [] {
    const char* tunables = std::getenv("GLIBC_TUNABLES");
    if (tunables && std::strstr(tunables, "glibc.malloc.")) return false;
    for (const char* v : {"MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_"})
      if (std::getenv(v)) return false;
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_TOP_PAD, 64 << 20);
    return true;
  }();
  (void)done;
#endif
}

int64_t configure_threads(int64_t threads) {
  keep_freed_memory();
  const int64_t n = threads > 0 ? threads : std::max<int64_t>(1, std::thread::hardware_concurrency());
  torch::set_num_threads(static_cast<int>(n));
  // openblas_set_num_threads exists only when OpenBLAS is the BLAS in use: look it up.
  using SetThreads = void (*)(int);
  if (auto* f = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(1);
  return n;
}

namespace {
thread_local bool in_job = false;
}  // namespace

void parallel_jobs(int64_t n, const std::function<void(int64_t)>& job) {
  if (n <= 0) return;
  if (in_job) {  // nested: this thread is one of the workers already
    for (int64_t i = 0; i < n; ++i) job(i);
    return;
  }
  const int threads = at::get_num_threads();
  const int64_t workers = std::min<int64_t>(threads, n);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  std::atomic<int64_t> next{0};
  auto work = [&] {
    in_job = true;
    for (int64_t i = next++; i < n; i = next++) {
      try {
        job(i);
      } catch (...) {
        errors[size_t(i)] = std::current_exception();
      }
    }
    in_job = false;
  };
  try {
    at::set_num_threads(1);  // every job single-threaded (this thread's setting and the default of new ones)
  } catch (const c10::Error&) {
    // A parallel backend that cannot change its thread count once started: run the jobs here.
    for (int64_t i = 0; i < n; ++i) job(i);
    return;
  }
  std::vector<std::thread> pool;
  try {
    for (int64_t w = 1; w < workers; ++w) {
      pool.emplace_back([&] {
        at::init_num_threads();  // a new thread: take the one-thread setting
        work();
      });
    }
  } catch (...) {
    // Could not start another thread: the started ones and this one do all the work.
  }
  work();
  for (auto& t : pool) t.join();
  at::set_num_threads(threads);
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace cts
