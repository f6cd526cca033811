// libFuzzer target: the CIFAR binary reader. The first byte picks the layout (even:
// CIFAR-10 records of 1 + 3072 bytes, odd: CIFAR-100 records of 2 + 3072 bytes); the rest
// is the file.
#include "cts/data/cifar.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cts::fuzz::init_torch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static cts::fuzz::MemFile file;
  const bool cifar100 = data[0] & 1;
  cts::fuzz::input_errors_only([&] {
    cts::read_cifar_files({file.set(data + 1, size - 1)}, cifar100, cifar100 ? "cifar100" : "cifar10", {});
  });
  return 0;
}
