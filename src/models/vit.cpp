// ViT modules, partial-input embedding, presets and timm-compatible weight I/O.
#include "cts/models/vit.hpp"
#include "cts/models/cpu_attention.hpp"

#include <torch/version.h>

#include <cmath>

#include "cts/core/error.hpp"
#include "cts/core/format.hpp"
#include "cts/core/rng.hpp"
#include "cts/core/safetensors.hpp"

namespace cts {

// Truncated normal on [a, b] (absolute bounds, as timm's trunc_normal_) by inverse CDF.
torch::Tensor trunc_normal(std::vector<int64_t> shape, double std, at::Generator& gen, double a, double b) {
  auto cdf = [](double x) { return 0.5 * (1.0 + std::erf(x / std::sqrt(2.0))); };
  const double lo = cdf(a / std), hi = cdf(b / std);
  auto u = torch::rand(shape, gen, torch::kFloat64) * (hi - lo) + lo;
  auto x = torch::erfinv(u * 2.0 - 1.0) * (std * std::sqrt(2.0));
  return x.clamp(a, b).to(torch::kFloat32);
}

torch::Tensor normalize_images_u8(const torch::Tensor& images_u8, const ViTConfig& cfg, const torch::Tensor& mean, const torch::Tensor& std,
                                  torch::Device device) {
  TORCH_CHECK(images_u8.dim() == 4, "images must be [B, C, H, W], got ", images_u8.sizes());
  TORCH_CHECK(images_u8.size(2) == cfg.img_size && images_u8.size(3) == cfg.img_size, "model ", cfg.preset, " expects ", cfg.img_size, "x",
              cfg.img_size, " images, got ", images_u8.size(2), "x", images_u8.size(3), " (set data.image_size or model.img_size)");
  auto x = images_u8.to(device, /*non_blocking=*/true).to(torch::kFloat32).div_(255.0);
  if (x.size(1) == 1 && cfg.in_chans == 3) x = x.expand({-1, 3, -1, -1});
  TORCH_CHECK(x.size(1) == cfg.in_chans, "model expects ", cfg.in_chans, " channels, images have ", images_u8.size(1));
  return (x - mean.view({1, -1, 1, 1})) / std.view({1, -1, 1, 1});
}

torch::Tensor normalize_patches_u8(const torch::Tensor& patches_u8, const ViTConfig& cfg, const torch::Tensor& mean, const torch::Tensor& std,
                                   torch::Device device) {
  TORCH_CHECK(patches_u8.dim() == 5, "patches must be [B, K, C, p, p], got ", patches_u8.sizes());
  auto x = patches_u8.to(device, /*non_blocking=*/true).to(torch::kFloat32).div_(255.0);
  if (x.size(2) == 1 && cfg.in_chans == 3) x = x.expand({-1, -1, 3, -1, -1});
  TORCH_CHECK(x.size(2) == cfg.in_chans, "model expects ", cfg.in_chans, " channels, patches have ", patches_u8.size(2));
  return (x - mean.view({1, 1, -1, 1, 1})) / std.view({1, 1, -1, 1, 1});
}

torch::Tensor black_pixels(const ViTConfig& cfg, const torch::Tensor& like) {
  std::vector<float> v(size_t(cfg.in_chans));
  for (int64_t c = 0; c < cfg.in_chans; ++c) v[size_t(c)] = float((0.0 - cfg.mean.at(size_t(c))) / cfg.std.at(size_t(c)));
  return torch::tensor(v, like.options()).view({1, cfg.in_chans, 1, 1});
}

std::pair<torch::Tensor, torch::Tensor> embed_patch_tokens(PatchEmbedImpl& patch_embed, const torch::Tensor& patch_pos, const ViTConfig& cfg,
                                                           const torch::Tensor& x, const TokenKeep* keep) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == cfg.in_chans && x.size(2) == cfg.img_size && x.size(3) == cfg.img_size,
              "input must be [B, ", cfg.in_chans, ", ", cfg.img_size, ", ", cfg.img_size, "], got ", x.sizes());
  const int64_t B = x.size(0), T = cfg.num_patches(), g = cfg.grid(), p = cfg.patch_size;
  const bool partial = keep && keep->positions.defined();
  if (partial && keep->fill == FillMode::Drop) {
    // Embed only the kept patches.
    auto patches = x.reshape({B, cfg.in_chans, g, p, g, p}).permute({0, 2, 4, 1, 3, 5}).reshape({B, T, cfg.in_chans, p, p});
    auto pos = keep->positions.to(x.device(), torch::kInt64);
    auto kept = patches.gather(1, pos.clamp_min(0).view({B, -1, 1, 1, 1}).expand({-1, -1, cfg.in_chans, p, p}));  // [B, K, C, p, p]
    return embed_kept_patches(patch_embed, patch_pos, kept, pos, keep->rescale);
  }
  torch::Tensor input = x;
  torch::Tensor mask;  // [B, T] float, 1 = kept
  if (partial) {
    auto pos = keep->positions.to(x.device(), torch::kInt64);
    mask = torch::zeros({B, T + 1}, x.options());
    mask.scatter_(1, torch::where(pos >= 0, pos, torch::full_like(pos, T)), 1.0);
    mask = mask.narrow(1, 0, T);
    if (keep->fill == FillMode::ZeroPixel || keep->fill == FillMode::Black) {
      auto pix = mask.view({B, 1, g, 1, g, 1}).expand({B, 1, g, p, g, p}).reshape({B, 1, g * p, g * p});
      // zero-pixel: missing patches are 0 in normalised pixel space (their embedding is the conv
      // bias). black: raw pixel 0, i.e. (0 - mean) / std per channel: an image on a black
      // background carries no visible mask.
      input = x * pix;
      if (keep->fill == FillMode::Black) input = input + black_pixels(cfg, x) * (1.0 - pix);
    }
  }
  auto tok = patch_embed.proj(input).flatten(2).transpose(1, 2);  // [B, T, D]
  if (partial) {
    if (keep->fill == FillMode::ZeroEmbedding) tok = tok * (mask * keep->rescale).unsqueeze(-1);
    else if (keep->rescale != 1.0) tok = tok * (mask * (keep->rescale - 1.0) + 1.0).unsqueeze(-1);
  }
  return {tok + patch_pos, torch::Tensor()};
}

