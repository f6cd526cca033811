// ViT: timm parameter names and shapes, forward shapes, partial-input fill modes (a
// dropped patch's pixels cannot change the output), an independent Python reference, and
// weight loading (head re-creation, pos_embed resampling, channel adaptation).
#include <torch/torch.h>

#include "cts/core/error.hpp"
#include "cts/core/rng.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/attribution/explain.hpp"
#include "cts/models/cpu_attention.hpp"
#include "cts/models/vit.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::TempDir;

// timm's vit_tiny_patch16_224 state dict (names and shapes), written out from timm's
// VisionTransformer definition: patch_embed.proj, cls_token, pos_embed, 12 pre-norm blocks,
// norm, head.
std::vector<std::pair<std::string, std::vector<int64_t>>> timm_vit_tiny_names() {
  std::vector<std::pair<std::string, std::vector<int64_t>>> v = {
      {"cls_token", {1, 1, 192}}, {"pos_embed", {1, 197, 192}}, {"patch_embed.proj.weight", {192, 3, 16, 16}}, {"patch_embed.proj.bias", {192}}};
  for (int i = 0; i < 12; ++i) {
    const std::string b = "blocks." + std::to_string(i) + ".";
    v.push_back({b + "norm1.weight", {192}});
    v.push_back({b + "norm1.bias", {192}});
    v.push_back({b + "attn.qkv.weight", {576, 192}});
    v.push_back({b + "attn.qkv.bias", {576}});
    v.push_back({b + "attn.proj.weight", {192, 192}});
    v.push_back({b + "attn.proj.bias", {192}});
    v.push_back({b + "norm2.weight", {192}});
    v.push_back({b + "norm2.bias", {192}});
    v.push_back({b + "mlp.fc1.weight", {768, 192}});
    v.push_back({b + "mlp.fc1.bias", {768}});
    v.push_back({b + "mlp.fc2.weight", {192, 768}});
    v.push_back({b + "mlp.fc2.bias", {192}});
  }
  v.push_back({"norm.weight", {192}});
  v.push_back({"norm.bias", {192}});
  v.push_back({"head.weight", {1000, 192}});
  v.push_back({"head.bias", {1000}});
  return v;
}

TEST(ViT, ParameterNamesAndShapesMatchTimm) {
  VisionTransformer m(vit_preset("vit_tiny_patch16_224"));
  auto params = m->named_parameters();
  auto expected = timm_vit_tiny_names();
  EXPECT_EQ(params.size(), expected.size());
  for (const auto& [name, shape] : expected) {
    ASSERT_TRUE(params.contains(name)) << "missing " << name;
    EXPECT_EQ(params[name].sizes().vec(), shape) << name;
  }
  int64_t total = 0;
  for (const auto& p : m->parameters()) total += p.numel();
  EXPECT_EQ(total, 5717416);  // timm: vit_tiny_patch16_224 has 5.72 M parameters
  // Buffers (normalisation constants) are not parameters and not saved as weights.
  EXPECT_FALSE(params.contains("norm_mean"));
}

TEST(ViT, ForwardShapesAndInitIsSeeded) {
  auto cfg = test::tiny_vit_config();
  VisionTransformer m(cfg, 7), same(cfg, 7), other(cfg, 8);
  m->eval();
  auto x = torch::randn({3, 3, 16, 16});
  auto tokens = m->forward_features(x);
  EXPECT_EQ(tokens.sizes(), (std::vector<int64_t>{3, 17, 32}));
  EXPECT_EQ(m->forward_head(tokens).sizes(), (std::vector<int64_t>{3, 5}));
  EXPECT_TRUE(torch::equal(m->pos_embed, same->pos_embed));
  EXPECT_FALSE(torch::equal(m->pos_embed, other->pos_embed));
  // timm's init: trunc-normal std .02 for pos_embed / Linear weights, zero biases.
  auto qkv = std::static_pointer_cast<BlockImpl>(m->blocks[0])->attn->qkv;
  EXPECT_NEAR(qkv->weight.std().item<double>(), 0.02, 0.002);
  EXPECT_EQ(qkv->bias.abs().max().item<double>(), 0.0);
  EXPECT_LE(m->pos_embed.abs().max().item<double>(), 2.0);
}

