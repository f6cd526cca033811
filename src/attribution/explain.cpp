// Explaining one image with several attribution methods (the `cts explain` command).
#include "cts/attribution/explain.hpp"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "cts/attribution/registry.hpp"
#include "cts/core/error.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/data/patches.hpp"

namespace cts {

LoadedModel load_model_for_inference(const std::filesystem::path& weights, const std::string& preset) {
  auto header = read_safetensors_header(weights);  // validates the file, names it in errors
  const auto learner = header.metadata.find("cts.learner");
  if (learner != header.metadata.end() && learner->second != "vit-classifier") {
    throw_input("{}: weights of the {} learner (cts.learner); cts explain explains ViT classifier weights (timm names), "
                "whose class-token attention and head the attribution methods read",
                weights.string(), learner->second);
  }
  ViTConfig cfg = vit_config_from_metadata(header.metadata, weights.string(), preset);
  for (const auto& e : header.entries) {
    if (e.name == "head.weight" && e.shape.size() == 2) cfg.num_classes = e.shape[0];
  }
  LoadedModel out;
  out.model = VisionTransformer(cfg, 0);
  out.notes = load_vit_weights(out.model, weights).notes;
  out.model->eval();
  auto it = header.metadata.find("cts.class_order");
  if (it != header.metadata.end() && !it->second.empty()) {
    std::string s = it->second;
    size_t pos = 0;
    while (pos <= s.size()) {
      auto next = s.find(',', pos);
      if (next == std::string::npos) next = s.size();
      out.class_order.push_back(std::stoll(s.substr(pos, next - pos)));
      pos = next + 1;
    }
  }
  return out;
}

Explanation explain_image(LoadedModel& lm, const ExplainRequest& rq) {
  auto& model = lm.model;
  const auto& cfg = model->config();
  if (rq.image.dim() != 3 || rq.image.size(1) != cfg.img_size || rq.image.size(2) != cfg.img_size) {
    throw_input("explain: the image must be [C, {0}, {0}] for {1}, got [{2}, {3}, {4}]", cfg.img_size, cfg.preset, rq.image.size(0),
                rq.image.size(1), rq.image.size(2));
  }
  if (rq.methods.empty()) throw_input("explain: --methods is empty; accepted: {}", fmt::join(token_selector_names(), ", "));
  if (!(rq.token_fraction > 0.0 && rq.token_fraction <= 1.0)) throw_input("explain: --token-fraction = {}; accepted: 0 < k <= 1", rq.token_fraction);
  const int64_t T = cfg.num_patches();
  const int64_t k = std::max<int64_t>(1, tokens_kept(rq.token_fraction, T));
  auto images = rq.image.unsqueeze(0).contiguous();

  Explanation e;
  e.kept_tokens = k;
  {
    torch::NoGradGuard ng;
    auto logits = model->forward(model->normalize(images));
    e.probabilities = torch::softmax(logits, 1)[0].to(torch::kCPU);
    e.predicted = logits.argmax(1).item<int64_t>();
  }
  // Which head row to explain.
  auto label_head = [&]() -> std::optional<int64_t> {
    if (!rq.label) return std::nullopt;
    if (lm.class_order.empty()) return *rq.label < model->num_classes() ? std::optional<int64_t>(*rq.label) : std::nullopt;
    for (size_t i = 0; i < lm.class_order.size() && int64_t(i) < model->num_classes(); ++i) {
      if (lm.class_order[i] == *rq.label) return int64_t(i);
    }
    return std::nullopt;
  };
  if (rq.target == "auto" || rq.target == "label") {
    auto h = label_head();
    if (h) {
      e.target = *h, e.target_source = "label";
    } else if (rq.target == "label") {
      throw_input("explain: --target label needs a labelled image whose class the model's head has (use --dataset, or --target predicted)");
    } else {
      e.target = e.predicted, e.target_source = "predicted";
    }
  } else if (rq.target == "predicted") {
    e.target = e.predicted, e.target_source = "predicted";
  } else {
    try {
      size_t used = 0;
      e.target = std::stoll(rq.target, &used);
      if (used != rq.target.size()) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      throw_input("explain: --target '{}'; accepted: auto, label, predicted or a head index 0..{}", rq.target, model->num_classes() - 1);
    }
    if (e.target < 0 || e.target >= model->num_classes()) {
      throw_input("explain: --target {} is outside the head (0..{})", e.target, model->num_classes() - 1);
    }
    e.target_source = "given";
  }
  auto targets = torch::tensor({e.target}, torch::kInt64);
  auto ids = torch::tensor({rq.sample_id}, torch::kInt64);
  for (const auto& name : rq.methods) {
    auto sel = make_token_selector(name, rq.options);
    const auto t0 = std::chrono::steady_clock::now();
    auto rel = sel->relevance(model, images, targets, ids);
    MethodExplanation m;
    m.method = name;
    m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    m.relevance = rel[0].contiguous();
    m.kept = top_tokens(rel, k, token_tie_keys(ids, T, rq.options.seed))[0].contiguous();
    e.methods.push_back(m);
  }
  return e;
}

std::string explanation_json(const LoadedModel& lm, const Explanation& e) {
  const auto& cfg = lm.model->config();
  nlohmann::json j;
  j["preset"] = cfg.preset;
  j["grid"] = {cfg.grid(), cfg.grid()};
  j["patch_size"] = cfg.patch_size;
  j["target"] = e.target;
  j["target_source"] = e.target_source;
  if (!lm.class_order.empty() && e.target < int64_t(lm.class_order.size())) j["target_class"] = lm.class_order[size_t(e.target)];
  j["predicted"] = e.predicted;
  j["kept_tokens"] = e.kept_tokens;
  auto p = e.probabilities.to(torch::kFloat64).contiguous();
  j["probabilities"] = std::vector<double>(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
  nlohmann::json methods = nlohmann::json::object();
  for (const auto& m : e.methods) {
    auto r = m.relevance.to(torch::kFloat64).contiguous();
    auto kept = m.kept.to(torch::kInt64).contiguous();
    methods[m.method] = {{"relevance", std::vector<double>(r.data_ptr<double>(), r.data_ptr<double>() + r.numel())},
                         {"kept", std::vector<int64_t>(kept.data_ptr<int64_t>(), kept.data_ptr<int64_t>() + kept.numel())},
                         {"seconds", m.seconds}};
  }
  j["methods"] = methods;
  return j.dump(1) + "\n";
}

}  // namespace cts
