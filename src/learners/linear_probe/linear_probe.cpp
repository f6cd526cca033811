// Linear probe on frozen random patch features: f(x) = mean_t GELU(s·(W_p x_t + b_p) + pos_t),
// z = W f + b (formula and fill rules at the top of the header).
#include "cts/learners/linear_probe/linear_probe.hpp"

#include <fmt/format.h>

#include "cts/core/error.hpp"
#include "cts/core/rng.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/data/patches.hpp"
#include "cts/eval/evaluate.hpp"

namespace cts {
namespace {

torch::Tensor normalise(const torch::Tensor& u8, int64_t channel_dim, int64_t in_chans, const torch::Device& device) {
  auto x = u8.to(device).to(torch::kFloat32).div_(255.0).sub_(0.5).div_(0.5);
  if (x.size(channel_dim) == 1 && in_chans == 3) {
    std::vector<int64_t> rep(size_t(x.dim()), 1);
    rep[size_t(channel_dim)] = 3;
    x = x.repeat(rep);
  }
  TORCH_CHECK(x.size(channel_dim) == in_chans, "linear-probe: the model takes ", in_chans, " channels, the input has ", u8.size(channel_dim));
  return x;
}

}  // namespace

LinearProbe::LinearProbe(const LearnerContext& ctx) : split_(ctx.split), device_(ctx.device) {
  cfg_ = vit_config_for_data(ctx.model, ctx.data.train->shape(), ctx.dataset, ctx.split.classes_per_task);
  if (!ctx.model.weights.empty()) {
    throw_input("model.weights = '{}': the linear-probe learner draws its frozen features from the seed and takes no weights file; "
                "remove model.weights or use model.learner: vit-classifier",
                ctx.model.weights);
  }
  const int64_t D = cfg_.embed_dim, P = cfg_.patch_dim(), T = cfg_.num_patches();
  auto gen = make_generator(ctx.seed, "linear_probe_features");
  proj_w_ = (torch::randn({D, P}, gen) / std::sqrt(double(P))).to(device_);
  proj_b_ = (torch::randn({D}, gen) * 0.1).to(device_);
  pos_ = (torch::randn({T, D}, gen) * 0.5).to(device_);
  const int64_t total_classes = split_.classes_per_task * split_.num_tasks();
  head_init_rows_ = init_head_rows(total_classes, D, ctx.seed);
  head_w_ = head_init_rows_.narrow(0, 0, split_.classes_per_task).clone().to(device_).requires_grad_(true);
  head_b_ = torch::zeros({split_.classes_per_task}, torch::TensorOptions().device(device_)).requires_grad_(true);
}

std::vector<MetricSpec> LinearProbe::metrics() const { return classification_metrics(); }

std::vector<std::pair<std::string, torch::Tensor>> LinearProbe::trainable_parameters() { return {{"head.weight", head_w_}, {"head.bias", head_b_}}; }

int64_t LinearProbe::parameter_count() const { return head_w_.numel() + head_b_.numel() + proj_w_.numel() + proj_b_.numel() + pos_.numel(); }

void LinearProbe::begin_task(int64_t task) {
  const int64_t rows = split_.classes_seen_after(task), old = head_w_.size(0);
  if (rows == old) return;
  torch::NoGradGuard no_grad;
  auto w = head_init_rows_.narrow(0, 0, rows).clone().to(device_);
  auto b = torch::zeros({rows}, torch::TensorOptions().device(device_));
  w.narrow(0, 0, old).copy_(head_w_);
  b.narrow(0, 0, old).copy_(head_b_);
  head_w_ = w.requires_grad_(true);
  head_b_ = b.requires_grad_(true);
}

torch::Tensor LinearProbe::features(const Batch& b) const {
  const int64_t T = cfg_.num_patches(), p = cfg_.patch_size, P = cfg_.patch_dim();
  const FillMode fill = b.keep.fill;
  const double s = b.keep.rescale;
  if (b.patches.defined() && fill == FillMode::Drop) {
    // Only the kept patches: [B, K, C, p, p] at positions [B, K] (-1 padding).
    TORCH_CHECK(b.partial(), "linear-probe: kept patches need their positions");
    const int64_t B = b.patches.size(0), K = b.patches.size(1);
    auto x = normalise(b.patches, 2, cfg_.in_chans, device_).reshape({B, K, P});
    auto pos_idx = b.keep.positions.to(device_, torch::kInt64);
    auto valid = (pos_idx >= 0).to(torch::kFloat32).unsqueeze(2);                               // [B, K, 1]
    auto e = torch::matmul(x, proj_w_.t()) + proj_b_;                                             // [B, K, D]
    auto h = torch::gelu(s * e + pos_.index_select(0, pos_idx.clamp_min(0).flatten()).view({B, K, -1}));
    return (h * valid).sum(1) / valid.sum(1).clamp_min(1.0);
  }
  torch::Tensor images = b.images;
  if (!images.defined()) {  // kept patches with a fill that needs the whole grid: rebuild it
    const int64_t B = b.patches.size(0), K = b.patches.size(1), g = cfg_.grid();
    auto grid = torch::zeros({B * T, b.patches.size(2), p, p}, b.patches.options());
    auto pos_idx = b.keep.positions.to(torch::kCPU, torch::kInt64);
    auto valid = pos_idx >= 0;
    auto rows = torch::arange(B, torch::kInt64).unsqueeze(1).expand({B, K}).masked_select(valid);  // sample of each kept patch
    auto src = torch::arange(B * K, torch::kInt64).view({B, K}).masked_select(valid);              // its row in patches
    grid.index_copy_(0, rows * T + pos_idx.masked_select(valid), b.patches.cpu().reshape({B * K, -1, p, p}).index_select(0, src));
    images = unpatchify(grid.view({B, T, -1, p, p}), g, g);
  }
  const int64_t B = images.size(0);
  auto x = normalise(patchify(images, p), 2, cfg_.in_chans, device_).reshape({B, T, P});  // [B, T, P]
  torch::Tensor kept;                                                                      // [B, T, 1] float, undefined: all
  if (b.partial()) kept = positions_to_mask(b.keep.positions.to(device_), T).to(torch::kFloat32).unsqueeze(2);
  if (kept.defined() && fill == FillMode::ZeroPixel) x = x * kept;
  if (kept.defined() && fill == FillMode::Black) x = x * kept - (1.0 - kept);  // raw 0 normalises to -1 here
  auto e = torch::matmul(x, proj_w_.t()) + proj_b_;  // [B, T, D]
  if (kept.defined() && fill == FillMode::ZeroEmbedding) e = e * kept;
  if (kept.defined() && s != 1.0) e = e * (1.0 + (s - 1.0) * kept);
  auto h = torch::gelu(e + pos_);
  if (kept.defined() && fill == FillMode::Drop) return (h * kept).sum(1) / kept.sum(1).clamp_min(1.0);
  return h.mean(1);
}

torch::Tensor LinearProbe::head_logits(const torch::Tensor& f) const { return torch::linear(f, head_w_, head_b_); }

StepLoss LinearProbe::step_loss(int64_t task, const Batch& new_data, const Batch* replay) {
  StepLoss loss;
  loss.push_back({"new", [this, &new_data] {
                    if (new_data.size() == 0) return torch::Tensor();
                    auto y = split_.map_labels(new_data.labels).to(device_);
                    auto z = head_logits(features(new_data));
                    if (new_data.sharded()) return new_data.mean_of(torch::cross_entropy_loss(z, y, {}, torch::Reduction::None));
                    return torch::cross_entropy_loss(z, y);
                  }});
  loss.push_back({"replay", [this, replay] {
                    if (!replay || replay->size() == 0) return torch::Tensor();
                    auto y = split_.map_labels(replay->labels).to(device_);
                    auto ce = torch::cross_entropy_loss(head_logits(features(*replay)), y, {}, torch::Reduction::None);
                    return replay->weights.defined() ? replay->weighted_mean_of(ce, replay->weights.to(device_)) : replay->mean_of(ce);
                  }});
  return loss;
}

torch::Tensor LinearProbe::features_of(const torch::Tensor& images_u8, int64_t batch_size) const {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < images_u8.size(0); i += batch_size) {
    Batch b;
    b.images = images_u8.narrow(0, i, std::min(batch_size, images_u8.size(0) - i));
    out.push_back(features(b).to(torch::kCPU, torch::kFloat32));
  }
  if (out.empty()) return torch::zeros({0, cfg_.embed_dim});
  return torch::cat(out);
}