TEST(ViT, NormalizeUsesPresetMeanStdAndRepeatsGray) {
  auto cfg = test::tiny_vit_config();
  VisionTransformer m(cfg);
  auto gray = torch::full({1, 1, 16, 16}, 255, torch::kUInt8);
  auto x = m->normalize(gray);
  EXPECT_EQ(x.sizes(), (std::vector<int64_t>{1, 3, 16, 16}));
  EXPECT_NEAR(x.max().item<double>(), 1.0, 1e-6);  // (1 - 0.5) / 0.5
  EXPECT_THROW(m->normalize(torch::zeros({1, 3, 8, 8}, torch::kUInt8)), c10::Error);
}

// A dropped patch's pixels cannot change the output in any fill mode; kept ones do.
TEST(ViT, DroppedPixelsCannotChangeTheOutput) {
  auto cfg = test::tiny_vit_config();
  VisionTransformer m(cfg, 1);
  m->eval();
  torch::NoGradGuard ng;
  auto x = torch::randn({2, 3, 16, 16});
  auto positions = torch::tensor({{0, 5, 6, 15}, {1, 2, 3, 4}}, torch::kInt64);
  auto y = x.clone();
  // Patch 10 (row 2, col 2: pixels [8:12, 8:12]) is dropped in both samples.
  y.narrow(2, 8, 4).narrow(3, 8, 4).normal_();
  for (auto fill : {FillMode::ZeroEmbedding, FillMode::ZeroPixel, FillMode::Drop, FillMode::Black}) {
    TokenKeep keep{positions, fill, 1.0};
    auto a = m->forward(x, {&keep, nullptr});
    auto b = m->forward(y, {&keep, nullptr});
    EXPECT_TRUE(torch::allclose(a, b, 0, 0)) << fill_mode_name(fill);
    auto z = x.clone();
    z.narrow(2, 0, 4).narrow(3, 0, 4).add_(3.0);  // patch 0: kept in sample 0 only
    auto c = m->forward(z, {&keep, nullptr});
    EXPECT_GT((c[0] - a[0]).abs().max().item<double>(), 1e-4) << fill_mode_name(fill);
    EXPECT_TRUE(torch::allclose(c[1], a[1], 0, 0)) << fill_mode_name(fill);
  }
}

// The black fill is an ordinary whole image: the kept patches, and raw pixel 0 everywhere
// else. Built here in uint8 space (before normalisation) and run without any keep.
TEST(ViT, BlackFillEqualsTheImageWithRawZeroPatches) {
  auto cfg = test::tiny_vit_config();
  cfg.mean = {0.2, 0.4, 0.6};
  cfg.std = {0.3, 0.5, 0.7};
  VisionTransformer m(cfg, 3);
  m->eval();
  torch::NoGradGuard ng;
  auto gen = make_generator(5, "black_fill_test");
  auto u8 = torch::randint(1, 256, {2, 3, 16, 16}, gen, torch::kInt64).to(torch::kUInt8);
  auto positions = torch::tensor({{0, 5, 6, 15}, {1, 2, 3, -1}}, torch::kInt64);
  auto painted = u8.clone();
  for (int64_t b = 0; b < 2; ++b) {
    for (int64_t t = 0; t < 16; ++t) {
      bool kept = false;
      for (int64_t k = 0; k < 4; ++k) kept = kept || positions[b][k].item<int64_t>() == t;
      if (!kept) painted[b].narrow(1, (t / 4) * 4, 4).narrow(2, (t % 4) * 4, 4).zero_();
    }
  }
  TokenKeep keep{positions, FillMode::Black, 1.0};
  auto filled = m->forward(m->normalize(u8), {&keep, nullptr});
  auto whole = m->forward(m->normalize(painted));
  EXPECT_TRUE(torch::allclose(filled, whole, 1e-5, 1e-5)) << (filled - whole).abs().max();
  // Not the zero-pixel fill (0 after normalisation is mid-gray, not black).
  TokenKeep gray{positions, FillMode::ZeroPixel, 1.0};
  EXPECT_GT((m->forward(m->normalize(u8), {&gray, nullptr}) - whole).abs().max().item<double>(), 1e-3);
  EXPECT_EQ(parse_fill_mode("black"), FillMode::Black);
}

