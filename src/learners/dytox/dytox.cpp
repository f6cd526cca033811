// The DyTox learner: task tokens over shared SABs, the loss (1 − α)·L_clf + α·L_kd + λ·L_div,
// balanced finetuning, class-IL and task-IL scores (formulas at the top of the header).
#include "cts/learners/dytox/dytox.hpp"

#include <fmt/format.h>

#include <cmath>

#include "cts/core/error.hpp"
#include "cts/core/rng.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/core/threads.hpp"
#include "cts/eval/evaluate.hpp"

namespace cts {
namespace {

DyToxNet build_net(const LearnerContext& ctx) {
  if (!ctx.model.weights.empty()) {
    throw_input("model.weights = '{}': the dytox learner starts from a random initialisation (timm ViT weights have no task-attention "
                "block); remove model.weights or use model.learner: vit-classifier",
                ctx.model.weights);
  }
  DyToxConfig cfg;
  cfg.copy_task_token = ctx.settings.dytox.task_token_init == "copy";
  cfg.vit = vit_config_for_data(ctx.model, ctx.data.train->shape(), ctx.dataset, ctx.split.classes_per_task);
  if (cfg.vit.depth < 2) throw_input("model.depth = {}: dytox needs at least 2 blocks (depth - 1 self-attention blocks and one task-attention block)", cfg.vit.depth);
  return DyToxNet(cfg, ctx.seed);
}

// A structural copy of `net` with the same tasks and the same tensor values, frozen, eval mode.
DyToxNet copy_net(const DyToxNet& net, uint64_t seed, const torch::Device& device) {
  DyToxNet out(net->config(), seed);
  for (int64_t c : net->task_classes()) out->add_task(c);
  out->to(device);
  torch::NoGradGuard no_grad;
  const auto src = net->state();
  for (auto& p : out->named_parameters()) p.value().copy_(src.at(p.key()));
  for (auto& p : out->parameters()) p.set_requires_grad(false);
  out->eval();
  return out;
}

// Binary cross-entropy with logits against soft targets, summed over samples and classes.
torch::Tensor bce_sum(const torch::Tensor& logits, const torch::Tensor& targets, const torch::Tensor& row_weights) {
  auto l = torch::binary_cross_entropy_with_logits(logits, targets, {}, {}, torch::Reduction::None).sum(1);  // [B]
  return row_weights.defined() ? (l * row_weights).sum() : l.sum();
}

// Beta(a, a) from two standard gammas drawn with `gen`.
double sample_beta(double a, at::Generator& gen) {
  auto conc = torch::full({2}, a, torch::kFloat64);
  auto g = at::_standard_gamma(conc, gen);
  const double x = g[0].item<double>(), y = g[1].item<double>();
  return x + y > 0 ? x / (x + y) : 0.5;
}

}  // namespace

DyTox::DyTox(const LearnerContext& ctx) : split_(ctx.split), device_(ctx.device), settings_(ctx.settings.dytox), net_(build_net(ctx)), seed_(ctx.seed) {
  net_->to(device_);
}

std::vector<MetricSpec> DyTox::metrics() const { return classification_metrics(); }

double DyTox::alpha(int64_t task) const {
  if (task <= 0) return 0.0;
  return double(split_.classes_seen_after(task - 1)) / double(split_.classes_seen_after(task));
}

// Trainable during task t: everything but the old task tokens and old classifiers (the
// original's freeze_task); during the balanced finetuning: everything but the patch embedding,
// positions, SABs (the original's freeze_ft: sab) and the divergence head (not used then).
void DyTox::set_trainable(bool finetune) {
  const int64_t t = net_->num_tasks() - 1;
  for (auto& p : net_->named_parameters()) {
    const std::string& k = p.key();
    bool train;
    if (finetune) train = !(k.rfind("sabs.", 0) == 0 || k.rfind("patch_embed.", 0) == 0 || k == "pos_embed" || k.rfind("head_div.", 0) == 0);
    else if (k.rfind("task_tokens.", 0) == 0) train = std::stoll(k.substr(12)) == t;
    else if (k.rfind("head.", 0) == 0) train = std::stoll(k.substr(5, k.find('.', 5) - 5)) == t;
    else train = true;  // sabs, patch_embed, pos_embed, tabs, head_div
    p.value().set_requires_grad(train);
  }
}

std::vector<std::pair<std::string, torch::Tensor>> DyTox::trainable_parameters() {
  std::vector<std::pair<std::string, torch::Tensor>> named;
  for (const auto& p : net_->named_parameters())
    if (p.value().requires_grad()) named.emplace_back(p.key(), p.value());
  return named;
}

// The parameters at test time: the divergence head (training only) is not counted.
int64_t DyTox::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : net_->named_parameters())
    if (p.key().rfind("head_div.", 0) != 0) n += p.value().numel();
  return n;
}

