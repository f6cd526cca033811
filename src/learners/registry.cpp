// Learner registry: one entry per model kind.
#include "cts/learners/registry.hpp"

#include <fmt/format.h>

#include "cts/core/error.hpp"
#include "cts/learners/dytox/dytox.hpp"
#include "cts/learners/linear_probe/linear_probe.hpp"
#include "cts/learners/mae/mae.hpp"
#include "cts/learners/vit_classifier/vit_classifier.hpp"
#include "cts/learners/vl_decoder/vl_decoder.hpp"

namespace cts {

std::vector<std::pair<std::string, torch::Tensor>> encoder_parameters_without_head(const VisionTransformer& encoder) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& [name, t] : encoder->state())
    if (name.rfind("head.", 0) != 0) out.emplace_back(name, t);
  return out;
}

std::vector<std::pair<std::string, torch::Tensor>> prefixed_parameters(const torch::nn::Module& module, const std::string& prefix) {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : module.named_parameters()) out.emplace_back(prefix + p.key(), p.value());
  return out;
}

void copy_named_tensors(const std::map<std::string, torch::Tensor>& into, const std::map<std::string, torch::Tensor>& from, const std::string& who) {
  torch::NoGradGuard no_grad;
  for (const auto& [name, t] : into) {
    auto it = from.find(name);
    if (it == from.end()) throw_input("{}: tensor {} is missing", who, name);
    if (it->second.sizes() != t.sizes())
      throw_input("{}: tensor {} has shape [{}], the model [{}]", who, name, fmt::join(it->second.sizes(), ", "), fmt::join(t.sizes(), ", "));
    t.detach().copy_(it->second);
  }
}

std::vector<std::string> learner_names() { return {"vit-classifier", "linear-probe", "dytox", "mae", "vl-decoder"}; }

std::unique_ptr<Learner> make_learner(const LearnerContext& context) {
  const std::string& kind = context.model.learner;
  if (kind != "vit-classifier" && context.settings.classifier.bias_correction != "none") {
    throw_input("classifier.bias_correction = {} corrects the one class-incremental head of model.learner vit-classifier; model.learner {} has "
                "none (accepted: classifier.bias_correction: none)",
                context.settings.classifier.bias_correction, kind);
  }
  if (kind == "vit-classifier") return std::make_unique<ViTClassifier>(context);
  if (kind == "linear-probe") return std::make_unique<LinearProbe>(context);
  if (kind == "dytox") return std::make_unique<DyTox>(context);
  if (kind == "mae") return std::make_unique<MaskedAutoencoder>(context);
  if (kind == "vl-decoder") return std::make_unique<VLDecoder>(context);
  throw_input("model.learner = '{}' is not known; accepted: {}", kind, fmt::join(learner_names(), ", "));
}

}  // namespace cts
