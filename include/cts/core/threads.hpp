// CPU thread settings. libtorch parallelises each op over its intra-op threads; Debian's
// libtorch calls OpenBLAS for matrix products, and OpenBLAS's own pthread pool would run
// on top of those threads. Oversubscribed, the two spin against each other (measured on 2
// cores: 20 s of 56 s in the kernel). cts gives torch the threads and OpenBLAS one.
#pragma once
#include <cstdint>

namespace cts {

// Sets torch's intra-op threads (0 = all cores) and pins OpenBLAS, if loaded, to 1 thread.
// Returns the number of torch threads.
int64_t configure_threads(int64_t threads);

}  // namespace cts