void DyTox::begin_task(int64_t task) {
  if (task != net_->num_tasks()) throw_run("dytox: task {} begins with {} task tokens", task, net_->num_tasks());
  if (task >= 1) teacher_ = copy_net(net_, seed_, device_);
  net_->add_task(int64_t(split_.task_classes.at(size_t(task)).size()));
  net_->train(training_);
  set_trainable(false);
}

torch::Tensor DyTox::targets_of(const torch::Tensor& labels) const { return split_.map_labels(labels).to(device_); }

DyToxOutput DyTox::forward(DyToxNet& net, const Batch& b, bool divergence, const torch::Tensor& mixed) {
  std::pair<torch::Tensor, torch::Tensor> x;
  if (b.patches.defined()) x = net->encode_patches(net->normalize_patches(b.patches), b.keep.positions, b.keep.rescale);
  else x = net->encode(mixed.defined() ? mixed : net->normalize(b.images), b.partial() ? &b.keep : nullptr);
  return net->decode(x.first, x.second, divergence);
}

torch::Tensor DyTox::part_loss(int64_t task, const Batch& b, int64_t total, bool finetune, bool mix) {
  const int64_t B = b.size();
  if (B == 0) return torch::Tensor();
  const int64_t C = net_->num_classes(), new_classes = net_->task_classes().back(), old_classes = C - new_classes;
  auto y = targets_of(b.labels);
  auto onehot = torch::one_hot(y, C).to(torch::kFloat32);
  // MixUp of the new data (DyTox+): pairs (i, perm(i)) with one λ per batch, soft targets.
  torch::Tensor mixed, perm;
  double lam = 1.0;
  if (mix && settings_.mixup_alpha > 0.0 && !b.patches.defined()) {
    auto gen = make_generator(b.stream, "dytox_mixup");
    lam = sample_beta(settings_.mixup_alpha, gen);
    perm = torch::randperm(B, gen, torch::kInt64).to(device_);
    auto x = net_->normalize(b.images);
    mixed = x * lam + x.index_select(0, perm) * (1.0 - lam);
    onehot = onehot * lam + onehot.index_select(0, perm) * (1.0 - lam);
  }
  // Replay rows weighted by their coreset weights, normalised to mean 1 within the part.
  torch::Tensor w;
  if (b.weights.defined()) w = (b.weights.to(device_, torch::kFloat32) * (double(B) / b.weights.sum().item<double>()));

  const bool div = !finetune && settings_.divergence_weight > 0.0 && task >= 1;
  auto out = forward(net_, b, div, mixed);
  auto logits = out.logits.to(torch::kFloat32);
  const double n = double(total);
  const double a = finetune ? 0.0 : alpha(task);
  auto loss = bce_sum(logits, onehot, w) * ((1.0 - a) / (n * double(C)));
  if (!finetune && !teacher_.is_empty() && old_classes > 0) {
    torch::Tensor z_old;
    {
      torch::NoGradGuard no_grad;
      z_old = forward(teacher_, b, false, mixed).logits.to(torch::kFloat32);  // [B, old classes]
    }
    const double tau = settings_.kd_temperature;
    auto log_p = torch::log_softmax(logits.narrow(1, 0, old_classes) / tau, 1);
    auto log_q = torch::log_softmax(z_old / tau, 1);
    auto kl = (log_q.exp() * (log_q - log_p)).sum(1);  // [B] KL(teacher ‖ student)
    if (w.defined()) kl = kl * w;
    loss = loss + kl.sum() * (a * tau * tau / (n * double(old_classes)));
  }
  if (div && out.divergence.defined()) {
    // Targets: 0 for a sample of an old class, 1 + j for the new task's class j.
    auto d = (y - old_classes + 1).clamp_min(0);
    auto donehot = torch::one_hot(d, new_classes + 1).to(torch::kFloat32);
    if (perm.defined()) donehot = donehot * lam + donehot.index_select(0, perm) * (1.0 - lam);
    loss = loss + bce_sum(out.divergence.to(torch::kFloat32), donehot, w) * (settings_.divergence_weight / (n * double(new_classes + 1)));
  }
  return loss;
}

