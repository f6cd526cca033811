// The `model.*` section of a run configuration and the ViT architecture it describes for a
// dataset. Keys, defaults and help texts are declared once in src/config/config.cpp.
#pragma once
#include <cstdint>
#include <string>

#include "cts/data/dataset.hpp"
#include "cts/models/vit.hpp"

namespace cts {

struct ModelConfig {
  std::string learner = "vit-classifier";  // the model kind the sequential loop trains (learners/registry.hpp)
  std::string preset = "vit_nano_patch4_28";
  std::string weights;  // empty: random init
  int64_t img_size = 0, patch_size = 0, in_chans = 0, embed_dim = 0, depth = 0, num_heads = 0;
  double mlp_ratio = 0.0;
  std::string attention = "auto";  // auto | fused | explicit
};

// The preset with the section's overrides applied (no data checks).
ViTConfig vit_config(const ModelConfig& model);

// The architecture for a dataset of images `data` (`dataset` names it in errors) with
// `classes` head outputs. Every mismatch between model and data (image size, channels) is
// reported in one InputError with the settings that fix it.
ViTConfig vit_config_for_data(const ModelConfig& model, const ImageShape& data, const std::string& dataset, int64_t classes);

}  // namespace cts
