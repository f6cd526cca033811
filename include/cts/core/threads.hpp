// CPU thread settings and job parallelism. libtorch parallelises each op over its intra-op
// threads; Debian's libtorch calls OpenBLAS for matrix products, and OpenBLAS's own pthread
// pool would run on top of those threads. Oversubscribed, the two spin against each other
// (measured on 2 cores: 20 s of 56 s in the kernel). cts gives torch the threads and OpenBLAS
// one. At vit_nano's size most matrix products are small and an op split over 2 threads is no
// faster than on one (the quickstart took 86 s with 1 or 2 intra-op threads), so the work that
// splits into independent pieces (the loss terms of a step, evaluation and selection batches)
// runs as jobs on the threads instead: each job single-threaded, all jobs at once.
#pragma once
#include <cstdint>
#include <functional>

namespace cts {

// Sets torch's intra-op threads (0 = all cores) and pins OpenBLAS, if loaded, to 1 thread;
// also keep_freed_memory(). Returns the number of torch threads.
int64_t configure_threads(int64_t threads);

// glibc's malloc hands buffers of a few MB (a batch's activations) back to the kernel when
// they are freed and faults fresh zeroed pages in at the next allocation: an evaluation
// forward spent 13 % of its time in the kernel (505 000 page faults in a 2 s benchmark).
// Keeping freed memory in the process (mmap threshold 256 MiB, trim threshold 1 GiB, top pad
// 64 MiB) cuts that to 29 000 and the forward by ~10 % (docs/performance.md). The process
// keeps its peak heap. Skipped where the user set glibc's malloc tunables or MALLOC_*_
// variables, and on other C libraries. Idempotent.
void keep_freed_memory();

// Runs job(0), ..., job(n - 1) on as many threads as torch has intra-op threads (at most n),
// each job with one intra-op thread, so a job computes exactly what it computes in a run with
// `threads: 1`: results do not depend on the number of threads. Jobs must not share mutable
// state. The first exception (in job order) is rethrown after every job has ended. A call
// from inside a job runs its jobs one after the other on that thread.
void parallel_jobs(int64_t n, const std::function<void(int64_t)>& job);

}  // namespace cts
