// The linear-probe learner, the second model kind on the learner interface: its features
// against the formula computed here by hand for every fill mode, the learner registry, runs
// of the sequential loop with it (it learns, replays, selects memories, stops and resumes bit
// for bit), and its errors (attribution needs attention; no weights file).
#include <torch/torch.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "cts/config/config.hpp"
#include "cts/core/console.hpp"
#include "cts/core/error.hpp"
#include "cts/core/safetensors.hpp"
#include "cts/data/task_split.hpp"
#include "cts/learners/linear_probe/linear_probe.hpp"
#include "cts/learners/registry.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/train/loop.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::TempDir;

// 8x8 gray images, patch 4 (T = 4 tokens), width D = 6; 4 classes in 2 tasks.
struct ProbeFixture {
  DatasetSplits data;
  TaskSplit split;
  ModelConfig model;
  LearnerSettings settings;
  ProbeFixture() {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
    auto images = torch::randint(0, 256, {8, 1, 8, 8}, gen, torch::kInt64).to(torch::kUInt8);
    auto labels = torch::tensor({0, 1, 2, 3, 0, 1, 2, 3}, torch::kInt64);
    auto ds = std::make_shared<TensorDataset>("tiny", images, labels, 4);
    data = {ds, ds};
    split = make_task_split(4, 2, ClassOrder{"natural", {}}, 0);
    model.learner = "linear-probe";
    model.img_size = 8, model.patch_size = 4, model.in_chans = 1, model.embed_dim = 6, model.num_heads = 2;
  }
  std::unique_ptr<Learner> learner(uint64_t seed = 3) { return make_learner(LearnerContext{model, settings, data, split, "tiny", torch::kCPU, seed}); }
};

double gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

// f(x) by the formula, in double, with explicit loops: patch t = rows 4r..4r+3, cols 4c..4c+3
// of the 2x2 grid, pixels normalised (v/255 - 0.5) / 0.5.
std::vector<double> features_by_hand(const LinearProbe& probe, const torch::Tensor& image_u8, const std::vector<int64_t>& kept, FillMode fill,
                                     double rescale) {
  const auto st = probe.state_tensors();
  auto W = st.at("patch.weight").to(torch::kFloat64), b = st.at("patch.bias").to(torch::kFloat64), pos = st.at("pos").to(torch::kFloat64);
  const int64_t D = W.size(0);
  std::vector<double> sum(size_t(D), 0.0);
  int64_t count = 0;
  for (int64_t t = 0; t < 4; ++t) {
    const bool keep = kept.empty() || std::find(kept.begin(), kept.end(), t) != kept.end();
    if (!keep && fill == FillMode::Drop) continue;
    const int64_t r = t / 2, c = t % 2;
    for (int64_t d = 0; d < D; ++d) {
      double e = b[d].item<double>();
      if (keep || fill != FillMode::ZeroPixel) {
        for (int64_t i = 0; i < 4; ++i)
          for (int64_t j = 0; j < 4; ++j) {
            const double v = (image_u8[0][4 * r + i][4 * c + j].item<double>() / 255.0 - 0.5) / 0.5;
            e += W[d][i * 4 + j].item<double>() * v;
          }
      }
      if (!keep && fill == FillMode::ZeroEmbedding) e = 0.0;
      if (keep && !kept.empty()) e *= rescale;
      sum[size_t(d)] += gelu(e + pos[t][d].item<double>());
    }
    ++count;
  }
  for (auto& v : sum) v /= double(count);
  return sum;
}

void expect_close(const torch::Tensor& got, const std::vector<double>& want, const std::string& what) {
  ASSERT_EQ(got.numel(), int64_t(want.size())) << what;
  double worst = 0;
  for (size_t d = 0; d < want.size(); ++d) worst = std::max(worst, std::abs(got[int64_t(d)].item<double>() - want[d]));
  std::cout << what << ": max |difference| " << worst << "\n";
  EXPECT_LT(worst, 1e-5) << what;
}

