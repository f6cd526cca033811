// libFuzzer target: load_safetensors on arbitrary bytes, then TokenBuffer::load (the
// memory buffer's consistency checks on top of the format) on the same file.
#include "cts/core/safetensors.hpp"
#include "cts/memory/token_buffer.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cts::fuzz::init_torch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static cts::fuzz::MemFile file;
  const auto& path = file.set(data, size);
  bool parsed = false;
  cts::fuzz::input_errors_only([&] {
    cts::load_safetensors(path);
    parsed = true;
  });
  if (parsed) cts::fuzz::input_errors_only([&] { cts::TokenBuffer::load(path); });
  return 0;
}
