// DyTox's network: patch tokens through the shared SABs, the TAB once per task token, an
// independent classifier per task (formulas at the top of the header).
#include "cts/models/dytox.hpp"

#include <cmath>

#include "cts/core/rng.hpp"

namespace cts {
namespace {

void init_linear(torch::nn::Linear& lin, at::Generator& gen) {
  torch::NoGradGuard no_grad;
  lin->weight.copy_(trunc_normal(lin->weight.sizes().vec(), 0.02, gen));
  if (lin->bias.defined()) lin->bias.zero_();
}

}  // namespace

TaskAttentionBlockImpl::TaskAttentionBlockImpl(int64_t dim, int64_t heads_, double mlp_ratio, bool qkv_bias, double ln_eps)
    : heads(heads_), scale(1.0 / std::sqrt(double(dim / heads_))) {
  auto ln = torch::nn::LayerNormOptions({dim}).eps(ln_eps);
  norm1 = register_module("norm1", torch::nn::LayerNorm(ln));
  q = register_module("q", torch::nn::Linear(torch::nn::LinearOptions(dim, dim).bias(qkv_bias)));
  k = register_module("k", torch::nn::Linear(torch::nn::LinearOptions(dim, dim).bias(qkv_bias)));
  v = register_module("v", torch::nn::Linear(torch::nn::LinearOptions(dim, dim).bias(qkv_bias)));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
  norm2 = register_module("norm2", torch::nn::LayerNorm(ln));
  mlp = register_module("mlp", Mlp(dim, static_cast<int64_t>(double(dim) * mlp_ratio)));
}

torch::Tensor TaskAttentionBlockImpl::forward(const torch::Tensor& task, const torch::Tensor& patches, const torch::Tensor& key_valid) {
  const int64_t B = patches.size(0), N = patches.size(1) + 1, D = patches.size(2), dh = D / heads;
  auto u = norm1(torch::cat({task.expand({B, 1, D}), patches}, 1));                 // [B, N, D]
  auto qh = q(u.narrow(1, 0, 1)).view({B, 1, heads, dh}).transpose(1, 2);            // [B, Hd, 1, dh]
  auto kh = k(u).view({B, N, heads, dh}).transpose(1, 2);                            // [B, Hd, N, dh]
  auto vh = v(u).view({B, N, heads, dh}).transpose(1, 2);                            // [B, Hd, N, dh]
  auto scores = torch::matmul(qh, kh.transpose(-2, -1)) * scale;                     // [B, Hd, 1, N]
  if (key_valid.defined()) {
    auto valid = torch::cat({torch::ones({B, 1}, key_valid.options()), key_valid}, 1);  // the task token is always valid
    scores = scores.masked_fill(valid.logical_not().view({B, 1, 1, N}), -std::numeric_limits<float>::infinity());
  }
  auto o = torch::matmul(torch::softmax(scores, -1), vh).transpose(1, 2).reshape({B, 1, D});
  auto c = task.expand({B, 1, D}) + proj(o);  // [B, 1, D]
  return c + mlp->forward(norm2(c));
}

TaskClassifierImpl::TaskClassifierImpl(int64_t dim, int64_t classes, double ln_eps) {
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({dim}).eps(ln_eps)));
  head = register_module("head", torch::nn::Linear(dim, classes));
}

DyToxNetImpl::DyToxNetImpl(const DyToxConfig& config, uint64_t seed) : cfg_(config), seed_(seed) {
  cfg_.vit.validate();
  TORCH_CHECK(cfg_.sab_depth() >= 1, "DyTox needs depth >= 2 (depth - 1 SABs and one TAB), got ", cfg_.vit.depth);
  const auto& v = cfg_.vit;
  const int64_t D = v.embed_dim;
  patch_embed = register_module("patch_embed", PatchEmbed(v.in_chans, D, v.patch_size));
  pos_embed = register_parameter("pos_embed", torch::zeros({1, v.num_patches(), D}));
  sabs = register_module("sabs", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg_.sab_depth(); ++i) sabs->push_back(Block(v));
  tabs = register_module("tabs", torch::nn::ModuleList());
  tabs->push_back(TaskAttentionBlock(D, v.num_heads, v.mlp_ratio, v.qkv_bias, v.ln_eps));
  head = register_module("head", torch::nn::ModuleList());
  task_tokens = register_module("task_tokens", torch::nn::ParameterList());

  torch::NoGradGuard no_grad;
  auto gen = make_generator(seed, "dytox_init");
  pos_embed.copy_(trunc_normal({1, v.num_patches(), D}, 0.02, gen));
  const double bound = 1.0 / std::sqrt(double(v.patch_dim()));
  patch_embed->proj->weight.copy_(torch::rand(patch_embed->proj->weight.sizes(), gen) * (2 * bound) - bound);
  patch_embed->proj->bias.copy_(torch::rand(patch_embed->proj->bias.sizes(), gen) * (2 * bound) - bound);
  for (auto& m : sabs->children()) {
    auto b = std::dynamic_pointer_cast<BlockImpl>(m);
    for (auto* lin : {&b->attn->qkv, &b->attn->proj, &b->mlp->fc1, &b->mlp->fc2}) init_linear(*lin, gen);
  }
  auto tab = std::dynamic_pointer_cast<TaskAttentionBlockImpl>(tabs->ptr(0));
  for (auto* lin : {&tab->q, &tab->k, &tab->v, &tab->proj, &tab->mlp->fc1, &tab->mlp->fc2}) init_linear(*lin, gen);
  mean_ = register_buffer("norm_mean", torch::full({v.in_chans}, 0.5));
  std_ = register_buffer("norm_std", torch::full({v.in_chans}, 0.5));
}

