// MAE-style pretraining learner; the formulas are in learners/mae/mae.hpp.
#include "cts/learners/mae/mae.hpp"

#include <fmt/format.h>

#include <array>

#include "cts/attribution/token_selector.hpp"
#include "cts/core/console.hpp"
#include "cts/core/error.hpp"
#include "cts/core/rng.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/core/threads.hpp"
#include "cts/data/patches.hpp"
#include "cts/eval/evaluate.hpp"
#include "cts/memory/token_buffer.hpp"

namespace cts {

torch::Tensor mae_targets(const torch::Tensor& images, int64_t patch, bool norm_pix) {
  const int64_t B = images.size(0), C = images.size(1), gh = images.size(2) / patch, gw = images.size(3) / patch;
  auto t = images.reshape({B, C, gh, patch, gw, patch}).permute({0, 2, 4, 1, 3, 5}).reshape({B, gh * gw, C * patch * patch});
  if (!norm_pix) return t;
  auto mean = t.mean(-1, /*keepdim=*/true);
  auto var = t.var(-1, /*unbiased=*/false, /*keepdim=*/true);
  return (t - mean) / (var + 1e-6).sqrt();
}

torch::Tensor mae_sample_losses(const torch::Tensor& pred, const torch::Tensor& target, const torch::Tensor& dropped) {
  auto per_patch = (pred - target).pow(2).mean(-1);  // [B, T]
  auto m = dropped.to(per_patch.dtype());
  return (per_patch * m).sum(1) / m.sum(1).clamp_min(1.0);
}

namespace {

[[noreturn]] void no_memory(const char* what) {
  throw_input("model.learner mae is a pretraining learner: it keeps no memory ({} needs classes); use memory.strategy: none", what);
}

}  // namespace

MaskedAutoencoder::MaskedAutoencoder(const LearnerContext& ctx)
    : device_(ctx.device), split_(ctx.split), settings_(ctx.settings.mae), seed_(ctx.seed), mask_ratio_(ctx.token_drop) {
  if (ctx.memory_strategy != "none")
    throw_input("model.learner mae pretrains without labels and replays nothing: memory.strategy = {} (accepted: none)", ctx.memory_strategy);
  if (!(ctx.token_drop > 0.0 && ctx.token_drop < 1.0))
    throw_input("model.learner mae reconstructs the dropped patches: train.token_drop = {} drops none; set the mask ratio, e.g. train.token_drop: 0.75 "
                "(accepted: (0, 1))",
                ctx.token_drop);
  cfg_ = vit_config_for_data(ctx.model, ctx.data.train->shape(), ctx.dataset, 1);
  encoder_ = VisionTransformer(cfg_, ctx.seed);
  encoder_->set_attention_mode(ctx.model.attention);
  if (!ctx.model.weights.empty()) {
    notes_ = load_vit_weights(encoder_, ctx.model.weights).notes;
    Console::get().info("loaded {}", ctx.model.weights);
  }
  const int64_t heads = settings_.decoder_heads;
  int64_t dd = settings_.decoder_dim;
  if (dd == 0) dd = std::max<int64_t>(heads, (cfg_.embed_dim / 2) / heads * heads);
  if (dd % heads != 0) throw_input("mae.decoder_dim = {} is not a multiple of mae.decoder_heads = {}", dd, heads);
  ViTConfig dec = cfg_;
  dec.embed_dim = dd;
  dec.num_heads = heads;
  dec.depth = settings_.decoder_depth;
  const int64_t T = cfg_.num_patches();
  // Seeded initialisation of its own stream (the encoder's is the ViT's): trunc-normal 0.02
  // for the mask token and positions, the Linear/LayerNorm defaults for the rest.
  torch::manual_seed(derive_seed(ctx.seed, "mae_decoder"));
  dec_embed_ = decoder_.register_module("embed", torch::nn::Linear(cfg_.embed_dim, dd));
  dec_blocks_ = decoder_.register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < dec.depth; ++i) dec_blocks_->push_back(Block(dec));
  dec_norm_ = decoder_.register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dd}).eps(cfg_.ln_eps)));
  dec_pred_ = decoder_.register_module("pred", torch::nn::Linear(dd, cfg_.patch_dim()));
  auto gen = make_generator(ctx.seed, "mae_decoder_tokens");
  mask_token_ = decoder_.register_parameter("mask_token", (torch::randn({1, 1, dd}, gen) * 0.02).clamp(-0.04, 0.04));
  dec_pos_ = decoder_.register_parameter("pos_embed", (torch::randn({1, 1 + T, dd}, gen) * 0.02).clamp(-0.04, 0.04));
  encoder_->to(device_);
  decoder_.to(device_);
}

