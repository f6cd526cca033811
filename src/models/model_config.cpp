// The ViT architecture of a run: preset, overrides, and the checks against the data.
#include "cts/models/model_config.hpp"

#include <fmt/format.h>

#include <vector>

#include "cts/core/error.hpp"

namespace cts {

ViTConfig vit_config(const ModelConfig& m) {
  ViTConfig v = vit_preset(m.preset);
  if (m.img_size) v.img_size = m.img_size;
  if (m.patch_size) v.patch_size = m.patch_size;
  if (m.in_chans) v.in_chans = m.in_chans;
  if (m.embed_dim) v.embed_dim = m.embed_dim;
  if (m.depth) v.depth = m.depth;
  if (m.num_heads) v.num_heads = m.num_heads;
  if (m.mlp_ratio > 0) v.mlp_ratio = m.mlp_ratio;
  return v;
}

ViTConfig vit_config_for_data(const ModelConfig& m, const ImageShape& data, const std::string& dataset, int64_t classes) {
  ViTConfig v = vit_config(m);
  v.num_classes = classes;
  v.validate();
  std::vector<std::string> problems, fixes;
  if (data.height != v.img_size || data.width != v.img_size) {
    problems.push_back(fmt::format("it takes {}x{} images but {} gives {}x{}", v.img_size, v.img_size, dataset, data.height, data.width));
    fixes.push_back(fmt::format("data.image_size: {} (resize) or model.img_size: {}", v.img_size, data.height));
  }
  if (data.channels != v.in_chans && !(data.channels == 1 && v.in_chans == 3)) {
    problems.push_back(fmt::format("it takes {} channel(s) but {} images have {}", v.in_chans, dataset, data.channels));
    fixes.push_back(fmt::format("model.in_chans: {}", data.channels));
  }
  if (!problems.empty()) {
    throw_input("model {} does not fit the data: {}; set {}", v.preset, fmt::join(problems, "; "), fmt::join(fixes, " and "));
  }
  return v;
}

}  // namespace cts
