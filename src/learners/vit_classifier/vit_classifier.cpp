// ViT classifier learner: a growing class-incremental head, CE(new) + CE(replay), class-IL
// and task-IL accuracy, last-layer gradient coreset rows, target-logit explanations.
#include "cts/learners/vit_classifier/vit_classifier.hpp"

#include <fmt/format.h>

#include "cts/core/console.hpp"
#include "cts/core/error.hpp"
#include "cts/core/threads.hpp"
#include "cts/eval/evaluate.hpp"

namespace cts {
namespace {

VisionTransformer build_model(const LearnerContext& ctx, std::vector<std::string>& notes) {
  const ViTConfig cfg = vit_config_for_data(ctx.model, ctx.data.train->shape(), ctx.dataset, ctx.split.classes_per_task);
  VisionTransformer model(cfg, ctx.seed);
  model->set_attention_mode(ctx.model.attention);
  if (!ctx.model.weights.empty()) {
    notes = load_vit_weights(model, ctx.model.weights).notes;
    Console::get().info("loaded {}", ctx.model.weights);
    for (const auto& note : notes) Console::get().info("  {}", note);
  }
  return model;
}

}  // namespace

torch::Tensor replay_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets, const torch::Tensor& weights) {
  auto ce = torch::cross_entropy_loss(logits, targets, {}, torch::Reduction::None);  // [B]
  return (ce * weights.to(ce.dtype())).sum() / weights.sum().to(ce.dtype()).clamp_min(1e-12);
}

// ------------------------------------------------------------------ memory-model side

CoresetRows ViTClassifierMemoryModel::coreset_rows(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) {
  EvalModeGuard eval(model_, /*grad=*/false);
  const auto targets = split_->map_labels(data.labels().index_select(0, indices));
  const int64_t n = indices.size(0), batches = (n + batch_size - 1) / batch_size;
  if (n == 0) return {torch::zeros({0, model_->config().embed_dim}), torch::zeros({0, model_->num_classes()})};
  std::vector<torch::Tensor> grads(static_cast<size_t>(batches)), feats(static_cast<size_t>(batches));
  parallel_jobs(batches, [&](int64_t k) {  // one thread per batch: the same rows on any number of threads
    torch::NoGradGuard no_grad;
    const int64_t i = k * batch_size, b = std::min(batch_size, n - i);
    auto x = model_->normalize(data.images(indices.narrow(0, i, b)));
    auto f = model_->pre_logits(model_->forward_features(x));
    auto p = torch::softmax(model_->head(f), 1).to(torch::kCPU, torch::kFloat32);
    auto onehot = torch::one_hot(targets.narrow(0, i, b).to(torch::kInt64), p.size(1)).to(torch::kFloat32);
    grads[size_t(k)] = p - onehot;
    feats[size_t(k)] = f.to(torch::kCPU, torch::kFloat32);
  });
  return {torch::cat(feats), torch::cat(grads)};
}

std::unique_ptr<ExplainedModel> ViTClassifierMemoryModel::explained(const SampleBatch& batch, ExplainTarget target) {
  torch::Tensor targets = split_->map_labels(batch.labels);
  if (target == ExplainTarget::Predicted) {
    EvalModeGuard eval(model_, /*grad=*/false);
    targets = model_->forward(model_->normalize(batch.images)).argmax(1).to(torch::kCPU);
  }
  return std::make_unique<ClassifierExplained>(model_, targets);
}

torch::Tensor ViTClassifierMemoryModel::sample_features(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) {
  return extract_features(model_, data, indices, batch_size);
}

torch::Tensor ViTClassifierMemoryModel::replay_features(const TokenBuffer& buffer, FillMode fill, double rescale, int64_t batch_size) {
  return extract_replay_features(model_, buffer, fill, rescale, batch_size);
}

// ------------------------------------------------------------------ learner

ViTClassifier::ViTClassifier(const LearnerContext& ctx)
    : split_(ctx.split), device_(ctx.device), settings_(ctx.settings.classifier), model_(build_model(ctx, weight_notes_)), memory_(model_, ctx.split) {
  const int64_t total_classes = split_.classes_per_task * split_.num_tasks();
  head_init_rows_ = init_head_rows(total_classes, model_->config().embed_dim, ctx.seed);
  {
    torch::NoGradGuard no_grad;  // the first task's rows come from the same seeded init as later ones
    model_->head->weight.copy_(head_init_rows_.narrow(0, 0, split_.classes_per_task));
    model_->head->bias.zero_();
  }
  model_->to(device_);
}