std::pair<torch::Tensor, torch::Tensor> embed_kept_patches(PatchEmbedImpl& patch_embed, const torch::Tensor& patch_pos, const torch::Tensor& patches,
                                                           const torch::Tensor& positions, double rescale) {
  TORCH_CHECK(patches.dim() == 5 && positions.dim() == 2 && patches.size(0) == positions.size(0) && patches.size(1) == positions.size(1),
              "patches [B, K, C, p, p] and positions [B, K] disagree: ", patches.sizes(), " vs ", positions.sizes());
  const int64_t B = patches.size(0), K = patches.size(1), T = patch_pos.size(1), D = patch_pos.size(2);
  auto pos = positions.to(patches.device(), torch::kInt64);
  auto w = patch_embed.proj->weight.view({D, -1});                                         // [D, C p p]
  auto tok = torch::matmul(patches.reshape({B, K, -1}), w.t()) + patch_embed.proj->bias;  // [B, K, D]
  if (rescale != 1.0) tok = tok * rescale;
  tok = tok + patch_pos.expand({B, T, D}).gather(1, pos.clamp_min(0).unsqueeze(-1).expand({-1, -1, D}));
  torch::Tensor valid;  // only when some rows are padded (-1)
  if ((pos < 0).any().item<bool>()) valid = pos >= 0;
  return {tok, valid};
}

void ViTConfig::validate() const {
  if (img_size <= 0 || patch_size <= 0 || img_size % patch_size != 0) {
    throw_input("model: img_size {} must be a positive multiple of patch_size {}", img_size, patch_size);
  }
  if (embed_dim <= 0 || num_heads <= 0 || embed_dim % num_heads != 0) {
    throw_input("model: embed_dim {} must be a positive multiple of num_heads {}", embed_dim, num_heads);
  }
  if (depth <= 0) throw_input("model: depth must be positive, got {}", depth);
  if (in_chans != 1 && in_chans != 3) throw_input("model: in_chans must be 1 or 3, got {}", in_chans);
  if (num_patches() > 65535) throw_input("model: {} patch tokens exceed the 65535 that buffer positions (uint16) can address", num_patches());
  if (mlp_ratio <= 0) throw_input("model: mlp_ratio must be positive, got {}", mlp_ratio);
}

