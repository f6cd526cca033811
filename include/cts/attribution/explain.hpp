// `cts explain`: load a model from a weights file, score one image's tokens with several
// attribution methods and keep each method's top fraction (what the memory would store).
#pragma once
#include <torch/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "cts/attribution/token_selector.hpp"
#include "cts/models/vit.hpp"

namespace cts {

struct LoadedModel {
  VisionTransformer model{nullptr};
  std::vector<int64_t> class_order;  // head index -> dataset class id (from a cts run), empty if unknown
  std::vector<std::string> notes;    // load notes (head re-created, ...)
};

// Builds the architecture from the file's cts.* metadata (or `preset`, when given or when the
// file has none; the head size follows the file) and loads the weights.
LoadedModel load_model_for_inference(const std::filesystem::path& weights, const std::string& preset);

struct ExplainRequest {
  torch::Tensor image;                  // uint8 [C, H, W] at the model's size
  std::optional<int64_t> label;         // dataset class id, if known
  std::string target = "auto";          // auto (label if known, else predicted) | label | predicted | a head index
  std::vector<std::string> methods;     // token selector names
  double token_fraction = 0.2;
  TokenSelectorOptions options;
  int64_t sample_id = 0;                // seeds the random method
};

struct MethodExplanation {
  std::string method;
  torch::Tensor relevance;  // float [T]
  torch::Tensor kept;       // int64 [k] ascending
  double seconds = 0.0;
};

struct Explanation {
  int64_t target = 0;             // head index explained
  std::string target_source;      // "label" | "predicted" | "given"
  int64_t predicted = 0;          // head index the model predicts
  torch::Tensor probabilities;    // [classes]
  int64_t kept_tokens = 0;
  std::vector<MethodExplanation> methods;
};

Explanation explain_image(LoadedModel& model, const ExplainRequest& request);

// Scores as JSON text (method -> [T] relevance, kept positions, target, grid).
std::string explanation_json(const LoadedModel& model, const Explanation& e);

}  // namespace cts
