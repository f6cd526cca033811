// libFuzzer target: read_idx (MNIST / Fashion-MNIST idx files, raw or gzip) on arbitrary bytes.
#include "cts/data/idx.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cts::fuzz::init_torch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static cts::fuzz::MemFile file;
  cts::fuzz::input_errors_only([&] { cts::read_idx(file.set(data, size)); });
  return 0;
}
