// Vision Transformer with timm's parameter names and defaults (pre-norm blocks, LayerNorm
// eps 1e-6, qkv bias, exact GELU, class-token pooling), so timm weights in .safetensors
// load as they are. Partial inputs: a sample may keep only some patch tokens, the rest
// filled as zero embeddings, zero pixels, or dropped from the sequence.
//
// Shapes: B batch, C channels, H/W image side, p patch, T = (H/p)(W/p) patch tokens,
// K kept tokens, N = 1 + T (or 1 + K) sequence length, D width, Hd heads, dh = D / Hd.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace cts {

struct ViTConfig {
  std::string preset = "vit_nano_patch4_28";
  int64_t img_size = 28, patch_size = 4, in_chans = 1, num_classes = 10;
  int64_t embed_dim = 64, depth = 4, num_heads = 4;
  double mlp_ratio = 4.0;
  bool qkv_bias = true;
  double ln_eps = 1e-6;
  std::vector<double> mean{0.5, 0.5, 0.5}, std{0.5, 0.5, 0.5};

  int64_t grid() const { return img_size / patch_size; }
  int64_t num_patches() const { return grid() * grid(); }
  int64_t head_dim() const { return embed_dim / num_heads; }
  int64_t patch_dim() const { return in_chans * patch_size * patch_size; }
  void validate() const;
};

std::vector<std::string> vit_preset_names();
// The named preset; InputError lists the accepted names.
ViTConfig vit_preset(const std::string& name);

enum class FillMode { ZeroEmbedding, ZeroPixel, Drop, Black };
FillMode parse_fill_mode(const std::string& name);
const std::vector<std::string>& fill_mode_names();  // in enum order
const char* fill_mode_name(FillMode mode);

// Which patch tokens each sample keeps (undefined positions: all of them).
struct TokenKeep {
  torch::Tensor positions;  // [B, K] int64 patch indices, -1 = padding (drop mode)
  FillMode fill = FillMode::ZeroEmbedding;
  double rescale = 1.0;  // kept token embeddings are multiplied by this (1/(1-p) option)
};

// Explicit attention for attribution: maps are kept (and their gradients retained),
// and AtMan-style suppression can scale pre-softmax scores per key column.
struct AttentionProbe {
  bool keep_maps = false;
  bool retain_grad = false;
  torch::Tensor key_scale;           // optional [B, N]: scores are shifted so each row's min is 0, then multiplied
  std::vector<torch::Tensor> maps;   // filled: per block [B, Hd, N, N] softmax attention
  std::vector<torch::Tensor> block_inputs;  // filled when keep_maps: per block input [B, N, D] (for features)
};

struct ForwardOptions {
  const TokenKeep* keep = nullptr;
  AttentionProbe* probe = nullptr;
};

struct PatchEmbedImpl : torch::nn::Module {
  PatchEmbedImpl(int64_t in_chans, int64_t embed_dim, int64_t patch);
  torch::nn::Conv2d proj{nullptr};
};
TORCH_MODULE(PatchEmbed);

// Pieces the ViT and DyTox's network share (models/dytox.hpp).
// timm's trunc_normal_(std) on the absolute interval [a, b], drawn from `gen` (inverse CDF).
torch::Tensor trunc_normal(std::vector<int64_t> shape, double std, at::Generator& gen, double a = -2.0, double b = 2.0);
// uint8 images [B, C, H, W] / patches [B, K, C, p, p] -> float on `device`, (x / 255 − mean) / std
// per channel; gray input is repeated for 3-channel models; shapes are checked against `cfg`.
torch::Tensor normalize_images_u8(const torch::Tensor& images_u8, const ViTConfig& cfg, const torch::Tensor& mean, const torch::Tensor& std,
                                  torch::Device device);
torch::Tensor normalize_patches_u8(const torch::Tensor& patches_u8, const ViTConfig& cfg, const torch::Tensor& mean, const torch::Tensor& std,
                                   torch::Device device);
