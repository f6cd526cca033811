// libFuzzer target: decode_image (libturbojpeg / libpng behind cts's header checks) on
// arbitrary bytes, seeded with PNG files. Odd-sized inputs decode to 1 channel, even-sized to 3.
#include "cts/data/image_codec.hpp"
#include "fuzz_util.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  cts::fuzz::init_torch();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  cts::fuzz::input_errors_only([&] { cts::decode_image(bytes, "fuzz.png", size % 2 ? 1 : 3); });
  return 0;
}
