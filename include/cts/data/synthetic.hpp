// Generated image datasets for smoke tests, demos and attribution sanity checks; no files.
//  - "synthetic": each class is a fixed random low-frequency pattern plus per-sample noise.
//  - "synthetic-patch": the label is decided by one patch alone (a class-specific texture at
//    a random patch position over random-noise background); attribution methods should
//    rank that patch first.
#pragma once
#include <memory>

#include "cts/data/dataset.hpp"

namespace cts {

struct SyntheticOptions {
  int64_t num_classes = 10;
  int64_t channels = 1;
  int64_t image_size = 28;
  int64_t patch_size = 4;  // synthetic-patch: the patch grid the key patch is placed on
  int64_t per_class = 500;
  uint64_t seed = 0;
  bool key_patch = false;
};

// `split` (0 train, 1 test) draws different samples from the same classes.
std::shared_ptr<TensorDataset> make_synthetic(const SyntheticOptions& options, int split);

// For synthetic-patch: the patch index holding the key texture of each sample ([N] int64).
torch::Tensor synthetic_key_patches(const SyntheticOptions& options, int split);

}  // namespace cts
