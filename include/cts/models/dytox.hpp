// DyTox's network (Douillard, Ramé, Couairon, Cord, CVPR 2022, "DyTox: Transformers for
// continual learning with dynamic token expansion"): a shared encoder of self-attention blocks
// (SABs) over the patch tokens, one task-attention block (TAB) run once per task token, and an
// independent classifier per task.
//
//   x_L = SAB_L ∘ … ∘ SAB_1(patch_embed(x) + pos)                 [B, T, D]  (no class token)
//   z_i = [θ_i, x_L]                                              [B, 1 + T, D]
//   TAB (CaiT's class attention with the task token as the class token):
//     u = norm1(z_i);  Q = W_q u_0,  K = W_k u,  V = W_v u         (query: the task token only)
//     c' = θ_i + W_o softmax(Q Kᵀ / √dh) V + b_o                   [B, 1, D]
//     e_i = c' + MLP(norm2(c'))                                    [B, D]  (patch tokens unchanged)
//   logits_i = Clf_i(e_i) = W_i norm_i(e_i) + b_i                  [B, |C_i|]
//   all logits = [logits_1, …, logits_t] (sigmoid outputs, binary cross-entropy)
//   divergence head (training only): W_div norm_div(e_t) + b_div    [B, 1 + |C_t|]: "old" + new classes
//
// Differences from the original: the SABs are timm ViT blocks (the original's first blocks
// are ConViT GPSA blocks); the SAB / TAB split of a preset is depth − 1 SABs and 1 TAB; no
// stochastic depth. Parameter names follow the original's code (sabs, tabs, task_tokens,
// head.i.{norm, head}, head_div). Shapes: B batch, T patch tokens, K kept tokens, D width,
// Hd heads, dh = D / Hd.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "cts/models/vit.hpp"

namespace cts {

// The task-attention block: the task token attends to itself and the patch tokens; only the
// task token is updated.
struct TaskAttentionBlockImpl : torch::nn::Module {
  TaskAttentionBlockImpl(int64_t dim, int64_t heads, double mlp_ratio, bool qkv_bias, double ln_eps);
  // task [B, 1, D], patches [B, N, D], key_valid [B, N] bool or undefined -> the new task token [B, 1, D].
  torch::Tensor forward(const torch::Tensor& task, const torch::Tensor& patches, const torch::Tensor& key_valid);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  torch::nn::Linear q{nullptr}, k{nullptr}, v{nullptr}, proj{nullptr};
  Mlp mlp{nullptr};
  int64_t heads;
  double scale;
};
TORCH_MODULE(TaskAttentionBlock);

// LayerNorm + Linear: a task's classifier (and the divergence head).
struct TaskClassifierImpl : torch::nn::Module {
  TaskClassifierImpl(int64_t dim, int64_t classes, double ln_eps);
  torch::Tensor forward(const torch::Tensor& e) { return head(norm(e)); }
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(TaskClassifier);

struct DyToxConfig {
  ViTConfig vit;            // patch geometry, width, heads, MLP ratio; vit.depth = SABs + 1 TAB
  bool copy_task_token = false;  // a new task token: the previous one's copy (else trunc-normal, the original code)
  int64_t sab_depth() const { return vit.depth - 1; }
};

struct DyToxOutput {
  torch::Tensor logits;      // [B, Σ_i |C_i|] every task's classifier, task after task
  torch::Tensor embeddings;  // [B, tasks, D] e_i
  torch::Tensor divergence;  // [B, 1 + |C_t|] when requested and a divergence head exists
};

struct DyToxNetImpl : torch::nn::Module {
  // Random timm-style initialisation drawn from `seed`; no task yet (add_task grows it).
  DyToxNetImpl(const DyToxConfig& config, uint64_t seed);

  // uint8 images / patches -> normalised float (as the ViT: mean = std = 0.5).
  torch::Tensor normalize(const torch::Tensor& images_u8) const;
  torch::Tensor normalize_patches(const torch::Tensor& patches_u8) const;

  // Patch tokens after the SABs: normalised images [B, C, H, W] with an optional keep (token
  // dropping / fills as the ViT), or kept patches [B, K, C, p, p] at positions [B, K] (-1
  // padding). Returns x_L [B, N, D] and key_valid [B, N] (undefined: every token valid).
  std::pair<torch::Tensor, torch::Tensor> encode(const torch::Tensor& x, const TokenKeep* keep);
  std::pair<torch::Tensor, torch::Tensor> encode_patches(const torch::Tensor& patches, const torch::Tensor& positions, double rescale);
  // The TAB for every task token and the classifiers on x_L.
  DyToxOutput decode(const torch::Tensor& tokens, const torch::Tensor& key_valid, bool divergence);

  // The embedding e [B, D] of one task token [1, 1, D] on x_L (the TAB).
  torch::Tensor embed(const torch::Tensor& tokens, const torch::Tensor& key_valid, const torch::Tensor& task_token);

  // What add_task for task t draws from the seed: a task token (used unless copy_task_token
  // and t >= 1), the classifier and (t >= 1) the divergence head.
  // Drawing it again gives the same tensors: evaluation scores a task before it is trained
  // with exactly the token and classifier it will start from (FWT).
  struct TaskInit {
    torch::Tensor token;
    TaskClassifier classifier{nullptr};
    TaskClassifier divergence{nullptr};
  };
  TaskInit draw_task(int64_t t, int64_t classes) const;

  // A new task of `classes` classes: a task token (trunc-normal, or with copy_task_token the
  // previous token's copy), a classifier, and for tasks after the first a new divergence head
  // over 1 + `classes` outputs.
  void add_task(int64_t classes);
  int64_t num_tasks() const { return int64_t(task_tokens->size()); }
  int64_t num_classes() const;  // Σ_i |C_i|
  const std::vector<int64_t>& task_classes() const { return task_sizes_; }
  const DyToxConfig& config() const { return cfg_; }
  torch::Device device() const { return pos_embed.device(); }
  // Parameters by name (sabs.N.*, tabs.0.*, task_tokens.i, head.i.*, head_div.*, patch_embed.*, pos_embed).
  std::map<std::string, torch::Tensor> state() const;

  PatchEmbed patch_embed{nullptr};
  torch::Tensor pos_embed;  // [1, T, D]
  torch::nn::ModuleList sabs{nullptr};
  torch::nn::ModuleList tabs{nullptr};  // one TAB
  torch::nn::ParameterList task_tokens{nullptr};  // θ_i [1, 1, D] each (task_tokens.i)
  torch::nn::ModuleList head{nullptr};       // TaskClassifier per task
  TaskClassifier head_div{nullptr};          // undefined before the second task

 private:
  std::pair<torch::Tensor, torch::Tensor> run_sabs(std::pair<torch::Tensor, torch::Tensor> tokens_and_valid);
  DyToxConfig cfg_;
  uint64_t seed_;
  std::vector<int64_t> task_sizes_;
  torch::Tensor mean_, std_;
};
TORCH_MODULE(DyToxNet);

}  // namespace cts