// The patch tokens of normalised images x [B, C, H, W] plus their position embeddings
// `patch_pos` [1, T, D], with an optional keep (token dropping / replay fills): every fill but
// drop gives [B, T, D] and an undefined mask; drop embeds only the kept patches (as
// embed_kept_patches). Returns the tokens and key_valid [B, K] (undefined: every token valid).
// The normalised value of a raw-0 (black) pixel per channel, [1, C, 1, 1] like `like`.
torch::Tensor black_pixels(const ViTConfig& cfg, const torch::Tensor& like);
std::pair<torch::Tensor, torch::Tensor> embed_patch_tokens(PatchEmbedImpl& patch_embed, const torch::Tensor& patch_pos, const ViTConfig& cfg,
                                                           const torch::Tensor& x, const TokenKeep* keep);
// Only the kept patches [B, K, C, p, p] at positions [B, K] (-1 padding), times `rescale`,
// plus their position embeddings: [B, K, D] and key_valid [B, K] when some rows are padded.
std::pair<torch::Tensor, torch::Tensor> embed_kept_patches(PatchEmbedImpl& patch_embed, const torch::Tensor& patch_pos, const torch::Tensor& patches,
                                                           const torch::Tensor& positions, double rescale);

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(int64_t dim, int64_t heads, bool qkv_bias);
  // x [B, N, D]; key_valid [B, N] bool or undefined; returns [B, N, D].
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_valid, AttentionProbe* probe, bool fused);
  torch::nn::Linear qkv{nullptr}, proj{nullptr};
  int64_t heads;
  double scale;
};
TORCH_MODULE(Attention);

struct MlpImpl : torch::nn::Module {
  MlpImpl(int64_t dim, int64_t hidden);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Linear fc1{nullptr}, fc2{nullptr};
};
TORCH_MODULE(Mlp);

struct BlockImpl : torch::nn::Module {
  BlockImpl(const ViTConfig& cfg);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& key_valid, AttentionProbe* probe, bool fused);
  // The block's output at the CLS position only, [B, 1, D] (full inputs, no maps): the CLS
  // query attends to every token, the MLP runs on one row. What the last block of an
  // inference that reads only the CLS token needs.
  torch::Tensor forward_cls(const torch::Tensor& x);
  torch::nn::LayerNorm norm1{nullptr}, norm2{nullptr};
  Attention attn{nullptr};
  Mlp mlp{nullptr};
};
TORCH_MODULE(Block);

struct VisionTransformerImpl : torch::nn::Module {
  // Random timm-style initialisation drawn from `seed`.
  VisionTransformerImpl(const ViTConfig& cfg, uint64_t seed = 0);

  // uint8 images [B, c, H, W] (c = 1 or in_chans) -> normalised float [B, in_chans, H, W]
  // on the model's device (gray is repeated to 3 channels when the model wants 3).
  torch::Tensor normalize(const torch::Tensor& images_u8) const;
  // Patch tokens, int64 positions [B, K]: uint8 patches [B, K, c, p, p] -> normalised float.
  torch::Tensor normalize_patches(const torch::Tensor& patches_u8) const;

  // Normalised images [B, C, H, W] -> final-norm tokens [B, N, D].
  torch::Tensor forward_features(const torch::Tensor& x, const ForwardOptions& opt = {});
  // Kept patches only (drop mode): normalised [B, K, C, p, p] + positions [B, K] (-1 padding).
  torch::Tensor forward_features_patches(const torch::Tensor& patches, const torch::Tensor& positions,
                                         const ForwardOptions& opt = {});
  // CLS token of final-norm tokens [B, N, D] -> [B, D] (the pre-logits features).
  torch::Tensor pre_logits(const torch::Tensor& tokens) const;
  // Pre-logits features [B, D] of normalised full images for inference: equal to
  // pre_logits(forward_features(x)) up to floating-point order, ~20 % fewer FLOPs (the last
  // block computes the CLS row only; the others' outputs there are never read).
  torch::Tensor forward_cls(const torch::Tensor& x);
  // Features -> logits [B, num_classes].
  torch::Tensor forward_head(const torch::Tensor& tokens);
  torch::Tensor forward(const torch::Tensor& x, const ForwardOptions& opt = {});

