// libFuzzer target: the YAML config parser (yaml-cpp, then cts's key table, types, ranges
// and cross-key validation) on arbitrary text.
#include "cts/config/config.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cts::fuzz::init_torch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  cts::fuzz::input_errors_only([&] { cts::parse_config(text, "fuzz.yaml"); });
  return 0;
}