StepLoss DyTox::step_loss(int64_t task, const Batch& new_data, const Batch* replay) {
  const int64_t total = new_data.total_size() + (replay ? replay->total_size() : 0);
  StepLoss loss;
  loss.push_back({"new", [this, task, &new_data, total] { return part_loss(task, new_data, total, false, /*mix=*/true); }});
  loss.push_back({"replay", [this, task, replay, total] { return replay ? part_loss(task, *replay, total, false, false) : torch::Tensor(); }});
  return loss;
}

std::optional<FinetunePhase> DyTox::finetune_phase(int64_t task) {
  if (task < 1 || settings_.finetune_epochs <= 0) return std::nullopt;
  return FinetunePhase{settings_.finetune_epochs, settings_.finetune_lr};
}

void DyTox::begin_finetune(int64_t) {
  finetuning_ = true;
  set_trainable(true);
}

StepLoss DyTox::finetune_loss(int64_t task, const Batch& new_data, const Batch* memory) {
  const int64_t total = new_data.total_size() + (memory ? memory->total_size() : 0);
  StepLoss loss;
  loss.push_back({"new", [this, task, &new_data, total] { return part_loss(task, new_data, total, true, /*mix=*/true); }});
  loss.push_back({"replay", [this, task, memory, total] { return memory ? part_loss(task, *memory, total, true, false) : torch::Tensor(); }});
  return loss;
}

void DyTox::end_finetune(int64_t) {
  finetuning_ = false;
  set_trainable(false);
}

bool DyTox::set_training(bool training) {
  const bool was = training_;
  training_ = training;
  net_->train(training);
  return was;
}

// ------------------------------------------------------------------ evaluation