TEST(ViT, DropWithAllTokensEqualsFullAndPatchPathMatches) {
  auto cfg = test::tiny_vit_config();
  VisionTransformer m(cfg, 2);
  m->eval();
  torch::NoGradGuard ng;
  auto x = torch::randn({2, 3, 16, 16});
  auto all = torch::arange(16, torch::kInt64).unsqueeze(0).expand({2, 16}).contiguous();
  TokenKeep keep{all, FillMode::Drop, 1.0};
  EXPECT_TRUE(torch::allclose(m->forward(x), m->forward(x, {&keep, nullptr}), 1e-5, 1e-5));
  // forward_features_patches (replay straight from stored patches) equals drop on the image.
  auto pos = torch::tensor({{3, 7, 9, -1}, {0, 1, 2, 12}}, torch::kInt64);
  TokenKeep dk{pos, FillMode::Drop, 1.0};
  auto via_image = m->forward(x, {&dk, nullptr});
  auto patches = x.reshape({2, 3, 4, 4, 4, 4}).permute({0, 2, 4, 1, 3, 5}).reshape({2, 16, 3, 4, 4});
  auto kept = patches.gather(1, pos.clamp_min(0).view({2, 4, 1, 1, 1}).expand({2, 4, 3, 4, 4}));
  auto via_patches = m->forward_head(m->forward_features_patches(kept, pos));
  EXPECT_TRUE(torch::allclose(via_image, via_patches, 1e-5, 1e-5));
}

TEST(PythonViT, MatchesIndependentPyTorchReference) {
  ASSERT_TRUE(test::python_torch_available()) << "Debian's python3-torch is needed (scripts/install-deps installs it)";
  TempDir dir;
  auto cfg = test::tiny_vit_config();
  VisionTransformer m(cfg, 3);
  m->eval();
  {
    torch::NoGradGuard ng;  // non-trivial norms and biases
    for (auto& p : m->parameters()) p.add_(torch::randn(p.sizes()) * 0.05);
  }
  save_vit_weights(m, dir / "model.safetensors");
  torch::NoGradGuard ng;
  auto x = torch::randn({3, 3, 16, 16});
  auto pos = torch::tensor({{0, 4, 9, 15}, {2, 3, -1, -1}, {1, 6, 11, -1}}, torch::kInt64);
  std::vector<SafetensorsTensor> t = {{"images", x, ""}, {"positions", pos, ""}, {"logits_full", m->forward(x), ""}};
  for (auto [name, fill] : {std::pair{"zero_embedding", FillMode::ZeroEmbedding}, {"zero_pixel", FillMode::ZeroPixel}, {"drop", FillMode::Drop}}) {
    TokenKeep keep{pos, fill, 1.0};
    t.push_back({std::string("logits_") + name, m->forward(x, {&keep, nullptr}), ""});
  }
  save_safetensors(dir / "case.safetensors", t);
  auto r = test::run_python("vit_reference.py", (dir / "model.safetensors").string() + " " + (dir / "case.safetensors").string());
  std::cout << r.output;
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(ViTWeights, RoundTripAndAdaptation) {
  TempDir dir;
  auto cfg = test::tiny_vit_config();
  VisionTransformer a(cfg, 4);
  save_vit_weights(a, dir / "w.safetensors");
  VisionTransformer b(cfg, 5);
  auto rep = load_vit_weights(b, dir / "w.safetensors");
  EXPECT_TRUE(rep.notes.empty());
  for (const auto& [k, v] : a->state()) EXPECT_TRUE(torch::equal(v, b->state()[k])) << k;
  EXPECT_EQ(load_safetensors(dir / "w.safetensors").meta("cts.embed_dim"), "32");

  // Another class count: the head is re-created, everything else loads.
  auto c10 = cfg;
  c10.num_classes = 10;
  VisionTransformer c(c10, 6);
  auto head_before = c->head->weight.clone();
  rep = load_vit_weights(c, dir / "w.safetensors");
  ASSERT_EQ(rep.notes.size(), 1u);
  EXPECT_NE(rep.notes[0].find("head re-created"), std::string::npos);
  EXPECT_TRUE(torch::equal(c->head->weight, head_before));
  EXPECT_TRUE(torch::equal(c->pos_embed, a->pos_embed));

  // Larger grid and one input channel: pos_embed resampled, patch conv summed over RGB.
  auto big = cfg;
  big.img_size = 24, big.in_chans = 1;
  VisionTransformer d(big, 7);
  rep = load_vit_weights(d, dir / "w.safetensors");
  EXPECT_EQ(d->pos_embed.size(1), 37);
  EXPECT_TRUE(torch::equal(d->pos_embed.select(1, 0), a->pos_embed.select(1, 0)));  // CLS position kept
  EXPECT_TRUE(torch::allclose(d->patch_embed->proj->weight, a->patch_embed->proj->weight.sum(1, true)));
  EXPECT_EQ(rep.notes.size(), 2u);

  // A structurally different file is refused, naming the tensors.
  save_safetensors(dir / "x.safetensors", {{"blocks.0.ls1.gamma", torch::ones({32}), ""}});
  try {
    load_vit_weights(b, dir / "x.safetensors");
    FAIL() << "expected an error";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("blocks.0.ls1.gamma"), std::string::npos);
  }
}

