// Seeded, stateless random streams. Every random choice of a run (initialisation, data
// order, token dropping, replay sampling, selection) draws from a generator whose seed is
// derived from the run seed and the choice's coordinates (task, epoch, step, ...). A run
// is therefore reproducible, and a resumed run needs only its counters, not RNG states.
#pragma once
#include <ATen/core/Generator.h>

#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace cts {

// 64-bit FNV-1a of a purpose tag such as "token_drop".
uint64_t hash_tag(std::string_view tag);

// splitmix64-mixed combination of a seed, a purpose tag and integer coordinates.
uint64_t derive_seed(uint64_t seed, std::string_view purpose, std::initializer_list<int64_t> coords = {});

// A CPU generator seeded with derive_seed(...).
at::Generator make_generator(uint64_t seed, std::string_view purpose, std::initializer_list<int64_t> coords = {});

}  // namespace cts