std::vector<std::string> vit_preset_names() {
  return {"vit_nano_patch4_28", "vit_micro_patch4_28", "vit_micro_patch4_32", "vit_tiny_patch16_224", "vit_small_patch16_224",
          "vit_base_patch16_224"};
}

ViTConfig vit_preset(const std::string& name) {
  ViTConfig c;
  c.preset = name;
  if (name == "vit_nano_patch4_28") {
    c.img_size = 28, c.patch_size = 4, c.in_chans = 1, c.embed_dim = 64, c.depth = 4, c.num_heads = 4;
  } else if (name == "vit_micro_patch4_28") {
    c.img_size = 28, c.patch_size = 4, c.in_chans = 1, c.embed_dim = 128, c.depth = 6, c.num_heads = 4;
  } else if (name == "vit_micro_patch4_32") {
    c.img_size = 32, c.patch_size = 4, c.in_chans = 3, c.embed_dim = 128, c.depth = 6, c.num_heads = 4;
  } else if (name == "vit_tiny_patch16_224") {
    c.img_size = 224, c.patch_size = 16, c.in_chans = 3, c.embed_dim = 192, c.depth = 12, c.num_heads = 3;
  } else if (name == "vit_small_patch16_224") {
    c.img_size = 224, c.patch_size = 16, c.in_chans = 3, c.embed_dim = 384, c.depth = 12, c.num_heads = 6;
  } else if (name == "vit_base_patch16_224") {
    c.img_size = 224, c.patch_size = 16, c.in_chans = 3, c.embed_dim = 768, c.depth = 12, c.num_heads = 12;
  } else {
    throw_input("model.preset = '{}' is not known; accepted: {}", name, fmt::join(vit_preset_names(), ", "));
  }
  c.num_classes = 1000;
  return c;
}

const std::vector<std::string>& fill_mode_names() {
  static const std::vector<std::string> names = {"zero-embedding", "zero-pixel", "drop", "black"};
  return names;
}

FillMode parse_fill_mode(const std::string& name) {
  if (name == "zero-embedding") return FillMode::ZeroEmbedding;
  if (name == "zero-pixel") return FillMode::ZeroPixel;
  if (name == "drop") return FillMode::Drop;
  if (name == "black") return FillMode::Black;
  throw_input("fill mode '{}' is not known; accepted: zero-embedding, zero-pixel, drop, black", name);
}

const char* fill_mode_name(FillMode mode) {
  switch (mode) {
    case FillMode::ZeroEmbedding: return "zero-embedding";
    case FillMode::ZeroPixel: return "zero-pixel";
    case FillMode::Drop: return "drop";
    case FillMode::Black: return "black";
  }
  return "?";
}

// ------------------------------------------------------------------------ modules

PatchEmbedImpl::PatchEmbedImpl(int64_t in_chans, int64_t embed_dim, int64_t patch) {
  proj = register_module("proj", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_chans, embed_dim, /*kernel_size=*/patch).stride(patch)));
}