// A model rebuilt from a weights file (cts explain) must follow every architecture key cts
// wrote, not the preset's defaults: here a non-default MLP ratio, depth, heads and width.
TEST(ViTWeights, InferenceModelFollowsEveryArchitectureKeyOfItsMetadata) {
  TempDir dir;
  auto cfg = test::tiny_vit_config();
  cfg.mlp_ratio = 2.0, cfg.depth = 3, cfg.num_heads = 2, cfg.embed_dim = 24;
  VisionTransformer a(cfg, 4);
  save_vit_weights(a, dir / "w.safetensors");
  auto loaded = load_model_for_inference(dir / "w.safetensors", "");
  const auto& got = loaded.model->config();
  EXPECT_EQ(got.mlp_ratio, 2.0);
  EXPECT_EQ(got.depth, 3);
  EXPECT_EQ(got.num_heads, 2);
  EXPECT_EQ(got.embed_dim, 24);
  EXPECT_EQ(got.img_size, 16);
  EXPECT_EQ(got.in_chans, 3);
  EXPECT_EQ(got.num_classes, 5);
  for (const auto& [k, v] : a->state()) EXPECT_TRUE(torch::equal(v, loaded.model->state()[k])) << k;
  auto x = torch::rand({2, 3, 16, 16});
  torch::NoGradGuard no_grad;
  a->eval();
  EXPECT_TRUE(torch::equal(a->forward(x), loaded.model->forward(x)));
  // The mapping itself round-trips every field.
  const auto back = vit_config_from_metadata(vit_metadata(cfg), "test");
  EXPECT_EQ(back.preset, cfg.preset);
  EXPECT_EQ(back.mlp_ratio, cfg.mlp_ratio);
  EXPECT_EQ(back.patch_size, cfg.patch_size);
  EXPECT_EQ(back.num_classes, cfg.num_classes);
}

// Inference reads only the CLS token: forward_cls computes the last block's CLS row alone and
// must equal the full forward's CLS features (with and without qkv bias).
TEST(ViT, ForwardClsEqualsTheFullForwardAtTheClsToken) {
  for (bool bias : {true, false}) {
    auto cfg = test::tiny_vit_config();
    cfg.qkv_bias = bias;
    VisionTransformer m(cfg, 8);
    {
      torch::NoGradGuard no_grad;  // non-trivial norms and biases (timm init leaves them 1 / 0)
      for (auto& p : m->named_parameters())
        if (p.key().find("norm") != std::string::npos || p.key().find("bias") != std::string::npos) p.value().add_(torch::randn_like(p.value()) * 0.3);
    }
    m->eval();
    torch::NoGradGuard no_grad;
    auto x = m->normalize(torch::randint(0, 256, {5, 3, 16, 16}, torch::kInt64).to(torch::kUInt8));
    auto full = m->pre_logits(m->forward_features(x));
    auto cls = m->forward_cls(x);
    ASSERT_EQ(cls.sizes(), full.sizes());
    const double diff = (cls - full).abs().max().item<double>();
    std::cout << "qkv bias " << bias << ": max |forward_cls - full| " << diff << "\n";
    EXPECT_LT(diff, 1e-5);
  }
}

