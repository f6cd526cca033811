// The mae learner (MAE-style self-supervised pretraining): its targets and loss against
// hand-computed cases, the encoder never reading a dropped patch, pretraining that learns
// (masked-patch R² rises from about 0 to clearly above), the weights a vit-classifier run
// then loads (timm names, no head), and the configuration errors.
#include <torch/torch.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "cts/config/config.hpp"
#include "cts/core/console.hpp"
#include "cts/core/error.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/data/registry.hpp"
#include "cts/data/task_split.hpp"
#include "cts/learners/mae/mae.hpp"
#include "cts/learners/registry.hpp"
#include "cts/train/loop.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::TempDir;

// Patch targets: a 1-channel 4x4 image, patch 2 (T = 4), values 0..15 row-major.
TEST(Mae, TargetsArePatchesInGridOrderNormalisedPerPatch) {
  auto img = torch::arange(16, torch::kFloat32).view({1, 1, 4, 4});
  auto raw = mae_targets(img, 2, false);
  ASSERT_EQ(raw.sizes(), (std::vector<int64_t>{1, 4, 4}));
  // Token 1 = row 0, col 1: pixels (0,2) (0,3) (1,2) (1,3) = 2, 3, 6, 7.
  const std::vector<std::vector<float>> want{{0, 1, 4, 5}, {2, 3, 6, 7}, {8, 9, 12, 13}, {10, 11, 14, 15}};
  for (int64_t t = 0; t < 4; ++t)
    for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(raw[0][t][i].item<float>(), want[size_t(t)][size_t(i)]) << t << "," << i;
  // Normalised: patch {0, 1, 4, 5}: mean 2.5, population variance (6.25 + 2.25 + 2.25 + 6.25) / 4 = 4.25.
  auto nrm = mae_targets(img, 2, true);
  EXPECT_NEAR(nrm[0][0][0].item<float>(), (0 - 2.5) / std::sqrt(4.25 + 1e-6), 1e-6);
  EXPECT_NEAR(nrm[0][0][3].item<float>(), (5 - 2.5) / std::sqrt(4.25 + 1e-6), 1e-6);
  // A constant (background) patch gives 0, not NaN.
  auto flat = mae_targets(torch::ones({1, 1, 2, 2}), 2, true);
  EXPECT_EQ(flat.abs().sum().item<float>(), 0.0f);
}

// The loss: per sample, the mean over its dropped patches of the mean squared error.
TEST(Mae, LossCountsDroppedPatchesOnly) {
  auto pred = torch::zeros({2, 3, 2});
  auto target = torch::tensor({1.f, 1.f, 2.f, 2.f, 3.f, 3.f, 0.f, 2.f, 4.f, 4.f, 1.f, 1.f}).view({2, 3, 2});
  auto dropped = torch::tensor({true, false, true, false, true, true}).view({2, 3});
  auto l = mae_sample_losses(pred, target, dropped);
  // Sample 0: patches 0 and 2: (1 + 9) / 2 = 5. Sample 1: patches 1, 2: (16 + 1) / 2 = 8.5.
  EXPECT_NEAR(l[0].item<float>(), 5.0, 1e-6);
  EXPECT_NEAR(l[1].item<float>(), 8.5, 1e-6);
}

struct MaeFixture {
  DatasetSplits data;
  TaskSplit split;
  ModelConfig model;
  LearnerSettings settings;
  MaeFixture() {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(5);
    auto images = torch::randint(0, 256, {6, 1, 8, 8}, gen, torch::kInt64).to(torch::kUInt8);
    auto ds = std::make_shared<TensorDataset>("tiny", images, torch::tensor({0, 1, 0, 1, 0, 1}, torch::kInt64), 2);
    data = {ds, ds};
    split = make_task_split(2, 1, ClassOrder{"natural", {}}, 0);
    model.learner = "mae";
    model.img_size = 8, model.patch_size = 2, model.in_chans = 1, model.embed_dim = 16, model.num_heads = 2, model.depth = 2;
  }
  std::unique_ptr<Learner> learner(const std::string& strategy = "none", double drop = 0.75) {
    LearnerContext c{model, settings, data, split, "tiny", torch::kCPU, 3};
    c.memory_strategy = strategy;
    c.token_drop = drop;
    return make_learner(c);
  }
};