torch::Tensor DyToxNetImpl::normalize(const torch::Tensor& images_u8) const { return normalize_images_u8(images_u8, cfg_.vit, mean_, std_, device()); }

torch::Tensor DyToxNetImpl::normalize_patches(const torch::Tensor& patches_u8) const {
  return normalize_patches_u8(patches_u8, cfg_.vit, mean_, std_, device());
}

std::pair<torch::Tensor, torch::Tensor> DyToxNetImpl::run_sabs(std::pair<torch::Tensor, torch::Tensor> x) {
  for (auto& m : sabs->children()) x.first = std::static_pointer_cast<BlockImpl>(m)->forward(x.first, x.second, nullptr, /*fused=*/false);
  return x;
}

std::pair<torch::Tensor, torch::Tensor> DyToxNetImpl::encode_patches(const torch::Tensor& patches, const torch::Tensor& positions, double rescale) {
  return run_sabs(embed_kept_patches(*patch_embed, pos_embed, patches, positions, rescale));
}

std::pair<torch::Tensor, torch::Tensor> DyToxNetImpl::encode(const torch::Tensor& x, const TokenKeep* keep) {
  return run_sabs(embed_patch_tokens(*patch_embed, pos_embed, cfg_.vit, x, keep));
}

DyToxOutput DyToxNetImpl::decode(const torch::Tensor& tokens, const torch::Tensor& key_valid, bool divergence) {
  TORCH_CHECK(num_tasks() > 0, "DyTox has no task yet (add_task first)");
  std::vector<torch::Tensor> logits, embeddings;
  for (size_t i = 0; i < task_tokens->size(); ++i) {
    auto e = embed(tokens, key_valid, task_tokens->at(i));  // [B, D]
    embeddings.push_back(e);
    logits.push_back(std::static_pointer_cast<TaskClassifierImpl>(head->ptr(int64_t(i)))->forward(e));
  }
  DyToxOutput out;
  out.logits = torch::cat(logits, 1);
  out.embeddings = torch::stack(embeddings, 1);
  if (divergence && !head_div.is_empty()) out.divergence = head_div->forward(embeddings.back());
  return out;
}

torch::Tensor DyToxNetImpl::embed(const torch::Tensor& tokens, const torch::Tensor& key_valid, const torch::Tensor& task_token) {
  return std::static_pointer_cast<TaskAttentionBlockImpl>(tabs->ptr(0))->forward(task_token, tokens, key_valid).squeeze(1);
}

DyToxNetImpl::TaskInit DyToxNetImpl::draw_task(int64_t t, int64_t classes) const {
  TORCH_CHECK(classes >= 1, "a task needs at least one class");
  const int64_t D = cfg_.vit.embed_dim;
  torch::NoGradGuard no_grad;
  auto gen = make_generator(seed_, "dytox_task", {t});
  TaskInit init;
  init.token = trunc_normal({1, 1, D}, 0.02, gen).to(device());
  init.classifier = TaskClassifier(D, classes, cfg_.vit.ln_eps);
  init_linear(init.classifier->head, gen);
  init.classifier->to(device());
  if (t >= 1) {
    init.divergence = TaskClassifier(D, classes + 1, cfg_.vit.ln_eps);
    init_linear(init.divergence->head, gen);
    init.divergence->to(device());
  }
  return init;
}

void DyToxNetImpl::add_task(int64_t classes) {
  const int64_t t = num_tasks();
  auto init = draw_task(t, classes);
  torch::NoGradGuard no_grad;
  task_tokens->append(t >= 1 && cfg_.copy_task_token ? task_tokens->at(size_t(t - 1)).detach().clone() : init.token);
  head->push_back(init.classifier);
  if (t >= 1) head_div = !head_div.is_empty() ? replace_module("head_div", init.divergence) : register_module("head_div", init.divergence);
  task_sizes_.push_back(classes);
}

int64_t DyToxNetImpl::num_classes() const {
  int64_t n = 0;
  for (int64_t c : task_sizes_) n += c;
  return n;
}

std::map<std::string, torch::Tensor> DyToxNetImpl::state() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : named_parameters()) out[p.key()] = p.value();
  return out;
}

}  // namespace cts
