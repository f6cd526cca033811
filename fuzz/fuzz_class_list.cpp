// libFuzzer target: ImageFolder class-list files (one folder per line, optional readable
// name; the ImageNet-100 format) on arbitrary bytes.
#include "cts/data/image_folder.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cts::fuzz::init_torch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static cts::fuzz::MemFile file;
  cts::fuzz::input_errors_only([&] { cts::read_class_list(file.set(data, size)); });
  return 0;
}