AttentionImpl::AttentionImpl(int64_t dim, int64_t heads_, bool qkv_bias) : heads(heads_), scale(1.0 / std::sqrt(double(dim / heads_))) {
  qkv = register_module("qkv", torch::nn::Linear(torch::nn::LinearOptions(dim, 3 * dim).bias(qkv_bias)));
  proj = register_module("proj", torch::nn::Linear(dim, dim));
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& key_valid, AttentionProbe* probe, bool fused) {
  const int64_t B = x.size(0), N = x.size(1), D = x.size(2), dh = D / heads;
  auto qkv_ = qkv(x).reshape({B, N, 3, heads, dh}).permute({2, 0, 3, 1, 4});  // [3, B, Hd, N, dh]
  auto q = qkv_[0], k = qkv_[1], v = qkv_[2];                                 // [B, Hd, N, dh]
  torch::Tensor out;
#if TORCH_VERSION_MAJOR >= 2
  if (fused) {
    torch::Tensor mask;
    if (key_valid.defined()) mask = key_valid.view({B, 1, 1, N});
    out = at::scaled_dot_product_attention(q, k, v, mask);  // [B, Hd, N, dh]
  }
#endif
  if (!out.defined() && !key_valid.defined() && !probe && !torch::GradMode::is_enabled()) {
    // CPU inference: the same products without ATen's per-matrix dispatch and copies.
    const auto slices = qkv_.permute({1, 3, 0, 2, 4});  // [B, N, 3, Hd, dh] again (a view)
    auto o = cpu_attention(slices.select(2, 0), slices.select(2, 1), slices.select(2, 2), scale);
    if (o.defined()) return proj(o);
  }
  if (!out.defined()) {
    auto scores = torch::matmul(q, k.transpose(-2, -1)) * scale;  // [B, Hd, N, N]
    if (probe && probe->key_scale.defined()) {
      // AtMan: shift each row so its minimum is 0, then scale key columns (suppression).
      scores = scores - std::get<0>(scores.min(-1, /*keepdim=*/true));
      scores = scores * probe->key_scale.view({B, 1, 1, N}).to(scores.dtype());
    }
    if (key_valid.defined()) scores = scores.masked_fill(key_valid.logical_not().view({B, 1, 1, N}), -std::numeric_limits<float>::infinity());
    auto attn = torch::softmax(scores, -1);  // [B, Hd, N, N]
    if (probe && probe->keep_maps) {
      if (probe->retain_grad && attn.requires_grad()) attn.retain_grad();
      probe->maps.push_back(attn);
    }
    out = torch::matmul(attn, v);  // [B, Hd, N, dh]
  }
  return proj(out.transpose(1, 2).reshape({B, N, D}));
}

MlpImpl::MlpImpl(int64_t dim, int64_t hidden) {
  fc1 = register_module("fc1", torch::nn::Linear(dim, hidden));
  fc2 = register_module("fc2", torch::nn::Linear(hidden, dim));
}

torch::Tensor MlpImpl::forward(const torch::Tensor& x) {
  if (!torch::GradMode::is_enabled()) {  // inference: the same values, one buffer fewer
    auto hidden = fc1(x);
    return fc2(at::gelu_(hidden));
  }
  return fc2(torch::gelu(fc1(x)));
}

BlockImpl::BlockImpl(const ViTConfig& cfg) {
  auto ln = torch::nn::LayerNormOptions({cfg.embed_dim}).eps(cfg.ln_eps);
  norm1 = register_module("norm1", torch::nn::LayerNorm(ln));
  attn = register_module("attn", Attention(cfg.embed_dim, cfg.num_heads, cfg.qkv_bias));
  norm2 = register_module("norm2", torch::nn::LayerNorm(ln));
  mlp = register_module("mlp", Mlp(cfg.embed_dim, static_cast<int64_t>(cfg.embed_dim * cfg.mlp_ratio)));
}

namespace {
// A block's two residual sums after its attention output `a`: h = x + a, h + mlp(norm2(h)).
// Without autograd the sums are added into the fresh branch outputs (a + x == x + a bit for
// bit), sparing two buffers per block.
torch::Tensor residual_tail(BlockImpl& block, const torch::Tensor& x, torch::Tensor a) {
  if (!torch::GradMode::is_enabled()) {
    auto h = a.add_(x);
    return block.mlp->forward(block.norm2(h)).add_(h);
  }
  auto h = x + a;
  return h + block.mlp->forward(block.norm2(h));
}
}  // namespace

torch::Tensor BlockImpl::forward(const torch::Tensor& x, const torch::Tensor& key_valid, AttentionProbe* probe, bool fused) {
  return residual_tail(*this, x, attn->forward(norm1(x), key_valid, probe, fused));  // [B, N, D]
}