// CPU inference runs attention's two products with the BLAS gemm called directly
// (models/cpu_attention.hpp): the same numbers as ATen's matmul bit for bit, checked on the
// shapes cts runs (vit_nano's 50 tokens, a 197-token ViT-B-like layer, the CLS row of
// forward_cls, a short dropped-token sequence), and against a float64 computation.
TEST(CpuAttention, EqualsTorchMatmulBitForBitAndAFloat64Reference) {
  if (!cpu_attention_available()) GTEST_SKIP() << "this BLAS has no sgemm_ symbol: the torch path is used";
  torch::NoGradGuard no_grad;
  auto gen = make_generator(5, "cpu_attention_test");
  struct Shape {
    int64_t B, M, N, H, dh;
  };
  for (const auto& s : std::vector<Shape>{{3, 50, 50, 4, 16}, {2, 197, 197, 3, 64}, {4, 1, 50, 4, 16}, {3, 6, 6, 4, 16}, {2, 1, 6, 4, 16}}) {
    const int64_t D = s.H * s.dh;
    // q, k, v as the qkv projection lays them out: [B, N, 3, Hd, dh] (strided slices).
    auto qkv = torch::randn({s.B, s.N, 3, s.H, s.dh}, gen);
    auto q = qkv.narrow(1, 0, s.M).select(2, 0), k = qkv.select(2, 1), v = qkv.select(2, 2);
    const double scale = 1.0 / std::sqrt(double(s.dh));
    auto torch_path = [&] {
      auto a = torch::softmax(torch::matmul(q.transpose(1, 2), k.permute({0, 2, 3, 1})) * scale, -1);  // [B, Hd, M, N]
      return torch::matmul(a, v.transpose(1, 2)).transpose(1, 2).reshape({s.B, s.M, D});
    };
    const auto direct = cpu_attention(q, k, v, scale);
    const std::string what = "B " + std::to_string(s.B) + " M " + std::to_string(s.M) + " N " + std::to_string(s.N) + " dh " + std::to_string(s.dh);
    if (s.dh * s.M * s.N < 400) {  // ATen's own small-matrix loop: not taken over
      EXPECT_FALSE(direct.defined()) << what;
      continue;
    }
    ASSERT_TRUE(direct.defined()) << what;
    EXPECT_TRUE(torch::equal(direct, torch_path())) << what;
    // softmax(scale q kᵀ) v per sample and head in float64, written out with loops' worth of einsum.
    auto q64 = q.to(torch::kFloat64), k64 = k.to(torch::kFloat64), v64 = v.to(torch::kFloat64);
    auto w = torch::softmax(torch::einsum("bmhd,bnhd->bhmn", {q64, k64}) * scale, -1);
    auto ref = torch::einsum("bhmn,bnhd->bmhd", {w, v64}).reshape({s.B, s.M, D});
    EXPECT_LT((direct.to(torch::kFloat64) - ref).abs().max().item<double>(), 1e-5) << what;
  }
  // Autograd needs the torch path.
  auto qg = torch::randn({1, 50, 4, 16}).requires_grad_();
  EXPECT_FALSE(cpu_attention(qg, qg.detach(), qg.detach(), 0.25).defined());
}

// The model's inference forwards (full and CLS-only; direct attention, in-place residual sums
// and GELU) give the same bits as the autograd forward, with and without the direct path.
TEST(CpuAttention, InferenceForwardsEqualTheAutogradForward) {
  if (!cpu_attention_available()) GTEST_SKIP() << "this BLAS has no sgemm_ symbol: the torch path is used";
  VisionTransformer m(vit_preset("vit_nano_patch4_28"), 3);
  m->eval();
  auto x = m->normalize(torch::randint(0, 256, {7, 1, 28, 28}, torch::kInt64).to(torch::kUInt8));
  auto full = m->forward(x, {});  // grad mode: the torch ops, out of place
  ASSERT_TRUE(full.requires_grad());
  auto cls = m->forward_cls(x);
  ASSERT_TRUE(cls.requires_grad());
  c10::InferenceMode inference;
  for (bool direct : {true, false}) {
    set_cpu_attention_enabled(direct);
    EXPECT_TRUE(torch::equal(m->forward(x, {}), full.detach())) << "direct " << direct;
    EXPECT_TRUE(torch::equal(m->forward_cls(x), cls.detach())) << "direct " << direct;
  }
  set_cpu_attention_enabled(true);
}

TEST(ViT, ResizeHeadKeepsOldRows) {
  auto cfg = test::tiny_vit_config();
  VisionTransformer m(cfg, 1);
  auto old_w = m->head->weight.clone();
  auto init = init_head_rows(12, 32, 9);
  m->resize_head(12, init);
  EXPECT_EQ(m->num_classes(), 12);
  EXPECT_TRUE(torch::equal(m->head->weight.narrow(0, 0, 5), old_w));
  EXPECT_TRUE(torch::equal(m->head->weight.narrow(0, 5, 7), init.narrow(0, 5, 7)));
  EXPECT_EQ(m->head->bias.abs().sum().item<double>(), 0.0);
  // The new head is registered under timm's name and trained by the optimizer.
  EXPECT_TRUE(m->named_parameters().contains("head.weight"));
  EXPECT_EQ(m->named_parameters()["head.weight"].size(0), 12);
}

TEST(ViT, PresetErrorsListAcceptedNames) {
  try {
    vit_preset("vit_huge");
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("vit_base_patch16_224"), std::string::npos);
  }
}

}  // namespace
}  // namespace cts
