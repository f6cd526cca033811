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
  sort_with_rank(perm.narrow(0, 0, in.budget), r);
  r.weights = torch::ones({in.budget}, torch::kFloat32);
  return r;
}

}  // namespace cts