torch::Tensor BlockImpl::forward_cls(const torch::Tensor& x) {
  const int64_t B = x.size(0), N = x.size(1), D = x.size(2), H = attn->heads, dh = D / H;
  auto n1 = norm1(x);  // [B, N, D]
  const auto& w = attn->qkv->weight;  // [3D, D]: rows q, k, v
  const auto& b = attn->qkv->bias;
  auto part = [&](int64_t start, int64_t rows, const torch::Tensor& in) {
    return torch::linear(in, w.narrow(0, start, rows), b.defined() ? b.narrow(0, start, rows) : torch::Tensor());
  };
  auto q_rows = part(0, D, n1.narrow(1, 0, 1)).view({B, 1, H, dh});  // [B, 1, Hd, dh]
  auto kv_rows = part(D, 2 * D, n1).view({B, N, 2, H, dh});          // [B, N, 2, Hd, dh]
  torch::Tensor o;
  if (!torch::GradMode::is_enabled()) o = cpu_attention(q_rows, kv_rows.select(2, 0), kv_rows.select(2, 1), attn->scale);  // [B, 1, D]
  if (!o.defined()) {
    auto q = q_rows.transpose(1, 2);                   // [B, Hd, 1, dh]
    auto kv = kv_rows.permute({2, 0, 3, 1, 4});        // [2, B, Hd, N, dh]
    auto a = torch::softmax(torch::matmul(q, kv[0].transpose(-2, -1)) * attn->scale, -1);  // [B, Hd, 1, N]
    o = torch::matmul(a, kv[1]).transpose(1, 2).reshape({B, 1, D});                        // [B, 1, D]
  }
  return residual_tail(*this, x.narrow(1, 0, 1), attn->proj(o));  // [B, 1, D]
}

// ------------------------------------------------------------------------ ViT

torch::Tensor init_head_rows(int64_t rows, int64_t dim, uint64_t seed) {
  auto gen = make_generator(seed, "head_init");
  return trunc_normal({rows, dim}, 0.02, gen);
}

VisionTransformerImpl::VisionTransformerImpl(const ViTConfig& cfg, uint64_t seed) : cfg_(cfg) {
  cfg_.validate();
  const int64_t D = cfg_.embed_dim;
  patch_embed = register_module("patch_embed", PatchEmbed(cfg_.in_chans, D, cfg_.patch_size));
  cls_token = register_parameter("cls_token", torch::zeros({1, 1, D}));
  pos_embed = register_parameter("pos_embed", torch::zeros({1, cfg_.num_patches() + 1, D}));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < cfg_.depth; ++i) blocks->push_back(Block(cfg_));
  norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({D}).eps(cfg_.ln_eps)));
  head = register_module("head", torch::nn::Linear(D, cfg_.num_classes));

  // timm init: pos_embed trunc-normal(.02), cls_token normal(1e-6), Linear trunc-normal(.02)
  // with zero bias, patch conv: lecun-uniform-like PyTorch default (drawn from our stream).
  torch::NoGradGuard no_grad;
  auto gen = make_generator(seed, "vit_init");
  pos_embed.copy_(trunc_normal({1, cfg_.num_patches() + 1, D}, 0.02, gen));
  cls_token.copy_(torch::randn({1, 1, D}, gen) * 1e-6);
  const double fan_in = static_cast<double>(cfg_.patch_dim());
  const double bound = 1.0 / std::sqrt(fan_in);
  patch_embed->proj->weight.copy_(torch::rand(patch_embed->proj->weight.sizes(), gen) * (2 * bound) - bound);
  patch_embed->proj->bias.copy_(torch::rand(patch_embed->proj->bias.sizes(), gen) * (2 * bound) - bound);
  for (auto& m : blocks->children()) {
    auto block = std::dynamic_pointer_cast<BlockImpl>(m);
    for (auto* lin : {block->attn->qkv.get(), block->attn->proj.get(), block->mlp->fc1.get(), block->mlp->fc2.get()}) {
      lin->weight.copy_(trunc_normal(lin->weight.sizes().vec(), 0.02, gen));
      if (lin->bias.defined()) lin->bias.zero_();
    }
  }
  head->weight.copy_(init_head_rows(cfg_.num_classes, D, seed));
  head->bias.zero_();

  mean_ = register_buffer("norm_mean", torch::tensor(std::vector<double>(cfg_.mean.begin(), cfg_.mean.begin() + cfg_.in_chans), torch::kFloat32));
  std_ = register_buffer("norm_std", torch::tensor(std::vector<double>(cfg_.std.begin(), cfg_.std.begin() + cfg_.in_chans), torch::kFloat32));
}