// What the encoder sees: the kept patches only. Changing the pixels of dropped patches leaves
// the reconstruction unchanged; changing a kept patch changes it.
TEST(Mae, TheEncoderNeverReadsADroppedPatch) {
  MaeFixture f;
  auto l = f.learner();
  auto& mae = dynamic_cast<MaskedAutoencoder&>(*l);
  mae.set_training(false);
  torch::NoGradGuard ng;
  auto images = f.data.train->images(torch::arange(2));
  auto positions = torch::tensor({{0, 5, 9, 14}, {3, 4, 10, 15}}, torch::kInt64);  // 4 of 16 patches
  auto [y, dropped] = mae.reconstruct(images, positions);
  ASSERT_EQ(y.sizes(), (std::vector<int64_t>{2, 16, 4}));
  EXPECT_EQ(dropped.sum().item<int64_t>(), 24);
  EXPECT_FALSE(dropped[0][5].item<bool>());
  EXPECT_TRUE(dropped[0][1].item<bool>());
  auto changed = images.clone();
  changed[0][0].narrow(0, 0, 2).narrow(1, 2, 2).fill_(255);  // patch 1 of image 0 (dropped)
  auto y2 = mae.reconstruct(changed, positions).first;
  EXPECT_TRUE(torch::equal(y, y2));
  changed[0][0].narrow(0, 2, 2).narrow(1, 2, 2).fill_(0);  // patch 5 (kept)
  auto y3 = mae.reconstruct(changed, positions).first;
  EXPECT_FALSE(torch::allclose(y.select(0, 0), y3.select(0, 0)));
  EXPECT_TRUE(torch::equal(y.select(0, 1), y3.select(0, 1)));  // the other image is untouched
}

TEST(Mae, ConfigurationErrors) {
  MaeFixture f;
  test::expect_error("a memory", [&] { f.learner("coreset", 0.75); }, {"memory.strategy = coreset", "accepted: none"});
  test::expect_error("no drop", [&] { f.learner("none", 0.0); }, {"train.token_drop", "0.75"});
  f.settings.mae.decoder_dim = 10;
  f.settings.mae.decoder_heads = 4;
  test::expect_error("heads", [&] { f.learner(); }, {"mae.decoder_dim = 10", "mae.decoder_heads = 4"});
}

// Smooth images a masked patch can be inferred from (Fashion-MNIST's idx format, written here):
// 127 + 100 sin(a x + b y + φ), a, b, φ drawn per image; 4 "classes" of 96 training and 24
// test images.
void write_smooth_images(const std::filesystem::path& root) {
  std::filesystem::create_directories(root);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(17);
  for (const auto& [prefix, n] : std::vector<std::pair<std::string, int64_t>>{{"train", 384}, {"t10k", 96}}) {
    auto a = torch::rand({n, 1, 1}, gen) * 0.5 - 0.25, b = torch::rand({n, 1, 1}, gen) * 0.5 - 0.25, phi = torch::rand({n, 1, 1}, gen) * 6.3;
    auto y = torch::arange(28, torch::kFloat32).view({1, 28, 1}), x = torch::arange(28, torch::kFloat32).view({1, 1, 28});
    auto img = (127.0 + 100.0 * torch::sin(a * x + b * y + phi)).round().clamp(0, 255).to(torch::kUInt8);
    std::vector<uint8_t> pixels(img.data_ptr<uint8_t>(), img.data_ptr<uint8_t>() + img.numel()), labels;
    for (int64_t i = 0; i < n; ++i) labels.push_back(uint8_t(i % 4));
    test::write_text(root / (prefix + "-images-idx3-ubyte"), test::idx_file({uint32_t(n), 28, 28}, pixels));
    test::write_text(root / (prefix + "-labels-idx1-ubyte"), test::idx_file({uint32_t(n)}, labels));
  }
}