std::vector<MetricSpec> MaskedAutoencoder::metrics() const {
  MetricSpec r2;
  r2.name = "masked_r2";
  r2.title = "masked-patch R²";
  r2.percent = false;
  return {r2};
}

std::vector<std::pair<std::string, torch::Tensor>> MaskedAutoencoder::decoder_parameters() const { return prefixed_parameters(decoder_, "decoder."); }

std::vector<std::pair<std::string, torch::Tensor>> MaskedAutoencoder::encoder_parameters() const { return encoder_parameters_without_head(encoder_); }

std::vector<std::pair<std::string, torch::Tensor>> MaskedAutoencoder::trainable_parameters() {
  auto out = encoder_parameters();
  for (auto& p : decoder_parameters()) out.push_back(p);
  return out;
}

int64_t MaskedAutoencoder::parameter_count() const {
  int64_t n = 0;
  for (const auto& [name, t] : encoder_parameters()) n += t.numel();
  for (const auto& [name, t] : decoder_parameters()) n += t.numel();
  return n;
}

bool MaskedAutoencoder::set_training(bool training) {
  const bool was = training_;
  training_ = training;
  encoder_->train(training);
  decoder_.train(training);
  return was;
}

std::pair<torch::Tensor, torch::Tensor> MaskedAutoencoder::reconstruct(const torch::Tensor& images_u8, const torch::Tensor& positions) {
  const int64_t B = images_u8.size(0), T = cfg_.num_patches();
  TokenKeep keep;
  keep.positions = positions;
  keep.fill = FillMode::Drop;  // the encoder sees the kept patches only
  auto [tokens, valid] = encoder_->embed(encoder_->normalize(images_u8), &keep);
  auto z = encoder_->encode(tokens, valid, nullptr);  // [B, 1 + K, D]
  auto u = dec_embed_(z);                             // [B, 1 + K, D_d]
  const int64_t dd = u.size(2);
  // Kept tokens to their grid places; padding (-1) to a spare slot T that is cut off after.
  auto pos = positions.to(device_);
  auto slot = torch::where(pos >= 0, pos, torch::full_like(pos, T));
  auto grid = torch::zeros({B, T + 1, dd}, u.options()).scatter(1, slot.unsqueeze(-1).expand({B, slot.size(1), dd}), u.narrow(1, 1, u.size(1) - 1));
  auto kept = torch::zeros({B, T + 1}, torch::TensorOptions().dtype(torch::kBool).device(device_)).scatter(1, slot, true).narrow(1, 0, T);
  auto g = torch::where(kept.unsqueeze(-1), grid.narrow(1, 0, T), mask_token_.expand({B, T, dd}));
  auto x = torch::cat({u.narrow(1, 0, 1), g}, 1) + dec_pos_;
  for (auto& m : dec_blocks_->children()) x = std::static_pointer_cast<BlockImpl>(m)->forward(x, {}, nullptr, false);
  auto y = dec_pred_(dec_norm_(x).narrow(1, 1, T));  // [B, T, C·p²]
  return {y, kept.logical_not()};
}

StepLoss MaskedAutoencoder::step_loss(int64_t, const Batch& new_data, const Batch*) {
  StepLoss loss;
  loss.push_back({"reconstruction", [this, &new_data] {
                    if (new_data.size() == 0) return torch::Tensor();
                    if (!new_data.partial() || !new_data.images.defined())
                      throw_run("model.learner mae got a batch without dropped tokens (train.full_image_share shows whole images; use 0)");
                    auto [y, dropped] = reconstruct(new_data.images, new_data.keep.positions);
                    auto target = mae_targets(encoder_->normalize(new_data.images), cfg_.patch_size, settings_.norm_pix_loss);
                    return new_data.mean_of(mae_sample_losses(y.to(torch::kFloat32), target, dropped));
                  }});
  return loss;
}

