// random coreset: first `budget` entries of a seeded permutation, returned ascending.
#include "cts/coreset/random.hpp"

#include <torch/torch.h>

#include "cts/core/rng.hpp"

namespace cts {

CoresetResult RandomCoreset::select(const CoresetInput& in) {
  check_coreset_input(in, *this);
  auto gen = make_generator(in.seed, "coreset_random", {in.task, in.class_id});
  auto perm = torch::randperm(in.num_samples, gen, torch::kInt64);
  CoresetResult r;
  r.indices = std::get<0>(torch::sort(perm.narrow(0, 0, in.budget)));
  r.weights = torch::ones({in.budget}, torch::kFloat32);
  return r;
}

}  // namespace cts
