// Synthetic datasets (deterministic from the seed).
#include "cts/data/synthetic.hpp"

#include <torch/torch.h>

#include "cts/core/error.hpp"
#include "cts/core/rng.hpp"

namespace cts {
namespace {

torch::Tensor class_patterns(const SyntheticOptions& o) {
  auto gen = make_generator(o.seed, "synthetic_patterns");
  // Low-frequency patterns: 4x4 random grids upsampled to the image size.
  auto low = torch::rand({o.num_classes, o.channels, 4, 4}, gen) * 255.0;
  namespace F = torch::nn::functional;
  return F::interpolate(low, F::InterpolateFuncOptions().size(std::vector<int64_t>{o.image_size, o.image_size}).mode(torch::kBilinear).align_corners(false));
}

struct Generated {
  torch::Tensor images, labels, key_patches;
};

Generated generate(const SyntheticOptions& o, int split) {
  if (o.image_size % o.patch_size != 0) throw_input("synthetic: image size {} is not a multiple of patch size {}", o.image_size, o.patch_size);
  auto gen = make_generator(o.seed, "synthetic_samples", {split});
  const int64_t n = o.num_classes * o.per_class;
  auto labels = torch::arange(o.num_classes, torch::kInt64).repeat_interleave(o.per_class);
  Generated g;
  g.labels = labels;
  if (!o.key_patch) {
    auto patterns = class_patterns(o);
    auto noise = torch::randn({n, o.channels, o.image_size, o.image_size}, gen) * 48.0;
    g.images = (patterns.index_select(0, labels) * 0.8 + noise + 25.0).round().clamp(0, 255).to(torch::kUInt8);
    g.key_patches = torch::full({n}, -1, torch::kInt64);
    return g;
  }
  // Key-patch data: background noise, one patch carries a class-specific texture.
  const int64_t p = o.patch_size, grid = o.image_size / p, T = grid * grid;
  auto pgen = make_generator(o.seed, "synthetic_textures");
  auto textures = (torch::rand({o.num_classes, o.channels, p, p}, pgen) > 0.5).to(torch::kFloat32) * 255.0;
  auto images = torch::rand({n, o.channels, o.image_size, o.image_size}, gen) * 110.0 + 20.0;
  auto where = torch::randint(0, T, {n}, gen, torch::kInt64);
  auto wp = where.accessor<int64_t, 1>();
  auto lp = labels.accessor<int64_t, 1>();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t r = wp[i] / grid, c = wp[i] % grid;
    images[i].narrow(1, r * p, p).narrow(2, c * p, p).copy_(textures[lp[i]]);
  }
  g.images = images.round().clamp(0, 255).to(torch::kUInt8);
  g.key_patches = where;
  return g;
}

}  // namespace

std::shared_ptr<TensorDataset> make_synthetic(const SyntheticOptions& o, int split) {
  if (o.num_classes < 1 || o.per_class < 1 || o.image_size < 1) throw_input("synthetic: classes, samples per class and image size must be positive");
  auto g = generate(o, split);
  return std::make_shared<TensorDataset>(o.key_patch ? "synthetic-patch" : "synthetic", g.images, g.labels, o.num_classes);
}

torch::Tensor synthetic_key_patches(const SyntheticOptions& o, int split) { return generate(o, split).key_patches; }

}  // namespace cts