std::vector<TaskScores> MaskedAutoencoder::evaluate(const Dataset& test, int64_t tasks_trained, const std::vector<int64_t>& tasks, int64_t batch_size) {
  (void)tasks_trained;
  const bool was = set_training(false);
  torch::NoGradGuard no_grad;
  const int64_t T = cfg_.num_patches(), kept = tokens_kept(1.0 - mask_ratio_, T);
  std::vector<TaskScores> out(static_cast<size_t>(split_.num_tasks()), TaskScores{{"masked_r2", NAN}});
  for (int64_t t : tasks) {
    const auto idx = split_.task_indices(test, t);
    const int64_t n = idx.size(0), batches = (n + batch_size - 1) / batch_size;
    if (n == 0) continue;
    // Per batch: Σ err², Σ x̂, Σ x̂², count over the dropped patches' values.
    std::vector<std::array<double, 4>> sums(static_cast<size_t>(batches));
    parallel_jobs(batches, [&](int64_t k) {
      torch::NoGradGuard ng;
      const auto ids = idx.narrow(0, k * batch_size, std::min(batch_size, n - k * batch_size));
      const auto images = test.images(ids);
      const auto positions = top_tokens(token_tie_keys(ids, T, derive_seed(seed_, "mae_eval_mask")), kept);
      auto [y, dropped] = reconstruct(images, positions);
      auto target = mae_targets(encoder_->normalize(images), cfg_.patch_size, settings_.norm_pix_loss).to(torch::kFloat64);
      auto m = dropped.unsqueeze(-1).expand_as(target).to(torch::kFloat64);
      auto err = (y.to(torch::kFloat64) - target).pow(2);
      sums[size_t(k)] = {(err * m).sum().item<double>(), (target * m).sum().item<double>(), (target.pow(2) * m).sum().item<double>(),
                         m.sum().item<double>()};
    });
    double e = 0, s1 = 0, s2 = 0, cnt = 0;
    for (const auto& s : sums) e += s[0], s1 += s[1], s2 += s[2], cnt += s[3];
    const double ss = s2 - s1 * s1 / std::max(cnt, 1.0);
    out[size_t(t)]["masked_r2"] = ss > 0 ? 1.0 - e / ss : NAN;
  }
  set_training(was);
  return out;
}

std::map<std::string, torch::Tensor> MaskedAutoencoder::state_tensors() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, t] : encoder_->state()) out[name] = t;
  for (const auto& [name, t] : decoder_parameters()) out[name] = t;
  return out;
}

void MaskedAutoencoder::load_state(const nlohmann::json&, const std::map<std::string, torch::Tensor>& tensors) {
  copy_named_tensors(state_tensors(), tensors, "mae checkpoint");
}

void MaskedAutoencoder::save_weights(const std::filesystem::path& path, const std::map<std::string, std::string>& metadata) const {
  // The encoder alone, timm names, no head: what the vit-classifier's model.weights loads.
  std::vector<SafetensorsTensor> tensors;
  for (const auto& [name, t] : encoder_parameters()) tensors.push_back({name, t.detach().to(torch::kCPU, torch::kFloat32).contiguous(), ""});
  auto meta = vit_metadata(cfg_);
  meta.erase("cts.num_classes");
  meta["cts.pretraining"] = fmt::format("mae (mask ratio {}, decoder {} x {}, norm_pix_loss {})", mask_ratio_, settings_.decoder_depth,
                                        dec_embed_->weight.size(0), settings_.norm_pix_loss);
  for (const auto& [k, v] : metadata) meta[k] = v;
  save_safetensors(path, tensors, meta);
}

CoresetRows MaskedAutoencoder::coreset_rows(const Dataset&, const torch::Tensor&, int64_t) { no_memory("a coreset's gradient rows"); }
std::unique_ptr<ExplainedModel> MaskedAutoencoder::explained(const SampleBatch&, ExplainTarget) { no_memory("token attribution"); }
torch::Tensor MaskedAutoencoder::replay_features(const TokenBuffer&, FillMode, double, int64_t) { no_memory("replay features"); }

torch::Tensor MaskedAutoencoder::sample_features(const Dataset& data, const torch::Tensor& indices, int64_t batch_size) {
  // The encoder's CLS features of whole images (what a probe on the pretrained backbone reads).
  return extract_features(encoder_, data, indices, batch_size);
}

}  // namespace cts