  // Embeds normalised images into the token sequence [B, N, D] (+ key_valid [B, N] in drop mode).
  std::pair<torch::Tensor, torch::Tensor> embed(const torch::Tensor& x, const TokenKeep* keep);
  // Embeds normalised kept patches [B, K, C, p, p] at positions [B, K] (-1 padding).
  std::pair<torch::Tensor, torch::Tensor> embed_patches(const torch::Tensor& patches, const torch::Tensor& positions, double rescale);
  // The class token (plus pos_0) in front of patch tokens; key_valid gets a leading true.
  std::pair<torch::Tensor, torch::Tensor> with_cls(const torch::Tensor& tokens, const torch::Tensor& valid) const;
  // Runs the blocks and the final norm.
  torch::Tensor encode(torch::Tensor tokens, const torch::Tensor& key_valid, AttentionProbe* probe);

  // Replaces the head by one with `num_classes` outputs: rows of the old head are kept,
  // new rows are taken from `init_rows` ([num_classes, D] weights, biases zero) if given.
  void resize_head(int64_t num_classes, const torch::Tensor& init_rows = {});
  int64_t num_classes() const { return head->weight.size(0); }
  const ViTConfig& config() const { return cfg_; }
  // Fused (scaled_dot_product_attention) kernels when no maps are needed: auto/fused/explicit.
  void set_attention_mode(const std::string& mode);
  bool fused_attention_available() const;

  // Parameters by timm name.
  std::map<std::string, torch::Tensor> state() const;
  torch::Device device() const { return cls_token.device(); }

  PatchEmbed patch_embed{nullptr};
  torch::Tensor cls_token, pos_embed;
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm norm{nullptr};
  torch::nn::Linear head{nullptr};

 private:
  bool use_fused(const AttentionProbe* probe) const;
  ViTConfig cfg_;
  std::string attention_mode_ = "auto";
  torch::Tensor mean_, std_;  // [C] buffers for normalisation (not parameters)
};
TORCH_MODULE(VisionTransformer);

// Eval mode for the guard's lifetime (the model's previous mode comes back after), with
// autograd on (attribution: gradients of attention maps even inside a no-grad phase) or off
// (inference: features, predictions, evaluation). A model already in eval mode is not
// touched, so guards in parallel jobs (core/threads.hpp) of a model put in eval mode before
// the jobs never write to it.
class EvalModeGuard {
 public:
  EvalModeGuard(VisionTransformer& model, bool grad) : model_(model), was_training_(model->is_training()), grad_(grad) {
    if (was_training_) model_->eval();
  }
  ~EvalModeGuard() {
    if (was_training_) model_->train(true);
  }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  VisionTransformer& model_;
  bool was_training_;
  torch::AutoGradMode grad_;
};

// The seeded timm initialisation of a head with `rows` classes ([rows, D] weights):
// trunc-normal std 0.02, drawn from its own stream so that growing the head is deterministic.
torch::Tensor init_head_rows(int64_t rows, int64_t dim, uint64_t seed);

// Weight files ------------------------------------------------------------------------

struct LoadReport {
  std::vector<std::string> notes;  // e.g. "head re-created: file has 1000 classes, model 10"
};

// Loads timm-named weights. Adapts what timm adapts: pos_embed resampled (bicubic) to the
// model's grid, patch_embed.proj summed/repeated over input channels, head re-created on a
// class-count mismatch. Unknown or missing tensors are errors naming them.
LoadReport load_vit_weights(VisionTransformer& model, const std::filesystem::path& path);
// The one mapping between a ViTConfig and the `cts.*` metadata of a weights file:
// cts.preset, cts.img_size, cts.patch_size, cts.in_chans, cts.embed_dim, cts.depth,
// cts.num_heads, cts.mlp_ratio, cts.num_classes.
std::map<std::string, std::string> vit_metadata(const ViTConfig& config);
// The architecture a file's metadata describes: the preset named by cts.preset (or by
// `preset` when not empty), then every cts.* key present overrides it. InputError names
// `origin` (the file) and the key for a missing preset or a malformed value.
ViTConfig vit_config_from_metadata(const std::map<std::string, std::string>& metadata, const std::string& origin,
                                   const std::string& preset = "");

// Writes every parameter with timm names (F32) and metadata describing the architecture.
void save_vit_weights(const VisionTransformer& model, const std::filesystem::path& path,
                      const std::map<std::string, std::string>& extra_metadata = {});

}  // namespace cts