TEST(LinearProbe, FeaturesFollowTheFormulaForEveryFill) {
  ProbeFixture fx;
  auto learner = fx.learner();
  auto& probe = dynamic_cast<LinearProbe&>(*learner);
  auto image = fx.data.train->images(torch::tensor({2}, torch::kInt64));  // [1, 1, 8, 8]
  torch::NoGradGuard no_grad;
  Batch full;
  full.images = image;
  expect_close(probe.features(full)[0], features_by_hand(probe, image[0], {}, FillMode::ZeroEmbedding, 1.0), "all tokens");
  for (FillMode fill : {FillMode::ZeroEmbedding, FillMode::ZeroPixel, FillMode::Drop}) {
    for (double rescale : {1.0, 2.0}) {
      Batch b;
      b.images = image;
      b.keep.positions = torch::tensor({{1, 3}}, torch::kInt64);
      b.keep.fill = fill;
      b.keep.rescale = rescale;
      const auto want = features_by_hand(probe, image[0], {1, 3}, fill, rescale);
      expect_close(probe.features(b)[0], want, std::string(fill_mode_name(fill)) + " rescale " + std::to_string(rescale));
      // Only the kept patches (the buffer's drop-mode layout, -1 padding) give the same.
      auto patches = torch::zeros({1, 3, 1, 4, 4}, torch::kUInt8);
      patches[0][0].copy_(image[0].narrow(1, 0, 4).narrow(2, 4, 4));  // token 1: rows 0-3, cols 4-7
      patches[0][1].copy_(image[0].narrow(1, 4, 4).narrow(2, 4, 4));  // token 3: rows 4-7, cols 4-7
      Batch p;
      p.patches = patches;
      p.keep.positions = torch::tensor({{1, 3, -1}}, torch::kInt64);
      p.keep.fill = fill;
      p.keep.rescale = rescale;
      expect_close(probe.features(p)[0], want, std::string("patches only, ") + fill_mode_name(fill));
    }
  }
}

TEST(LinearProbe, HeadGrowsKeepingOldRowsAndStateRoundTrips) {
  ProbeFixture fx;
  auto a = fx.learner();
  a->begin_task(0);
  auto rows0 = a->state_tensors().at("head.weight").clone();
  ASSERT_EQ(rows0.size(0), 2);
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, p] : a->trainable_parameters()) p.add_(0.25);  // as if trained
  }
  auto trained = a->state_tensors().at("head.weight").clone();
  a->begin_task(1);
  auto rows1 = a->state_tensors().at("head.weight");
  ASSERT_EQ(rows1.size(0), 4);
  EXPECT_TRUE(torch::equal(rows1.narrow(0, 0, 2), trained)) << "old rows are kept";
  EXPECT_EQ(a->trainable_parameters().size(), 2u) << "only the head trains";
  // A learner built from another seed and loaded with a's state scores exactly like a.
  auto b = fx.learner(99);
  b->load_state(a->state_info(), a->state_tensors());
  const auto sa = a->evaluate(*fx.data.test, 2, {0, 1}, 3), sb = b->evaluate(*fx.data.test, 2, {0, 1}, 3);
  for (size_t j = 0; j < sa.size(); ++j) EXPECT_EQ(sa[j], sb[j]) << "task " << j;
}

TEST(Learners, RegistryListsTheKindsAndRejectsOthers) {
  const auto names = learner_names();
  EXPECT_NE(std::find(names.begin(), names.end(), "vit-classifier"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "linear-probe"), names.end());
  ProbeFixture fx;
  fx.model.learner = "dytox-v0";
  try {
    fx.learner();
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("linear-probe"), std::string::npos) << e.what();
  }
}

// A small sequential run with the linear probe (synthetic data, 3 tasks of 2 classes).
Config probe_config(const std::vector<std::string>& sets = {}) {
  auto c = parse_config(
      "seed: 2\nthreads: 1\ndata: {name: synthetic, tasks: 3, num_classes: 6, train_per_class: 60, test_per_class: 30}\n"
      "model: {learner: linear-probe, preset: vit_nano_patch4_28, embed_dim: 64}\n"
      "train: {epochs: 4, batch_size: 16, replay_batch_size: 16, warmup_steps: 2, lr: 5.0e-2, checkpoint_every: 7}\n"
      "memory: {strategy: core-tokenset, retention: 0.09, fill: drop}\noutput: {progress: none}\n",
      "probe", sets);
  c.name = "probe";
  return c;
}

nlohmann::json metrics_without_timing(const std::filesystem::path& run) {
  auto j = nlohmann::json::parse(test::read_text(run / "metrics.json"));
  j.erase("timing");
  return j;
}