std::vector<TaskScores> DyTox::evaluate(const Dataset& test, int64_t tasks_trained, const std::vector<int64_t>& tasks, int64_t batch_size) {
  const int64_t T = split_.num_tasks();
  std::vector<TaskAccuracy> acc(static_cast<size_t>(T));
  if (tasks_trained != net_->num_tasks()) throw_run("dytox: evaluating after {} tasks with {} task tokens", tasks_trained, net_->num_tasks());
  const bool was = set_training(false);
  // Tasks not trained yet: the token and classifier they will start from (draw_task).
  std::map<int64_t, DyToxNetImpl::TaskInit> preview;
  for (int64_t j : tasks) {
    if (j < tasks_trained) continue;
    auto init = net_->draw_task(j, int64_t(split_.task_classes.at(size_t(j)).size()));
    if (j >= 1 && tasks_trained >= 1 && net_->config().copy_task_token) init.token = net_->task_tokens->at(size_t(tasks_trained - 1)).detach();
    init.classifier->eval();
    preview[j] = init;
  }
  for (int64_t j : tasks) {
    const auto idx = split_.task_indices(test, j);
    const int64_t n = idx.size(0), batches = (n + batch_size - 1) / batch_size;
    const auto y = split_.map_labels(test.labels().index_select(0, idx));
    const int64_t lo = j * split_.classes_per_task, width = int64_t(split_.task_classes.at(size_t(j)).size());
    std::vector<int64_t> class_hits(size_t(batches), 0), task_hits(size_t(batches), 0);
    parallel_jobs(batches, [&](int64_t k) {
      torch::InferenceMode inference;
      const int64_t i = k * batch_size, b = std::min(batch_size, n - i);
      auto x = net_->encode(net_->normalize(test.images(idx.narrow(0, i, b))), nullptr);
      auto yb = y.narrow(0, i, b).to(device_);
      if (j < tasks_trained) {
        auto z = net_->decode(x.first, x.second, false).logits;
        class_hits[size_t(k)] = (z.argmax(1) == yb).sum().item<int64_t>();
        task_hits[size_t(k)] = (z.narrow(1, lo, width).argmax(1) == yb - lo).sum().item<int64_t>();
      } else {
        auto init = preview.at(j);  // a holder copy: forward() is not const
        auto z = init.classifier->forward(net_->embed(x.first, x.second, init.token));
        task_hits[size_t(k)] = (z.argmax(1) == yb - lo).sum().item<int64_t>();
      }
    });
    int64_t ch = 0, th = 0;
    for (int64_t k = 0; k < batches; ++k) ch += class_hits[size_t(k)], th += task_hits[size_t(k)];
    auto& a = acc[size_t(j)];
    a.samples = n;
    if (n > 0) {
      a.task_il = double(th) / double(n);
      if (j < tasks_trained) a.class_il = double(ch) / double(n);
    }
  }
  set_training(was);
  return classification_scores(acc);
}

// ------------------------------------------------------------------ memory-model side

// e of every task token, concatenated [B, t·D] (what the classifiers read), on full inputs.
CoresetRows DyTox::coreset_rows(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) {
  const int64_t n = indices.size(0), batches = (n + batch_size - 1) / batch_size, C = net_->num_classes();
  if (n == 0) return {torch::zeros({0, net_->num_tasks() * net_->config().vit.embed_dim}), torch::zeros({0, C})};
  const auto targets = split_.map_labels(data.labels().index_select(0, indices));
  const bool was = set_training(false);
  std::vector<torch::Tensor> grads(static_cast<size_t>(batches)), feats(static_cast<size_t>(batches));
  parallel_jobs(batches, [&](int64_t k) {
    torch::InferenceMode inference;
    const int64_t i = k * batch_size, b = std::min(batch_size, n - i);
    auto x = net_->encode(net_->normalize(data.images(indices.narrow(0, i, b))), nullptr);
    auto out = net_->decode(x.first, x.second, false);
    auto p = torch::sigmoid(out.logits).to(torch::kCPU, torch::kFloat32);
    grads[size_t(k)] = p - torch::one_hot(targets.narrow(0, i, b), C).to(torch::kFloat32);
    feats[size_t(k)] = out.embeddings.flatten(1).to(torch::kCPU, torch::kFloat32);
  });
  set_training(was);
  return {torch::cat(feats), torch::cat(grads)};
}

std::unique_ptr<ExplainedModel> DyTox::explained(const SampleBatch&, ExplainTarget) { return std::make_unique<NoEncoderExplained>("dytox", num_tokens()); }

torch::Tensor DyTox::sample_features(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) {
  return coreset_rows(data, indices, batch_size).features;
}

