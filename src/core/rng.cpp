// Seed derivation (splitmix64 over FNV-1a tags) and generator construction.
#include "cts/core/rng.hpp"

#include <ATen/CPUGeneratorImpl.h>

namespace cts {
namespace {
uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}
}  // namespace

uint64_t hash_tag(std::string_view tag) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : tag) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

uint64_t derive_seed(uint64_t seed, std::string_view purpose, std::initializer_list<int64_t> coords) {
  uint64_t h = splitmix64(seed ^ splitmix64(hash_tag(purpose)));
  for (int64_t c : coords) h = splitmix64(h ^ splitmix64(static_cast<uint64_t>(c) + 0x632BE59BD9B4E019ULL));
  // CPUGeneratorImpl seeds mt19937 from 64 bits; keep it positive for readability in logs.
  return h & 0x7FFFFFFFFFFFFFFFULL;
}

at::Generator make_generator(uint64_t seed, std::string_view purpose, std::initializer_list<int64_t> coords) {
  return at::make_generator<at::CPUGeneratorImpl>(derive_seed(seed, purpose, coords));
}

}  // namespace cts