std::vector<TaskScores> LinearProbe::evaluate(const Dataset& test, int64_t tasks_trained, const std::vector<int64_t>& tasks, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  auto feats = [&](const torch::Tensor& images) {
    Batch b;
    b.images = images;
    return features(b);
  };
  return classification_scores(evaluate_tasks(feats, head_w_, head_b_, test, split_, tasks_trained, head_init_rows_, batch_size, tasks));
}

CoresetRows LinearProbe::coreset_rows(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  auto f = sample_features(data, indices, batch_size);  // [N, D]
  auto targets = split_.map_labels(data.labels().index_select(0, indices));
  auto p = torch::softmax(head_logits(f.to(device_)), 1).to(torch::kCPU, torch::kFloat32);
  return {f, p - torch::one_hot(targets, p.size(1)).to(torch::kFloat32)};
}

std::unique_ptr<ExplainedModel> LinearProbe::explained(const SampleBatch&, ExplainTarget) { return std::make_unique<NoEncoderExplained>("linear-probe", num_tokens()); }

torch::Tensor LinearProbe::sample_features(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  for (int64_t i = 0; i < indices.size(0); i += batch_size) out.push_back(features_of(data.images(indices.narrow(0, i, std::min(batch_size, indices.size(0) - i))), batch_size));
  if (out.empty()) return torch::zeros({0, cfg_.embed_dim});
  return torch::cat(out);
}