torch::Tensor VisionTransformerImpl::normalize(const torch::Tensor& images_u8) const {
  return normalize_images_u8(images_u8, cfg_, mean_, std_, device());
}

torch::Tensor VisionTransformerImpl::normalize_patches(const torch::Tensor& patches_u8) const {
  return normalize_patches_u8(patches_u8, cfg_, mean_, std_, device());
}

bool VisionTransformerImpl::fused_attention_available() const {
#if TORCH_VERSION_MAJOR >= 2
  return true;
#else
  return false;
#endif
}

void VisionTransformerImpl::set_attention_mode(const std::string& mode) {
  if (mode != "auto" && mode != "fused" && mode != "explicit") throw_input("model.attention = '{}'; accepted: auto, fused, explicit", mode);
  if (mode == "fused" && !fused_attention_available()) {
    throw_input("model.attention = fused needs libtorch >= 2.0 (this build has {}); use auto or explicit", TORCH_VERSION);
  }
  attention_mode_ = mode;
}

bool VisionTransformerImpl::use_fused(const AttentionProbe* probe) const {
  if (probe && (probe->keep_maps || probe->key_scale.defined())) return false;
  return attention_mode_ != "explicit" && fused_attention_available();
}

// [CLS + pos_0, patch tokens + pos_1..T]: the shared patch embedding with the class token in front.
std::pair<torch::Tensor, torch::Tensor> VisionTransformerImpl::embed(const torch::Tensor& x, const TokenKeep* keep) {
  auto [tok, valid] = embed_patch_tokens(*patch_embed, pos_embed.narrow(1, 1, cfg_.num_patches()), cfg_, x, keep);
  return with_cls(tok, valid);
}

std::pair<torch::Tensor, torch::Tensor> VisionTransformerImpl::with_cls(const torch::Tensor& tokens, const torch::Tensor& valid) const {
  const int64_t B = tokens.size(0), D = cfg_.embed_dim;
  auto cls = (cls_token + pos_embed.narrow(1, 0, 1)).expand({B, 1, D});
  torch::Tensor v;
  if (valid.defined()) v = torch::cat({torch::ones({B, 1}, valid.options()), valid}, 1);
  return {torch::cat({cls, tokens}, 1), v};  // [B, 1 + K, D]
}

torch::Tensor VisionTransformerImpl::encode(torch::Tensor tokens, const torch::Tensor& key_valid, AttentionProbe* probe) {
  const bool fused = use_fused(probe);
  for (auto& m : blocks->children()) {
    auto block = std::static_pointer_cast<BlockImpl>(m);
    if (probe && probe->keep_maps) probe->block_inputs.push_back(tokens);
    tokens = block->forward(tokens, key_valid, probe, fused);
  }
  return norm(tokens);
}

torch::Tensor VisionTransformerImpl::forward_cls(const torch::Tensor& x) {
  auto tokens = embed(x, nullptr).first;  // [B, N, D]
  const int64_t depth = int64_t(blocks->size());
  const bool fused = use_fused(nullptr);
  for (int64_t i = 0; i + 1 < depth; ++i) tokens = std::static_pointer_cast<BlockImpl>(blocks->ptr(i))->forward(tokens, {}, nullptr, fused);
  tokens = std::static_pointer_cast<BlockImpl>(blocks->ptr(depth - 1))->forward_cls(tokens);  // [B, 1, D]
  return norm(tokens).select(1, 0);                                                          // [B, D]
}

torch::Tensor VisionTransformerImpl::forward_features(const torch::Tensor& x, const ForwardOptions& opt) {
  auto [tokens, key_valid] = embed(x, opt.keep);
  return encode(tokens, key_valid, opt.probe);
}

std::pair<torch::Tensor, torch::Tensor> VisionTransformerImpl::embed_patches(const torch::Tensor& patches, const torch::Tensor& positions,
                                                                          double rescale) {
  auto [tok, valid] = embed_kept_patches(*patch_embed, pos_embed.narrow(1, 1, cfg_.num_patches()), patches, positions, rescale);
  return with_cls(tok, valid);
}