std::vector<MetricSpec> ViTClassifier::metrics() const { return classification_metrics(); }

std::vector<std::pair<std::string, torch::Tensor>> ViTClassifier::trainable_parameters() {
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& p : model_->named_parameters()) named.emplace_back(p.key(), p.value());
  return named;
}

int64_t ViTClassifier::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : model_->parameters()) n += p.numel();
  return n;
}

void ViTClassifier::begin_task(int64_t task) { model_->resize_head(split_.classes_seen_after(task), head_init_rows_.to(device_)); }

torch::Tensor ViTClassifier::logits(const Batch& b) {
  if (b.patches.defined()) {
    return model_->forward_head(model_->forward_features_patches(model_->normalize_patches(b.patches), b.keep.positions, {&b.keep, nullptr}));
  }
  return model_->forward(model_->normalize(b.images), {b.partial() ? &b.keep : nullptr, nullptr});
}

StepLoss ViTClassifier::step_loss(int64_t task, const Batch& new_data, const Batch* replay) {
  StepLoss loss;
  // A rank's share of a data-parallel batch: per-sample losses over the global batch (mean_of).
  auto ce = [](const Batch& b, const torch::Tensor& z, const torch::Tensor& y) {
    if (b.weights.defined()) {
      if (!b.sharded()) return replay_cross_entropy(z, y, b.weights.to(z.device()));
      return b.weighted_mean_of(torch::cross_entropy_loss(z, y, {}, torch::Reduction::None), b.weights.to(z.device()));
    }
    return b.sharded() ? b.mean_of(torch::cross_entropy_loss(z, y, {}, torch::Reduction::None)) : torch::cross_entropy_loss(z, y);
  };
  loss.push_back({"new", [this, &new_data, ce] {
                    if (new_data.size() == 0) return torch::Tensor();
                    return ce(new_data, logits(new_data), split_.map_labels(new_data.labels).to(device_));
                  }});
  loss.push_back({"replay", [this, replay, ce] {
                    if (!replay || replay->size() == 0) return torch::Tensor();
                    return ce(*replay, logits(*replay), split_.map_labels(replay->labels).to(device_));
                  }});
  return loss;
}

double weight_align(torch::Tensor& weight, int64_t old) {
  TORCH_CHECK(weight.dim() == 2 && old >= 0 && old <= weight.size(0), "weight_align: bad head ", weight.sizes(), " with ", old, " old rows");
  if (old == 0 || old == weight.size(0)) return 1.0;
  torch::NoGradGuard no_grad;
  const auto norms = weight.detach().to(torch::kFloat64).norm(2, {1});
  const double gamma = norms.narrow(0, 0, old).mean().item<double>() / norms.narrow(0, old, weight.size(0) - old).mean().item<double>();
  weight.narrow(0, old, weight.size(0) - old).mul_(gamma);
  return gamma;
}

void ViTClassifier::end_task(int64_t task) {
  if (settings_.bias_correction != "weight-aligning" || task == 0) return;
  const double gamma = weight_align(model_->head->weight, split_.classes_seen_after(task - 1));
  Console::get().info("task {}: weight aligning scaled the {} new head rows by {:.4f}", task, split_.classes_per_task, gamma);
}

std::vector<TaskScores> ViTClassifier::evaluate(const Dataset& test, int64_t tasks_trained, const std::vector<int64_t>& tasks, int64_t batch_size) {
  return classification_scores(evaluate_tasks(model_, test, split_, tasks_trained, head_init_rows_, batch_size, tasks));
}

std::map<std::string, torch::Tensor> ViTClassifier::state_tensors() const { return model_->state(); }

nlohmann::json ViTClassifier::state_info() const { return {{"head_classes", model_->num_classes()}}; }

void ViTClassifier::load_state(const nlohmann::json& info, const std::map<std::string, torch::Tensor>& tensors) {
  model_->resize_head(info.at("head_classes").get<int64_t>(), head_init_rows_.to(device_));
  torch::NoGradGuard no_grad;
  for (auto& p : model_->named_parameters()) {
    auto it = tensors.find(p.key());
    if (it == tensors.end()) throw_input("the checkpoint lacks model tensor {}", p.key());
    if (it->second.sizes() != p.value().sizes()) throw_input("checkpoint tensor {} has the wrong shape", p.key());
    p.value().copy_(it->second);
  }
}

void ViTClassifier::save_weights(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata) const {
  save_vit_weights(model_, path, metadata);
}

}  // namespace cts