torch::Tensor LinearProbe::replay_features(const TokenBuffer& buffer, FillMode fill, double rescale, int64_t batch_size) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> out;
  const bool drop = fill == FillMode::Drop;
  for (int64_t i = 0; i < buffer.size(); i += batch_size) {
    auto g = buffer.gather(torch::arange(i, std::min(i + batch_size, buffer.size()), torch::kInt64), !drop, drop);
    Batch b;
    b.images = g.images;
    b.patches = g.patches;
    b.keep.positions = g.positions;
    b.keep.fill = fill;
    b.keep.rescale = rescale;
    out.push_back(features(b).to(torch::kCPU, torch::kFloat32));
  }
  if (out.empty()) return torch::zeros({0, cfg_.embed_dim});
  return torch::cat(out);
}

std::map<std::string, torch::Tensor> LinearProbe::state_tensors() const {
  return {{"patch.weight", proj_w_}, {"patch.bias", proj_b_}, {"pos", pos_}, {"head.weight", head_w_}, {"head.bias", head_b_}};
}

nlohmann::json LinearProbe::state_info() const { return {{"head_classes", head_w_.size(0)}}; }

void LinearProbe::load_state(const nlohmann::json& info, const std::map<std::string, torch::Tensor>& tensors) {
  const int64_t rows = info.at("head_classes").get<int64_t>();
  auto get = [&](const char* name, std::vector<int64_t> shape) {
    auto it = tensors.find(name);
    if (it == tensors.end()) throw_input("the checkpoint lacks linear-probe tensor {}", name);
    if (it->second.sizes() != torch::IntArrayRef(shape)) throw_input("checkpoint tensor {} has the wrong shape", name);
    return it->second.to(device_, torch::kFloat32).clone();
  };
  const int64_t D = cfg_.embed_dim;
  proj_w_ = get("patch.weight", {D, cfg_.patch_dim()});
  proj_b_ = get("patch.bias", {D});
  pos_ = get("pos", {cfg_.num_patches(), D});
  head_w_ = get("head.weight", {rows, D}).requires_grad_(true);
  head_b_ = get("head.bias", {rows}).requires_grad_(true);
}

void LinearProbe::save_weights(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata) const {
  std::vector<SafetensorsTensor> tensors;
  for (const auto& [name, t] : state_tensors()) tensors.push_back({name, t.detach().to(torch::kCPU, torch::kFloat32), ""});
  auto meta = vit_metadata(cfg_);
  meta["cts.learner"] = "linear-probe";
  meta["cts.num_classes"] = std::to_string(head_w_.size(0));
  for (const auto& [k, v] : metadata) meta[k] = v;
  save_safetensors(path, tensors, meta);
}

}  // namespace cts