TEST(LinearProbe, SequentialRunsLearnReplayAndResumeBitIdentically) {
  TempDir dir;
  Console::get().set_quiet(true);
  RunOptions full;
  full.out_dir = dir / "full";
  auto s = run_experiment(probe_config(), full);
  ASSERT_TRUE(s.completed);
  // It learns: task 0 right after training it, and task-IL at the end, well above chance (50 %).
  const auto& R = s.record.matrix("accuracy");
  EXPECT_GT(R[0][0], 0.8);
  EXPECT_GT(s.record.metrics(s.record.metric_specs[1]).final_average_accuracy, 0.8);
  // The memory is the configured core tokenset: s = k = 0.3 of 60 samples / 49 tokens.
  auto buffer = TokenBuffer::load(dir / "full" / "buffer.safetensors");
  EXPECT_EQ(buffer.size(), 6 * 18);
  EXPECT_EQ(buffer.tokens(), 6 * 18 * 15);
  // The weights file holds the probe's tensors and says what it is.
  auto w = load_safetensors(dir / "full" / "model.safetensors");
  EXPECT_EQ(w.meta("cts.learner"), "linear-probe");
  EXPECT_EQ(w.at("head.weight").size(0), 6);
  // Replaying whole samples keeps old tasks in class-IL where finetuning does not (measured:
  // 56 % vs 33 %; a 9 % core tokenset does not help this probe: 37 %, its mean over 15 of 49
  // token features is far from the full image's).
  RunOptions none, coreset;
  none.out_dir = dir / "none";
  coreset.out_dir = dir / "coreset";
  auto f = run_experiment(probe_config({"memory.strategy=none"}), none);
  auto c = run_experiment(probe_config({"memory.strategy=coreset", "memory.retention=0.1"}), coreset);
  EXPECT_GT(c.record.metrics().final_average_accuracy, f.record.metrics().final_average_accuracy + 0.1);
  // Stopped mid-task twice and resumed: the same metrics, buffer and weights as uninterrupted.
  RunOptions part;
  part.out_dir = dir / "part";
  part.stop_after_steps = 9;
  EXPECT_FALSE(run_experiment(probe_config(), part).completed);
  RunOptions resume;
  resume.resume_dir = dir / "part";
  resume.stop_after_steps = 20;
  EXPECT_FALSE(run_experiment(probe_config(), resume).completed);
  resume.stop_after_steps = -1;
  EXPECT_TRUE(run_experiment(probe_config(), resume).completed);
  Console::get().set_quiet(false);
  EXPECT_EQ(metrics_without_timing(dir / "full"), metrics_without_timing(dir / "part"));
  EXPECT_EQ(test::read_text(dir / "full" / "buffer.safetensors"), test::read_text(dir / "part" / "buffer.safetensors"));
  auto wp = load_safetensors(dir / "part" / "model.safetensors");
  for (const auto& e : w.entries) EXPECT_TRUE(torch::equal(w.at(e.name), wp.at(e.name))) << e.name;
}

TEST(LinearProbe, CoresetsAndByteBudgetsWorkAttributionNeedsAttention) {
  TempDir dir;
  Console::get().set_quiet(true);
  for (const auto& sets : std::vector<std::vector<std::string>>{
           {"memory.strategy=coreset", "memory.coreset=gradmatch", "memory.retention=0.1"},
           {"memory.coreset=craig", "memory.fill=zero-pixel", "memory.use_weights=true"},
           {"memory.budget_bytes=40000", "memory.coreset=herding"}}) {
    RunOptions o;
    o.out_dir = dir / std::to_string(std::hash<std::string>{}(sets.front() + sets.back()));
    auto s = run_experiment(probe_config(sets), o);
    EXPECT_TRUE(s.completed) << sets.front();
    if (sets.front() == "memory.budget_bytes=40000") EXPECT_LE(s.record.memory.bytes, 40000);
  }
  // Attribution reads attention maps; the probe has none: a clear error naming what works.
  RunOptions o;
  o.out_dir = dir / "gradcam";
  try {
    run_experiment(probe_config({"memory.tokens=gradcam"}), o);
    FAIL() << "expected an InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("linear-probe"), std::string::npos) << msg;
    EXPECT_NE(msg.find("accepted: random"), std::string::npos) << msg;
  }
  Console::get().set_quiet(false);
  // Its features are drawn from the seed: a weights file is refused, naming the key.
  ProbeFixture fx;
  fx.model.weights = "vit.safetensors";
  EXPECT_THROW(fx.learner(), InputError);
}

}  // namespace
}  // namespace cts