torch::Tensor DyTox::replay_features(const TokenBuffer& buffer, FillMode fill, double rescale, int64_t batch_size) {
  const int64_t n = buffer.size(), batches = (n + batch_size - 1) / batch_size;
  if (n == 0) return torch::zeros({0, net_->num_tasks() * net_->config().vit.embed_dim});
  const bool drop = fill == FillMode::Drop, was = set_training(false);
  std::vector<torch::Tensor> out(static_cast<size_t>(batches));
  parallel_jobs(batches, [&](int64_t k) {
    torch::InferenceMode inference;
    const int64_t i = k * batch_size, b = std::min(batch_size, n - i);
    auto g = buffer.gather(torch::arange(i, i + b, torch::kInt64), !drop, drop);
    TokenKeep keep;
    keep.positions = g.positions;
    keep.fill = fill;
    keep.rescale = rescale;
    auto x = drop ? net_->encode_patches(net_->normalize_patches(g.patches), g.positions, rescale) : net_->encode(net_->normalize(g.images), &keep);
    out[size_t(k)] = net_->decode(x.first, x.second, false).embeddings.flatten(1).to(torch::kCPU, torch::kFloat32);
  });
  set_training(was);
  return torch::cat(out);
}

// ------------------------------------------------------------------ checkpoints and outputs

std::map<std::string, torch::Tensor> DyTox::state_tensors() const {
  auto out = net_->state();
  if (!teacher_.is_empty())
    for (const auto& [k, v] : teacher_->state()) out["teacher." + k] = v;
  return out;
}

nlohmann::json DyTox::state_info() const { return {{"task_classes", net_->task_classes()}, {"teacher", !teacher_.is_empty()}}; }

void DyTox::load_state(const nlohmann::json& info, const std::map<std::string, torch::Tensor>& tensors) {
  const auto sizes = info.at("task_classes").get<std::vector<int64_t>>();
  if (int64_t(sizes.size()) > split_.num_tasks()) throw_input("the checkpoint's dytox model has {} task tokens; the run has {} tasks", sizes.size(), split_.num_tasks());
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] != int64_t(split_.task_classes[i].size())) throw_input("the checkpoint's dytox task {} has {} classes; the run's has {}", i, sizes[i], split_.task_classes[i].size());
  }
  if (net_->num_tasks() > int64_t(sizes.size())) throw_run("dytox: loading {} tasks into a model of {}", sizes.size(), net_->num_tasks());
  while (net_->num_tasks() < int64_t(sizes.size())) net_->add_task(sizes[size_t(net_->num_tasks())]);
  net_->to(device_);
  auto load_into = [&](DyToxNet& net, const std::string& prefix) {
    torch::NoGradGuard no_grad;
    for (auto& p : net->named_parameters()) {
      auto it = tensors.find(prefix + p.key());
      if (it == tensors.end()) throw_input("the checkpoint lacks model tensor {}{}", prefix, p.key());
      if (it->second.sizes() != p.value().sizes()) throw_input("checkpoint tensor {}{} has the wrong shape", prefix, p.key());
      p.value().copy_(it->second);
    }
  };
  load_into(net_, "");
  teacher_ = nullptr;
  if (info.at("teacher").get<bool>()) {
    DyToxNet teacher(net_->config(), seed_);
    for (size_t i = 0; i + 1 < sizes.size(); ++i) teacher->add_task(sizes[i]);
    teacher->to(device_);
    load_into(teacher, "teacher.");
    for (auto& p : teacher->parameters()) p.set_requires_grad(false);
    teacher->eval();
    teacher_ = teacher;
  }
  if (net_->num_tasks() > 0) set_trainable(false);
}

void DyTox::save_weights(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata) const {
  std::vector<SafetensorsTensor> tensors;
  for (const auto& [name, t] : net_->state()) tensors.push_back({name, t.detach().to(torch::kCPU, torch::kFloat32), ""});
  auto meta = vit_metadata(net_->config().vit);
  meta["cts.learner"] = "dytox";
  meta["cts.task_classes"] = fmt::format("{}", fmt::join(net_->task_classes(), ","));
  meta["cts.dytox_sabs"] = std::to_string(net_->config().sab_depth());
  for (const auto& [k, v] : metadata) meta[k] = v;
  save_safetensors(path, tensors, meta);
}

}  // namespace cts