torch::Tensor VisionTransformerImpl::forward_features_patches(const torch::Tensor& patches, const torch::Tensor& positions,
                                                              const ForwardOptions& opt) {
  auto [tokens, valid] = embed_patches(patches, positions, opt.keep ? opt.keep->rescale : 1.0);
  return encode(tokens, valid, opt.probe);
}

torch::Tensor VisionTransformerImpl::pre_logits(const torch::Tensor& tokens) const { return tokens.select(1, 0); }

torch::Tensor VisionTransformerImpl::forward_head(const torch::Tensor& tokens) { return head(pre_logits(tokens)); }

torch::Tensor VisionTransformerImpl::forward(const torch::Tensor& x, const ForwardOptions& opt) {
  return forward_head(forward_features(x, opt));
}

void VisionTransformerImpl::resize_head(int64_t num_classes, const torch::Tensor& init_rows) {
  const int64_t D = cfg_.embed_dim;
  const int64_t old = head->weight.size(0);
  if (old == num_classes) return;
  auto fresh = torch::nn::Linear(D, num_classes);
  {
    torch::NoGradGuard no_grad;
    fresh->to(device());
    fresh->bias.zero_();
    if (init_rows.defined()) {
      TORCH_CHECK(init_rows.size(0) >= num_classes && init_rows.size(1) == D, "head init rows ", init_rows.sizes(), " too small for ", num_classes);
      fresh->weight.copy_(init_rows.narrow(0, 0, num_classes));
    }
    const int64_t keep = std::min(old, num_classes);
    fresh->weight.narrow(0, 0, keep).copy_(head->weight.narrow(0, 0, keep));
    fresh->bias.narrow(0, 0, keep).copy_(head->bias.narrow(0, 0, keep));
  }
  head = replace_module("head", fresh);
  cfg_.num_classes = num_classes;
}

std::map<std::string, torch::Tensor> VisionTransformerImpl::state() const {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : named_parameters()) out[p.key()] = p.value();
  return out;
}

// ------------------------------------------------------------------------ weights

LoadReport load_vit_weights(VisionTransformer& model, const std::filesystem::path& path) {
  LoadReport report;
  auto file = load_safetensors(path);
  const auto& cfg = model->config();
  auto params = model->named_parameters();
  std::vector<std::string> missing, unexpected;
  for (const auto& e : file.entries)
    if (!params.contains(e.name)) unexpected.push_back(e.name);
  for (const auto& p : params)
    if (!file.contains(p.key())) missing.push_back(p.key());
  if (!unexpected.empty()) {
    throw_input("{}: tensors not in a {} ViT: {} (cts loads timm VisionTransformer weights with class-token pooling, no layer scale)",
                path.string(), cfg.preset, fmt::join(unexpected, ", "));
  }
  const bool head_missing = std::find(missing.begin(), missing.end(), "head.weight") != missing.end();
  if (!missing.empty() && !(missing.size() <= 2 && head_missing)) {
    throw_input("{}: missing tensors for the model: {}", path.string(), fmt::join(missing, ", "));
  }
  torch::NoGradGuard no_grad;
  for (auto& p : params) {
    const std::string& name = p.key();
    if (!file.contains(name)) continue;
    torch::Tensor src = file.at(name).to(torch::kFloat32);
    torch::Tensor dst = p.value();
    if (name == "head.weight" || name == "head.bias") {
      if (src.size(0) != dst.size(0)) {
        if (name == "head.weight") {
          report.notes.push_back(fmt::format("head re-created: {} has {} classes, the model {}; the new head is randomly initialised",
                                             path.filename().string(), src.size(0), dst.size(0)));
        }
        continue;
      }
    }
    if (name == "pos_embed" && src.sizes() != dst.sizes()) {
      const int64_t D = dst.size(2);
      const int64_t old_t = src.size(1) - 1;
      const int64_t old_g = static_cast<int64_t>(std::llround(std::sqrt(double(old_t))));
      if (old_g * old_g != old_t || src.size(2) != D) {
        throw_input("{}: pos_embed {} cannot be resampled to {}", path.string(), shape_str(src.sizes()), shape_str(dst.sizes()));
      }
      namespace F = torch::nn::functional;
      auto grid = src.narrow(1, 1, old_t).reshape({1, old_g, old_g, D}).permute({0, 3, 1, 2});
      auto res = F::interpolate(grid, F::InterpolateFuncOptions().size(std::vector<int64_t>{cfg.grid(), cfg.grid()}).mode(torch::kBicubic).align_corners(false))
                     .permute({0, 2, 3, 1})
                     .reshape({1, cfg.num_patches(), D});
      src = torch::cat({src.narrow(1, 0, 1), res}, 1);
      report.notes.push_back(fmt::format("pos_embed resampled from a {}x{} to a {}x{} grid (bicubic)", old_g, old_g, cfg.grid(), cfg.grid()));
    }
    if (name == "patch_embed.proj.weight" && src.dim() == 4 && src.size(1) != dst.size(1) && src.size(0) == dst.size(0) &&
        src.size(2) == dst.size(2) && src.size(3) == dst.size(3)) {
      if (dst.size(1) == 1) src = src.sum(1, true);
      else src = src.repeat({1, dst.size(1), 1, 1}) / static_cast<double>(dst.size(1));
      report.notes.push_back(fmt::format("patch_embed.proj adapted from {} to {} input channels", file.at(name).size(1), dst.size(1)));
    }
    if (src.sizes() != dst.sizes()) {
      throw_input("{}: tensor '{}' has shape {} but the model ({}) needs {}", path.string(), name, shape_str(src.sizes()),
                  cfg.preset, shape_str(dst.sizes()));
    }
    dst.copy_(src);
  }
  if (head_missing) report.notes.push_back("head not in the file: randomly initialised");
  return report;
}