// Pretraining on images with a structure to learn, then a vit-classifier run from the saved
// encoder.
TEST(Mae, PretrainingLearnsAndItsEncoderLoadsIntoAClassifier) {
  TempDir dir;
  Console::get().set_quiet(true);
  write_smooth_images(dir / "data");
  auto c = parse_config(
      "seed: 2\nthreads: 1\ndata: {name: fashion-mnist, tasks: 1, train_per_class: 0}\n"
      "model: {learner: mae, preset: vit_nano_patch4_28, embed_dim: 32, depth: 2, num_heads: 2}\n"
      "train: {epochs: 40, batch_size: 32, warmup_steps: 4, lr: 2.0e-3, token_drop: 0.75}\n"
      "memory: {strategy: none}\nmae: {decoder_depth: 1}\noutput: {progress: none}\n",
      "test", {"data.root=" + (dir / "data").string()});
  c.name = "mae";
  RunOptions o;
  o.out_dir = dir / "mae";
  ASSERT_TRUE(run_experiment(c, o).completed);
  auto m = test::read_json(dir / "mae" / "metrics.json");
  ASSERT_TRUE(m.contains("masked_r2_matrix")) << m.dump();
  const double after = m["masked_r2_matrix"][0][0].get<double>();
  // The same learner untrained, on the same test set and masks.
  auto splits = open_dataset(c.data, 4, 2);
  auto split = make_task_split(splits.train->num_classes(), 1, c.data.class_order, 2);
  ASSERT_EQ(splits.train->size(), 384);
  LearnerContext lc{c.model, c.learners, splits, split, "synthetic", torch::kCPU, 2};
  lc.memory_strategy = "none";
  lc.token_drop = 0.75;
  const double before = make_learner(lc)->evaluate(*splits.test, 0, {0}, 64)[0].at("masked_r2");
  EXPECT_LT(before, 0.05);
  EXPECT_GT(after, 0.3) << "before " << before << "\n" << m.dump();
  // The weights: the encoder in timm names, no head, no decoder.
  const auto weights = dir / "mae" / "model.safetensors";
  auto st = load_safetensors(weights);
  EXPECT_TRUE(st.tensors.count("blocks.1.attn.qkv.weight"));
  EXPECT_TRUE(st.tensors.count("pos_embed"));
  EXPECT_FALSE(st.tensors.count("head.weight"));
  for (const auto& [name, t] : st.tensors) EXPECT_EQ(name.rfind("decoder.", 0), std::string::npos) << name;
  EXPECT_NE(st.meta("cts.pretraining").find("mae (mask ratio 0.75"), std::string::npos);
  // A classifier run from them: loaded, the head noted as new.
  auto cc = parse_config(
      "seed: 2\nthreads: 1\ndata: {name: fashion-mnist, tasks: 1, train_per_class: 0}\n"
      "model: {preset: vit_nano_patch4_28, embed_dim: 32, depth: 2, num_heads: 2}\n"
      "train: {epochs: 1, batch_size: 32, warmup_steps: 2}\nmemory: {strategy: none}\noutput: {progress: none}\n",
      "test", {"model.weights=" + weights.string(), "data.root=" + (dir / "data").string()});
  cc.name = "from-mae";
  RunOptions o2;
  o2.out_dir = dir / "cls";
  ASSERT_TRUE(run_experiment(cc, o2).completed);
  const auto log = test::read_text(dir / "cls" / "log.jsonl");
  EXPECT_NE(log.find("head not in the file"), std::string::npos) << log.substr(0, 800);
  Console::get().set_quiet(false);
}

}  // namespace
}  // namespace cts