std::map<std::string, std::string> vit_metadata(const ViTConfig& c) {
  return {{"cts.preset", c.preset},
          {"cts.img_size", std::to_string(c.img_size)},
          {"cts.patch_size", std::to_string(c.patch_size)},
          {"cts.in_chans", std::to_string(c.in_chans)},
          {"cts.embed_dim", std::to_string(c.embed_dim)},
          {"cts.depth", std::to_string(c.depth)},
          {"cts.num_heads", std::to_string(c.num_heads)},
          {"cts.mlp_ratio", fmt::format("{}", c.mlp_ratio)},
          {"cts.num_classes", std::to_string(c.num_classes)}};
}

ViTConfig vit_config_from_metadata(const std::map<std::string, std::string>& meta, const std::string& origin, const std::string& preset) {
  std::string name = preset;
  if (name.empty()) {
    auto it = meta.find("cts.preset");
    if (it == meta.end()) {
      throw_input("{} has no cts.preset metadata (not written by cts): give --preset, one of {}", origin, fmt::join(vit_preset_names(), ", "));
    }
    name = it->second;
  }
  ViTConfig c = vit_preset(name);
  auto number = [&](const char* key, auto& field) {
    auto it = meta.find(key);
    if (it == meta.end()) return;
    using T = std::decay_t<decltype(field)>;
    size_t used = 0;
    try {
      if constexpr (std::is_integral_v<T>) field = static_cast<T>(std::stoll(it->second, &used));
      else field = std::stod(it->second, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != it->second.size()) throw_input("{}: metadata {} = '{}' is not a number", origin, key, it->second);
  };
  number("cts.img_size", c.img_size);
  number("cts.patch_size", c.patch_size);
  number("cts.in_chans", c.in_chans);
  number("cts.embed_dim", c.embed_dim);
  number("cts.depth", c.depth);
  number("cts.num_heads", c.num_heads);
  number("cts.mlp_ratio", c.mlp_ratio);
  number("cts.num_classes", c.num_classes);
  return c;
}

void save_vit_weights(const VisionTransformer& model, const std::filesystem::path& path, const std::map<std::string, std::string>& extra) {
  std::vector<SafetensorsTensor> tensors;
  for (const auto& p : model->named_parameters()) tensors.push_back({p.key(), p.value().detach().to(torch::kCPU, torch::kFloat32), ""});
  auto meta = vit_metadata(model->config());
  meta["format"] = "pt";
  for (const auto& [k, v] : extra) meta[k] = v;
  save_safetensors(path, tensors, meta);
}

}  // namespace cts
