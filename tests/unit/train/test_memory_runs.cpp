// Every coreset method times every token method in `cts run`, byte budgets, joint selection
// and replay weights end to end, and the memory config's errors.
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <set>

#include "cts/attribution/registry.hpp"
#include "cts/config/config.hpp"
#include "cts/core/console.hpp"
#include "cts/core/error.hpp"
#include "cts/coreset/registry.hpp"
#include "cts/memory/token_buffer.hpp"
#include "cts/train/loop.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using test::TempDir;
using test::read_json;

// ------------------------------------------------------------------ runs and config

Config tiny_config(const std::vector<std::string>& sets) {
  auto c = parse_config(
      "seed: 2\nthreads: 1\ndata: {name: synthetic, tasks: 2, num_classes: 4, train_per_class: 16, test_per_class: 6}\n"
      "model: {preset: vit_nano_patch4_28, embed_dim: 16, depth: 1, num_heads: 2}\n"
      "train: {epochs: 1, batch_size: 16, replay_batch_size: 8, warmup_steps: 1}\n"
      "memory: {strategy: core-tokenset, sample_fraction: 0.25, token_fraction: 0.2}\noutput: {progress: none, save_model: false}\n",
      "tiny", sets);
  c.name = "tiny";
  return c;
}

TEST(CoresetRuns, EveryCoresetMethodTimesEveryTokenMethodRuns) {
  TempDir dir;
  Console::get().set_quiet(true);
  for (const auto& coreset : sample_selector_names()) {
    for (const auto& tokens : token_selector_names()) {
      RunOptions o;
      o.out_dir = dir / (coreset + "-" + tokens);
      auto s = run_experiment(tiny_config({"memory.coreset=" + coreset, "memory.tokens=" + tokens}), o);
      ASSERT_TRUE(s.completed) << coreset << " x " << tokens;
      // ceil(0.25 · 16) = 4 samples per class x 4 classes, round(0.2 · 49) = 10 tokens each.
      EXPECT_EQ(s.record.memory.samples, 16) << coreset << " x " << tokens;
      EXPECT_EQ(s.record.memory.tokens, 160) << coreset << " x " << tokens;
    }
  }
  Console::get().set_quiet(false);
}

TEST(CoresetRuns, ByteBudgetJointAndWeightsEndToEnd) {
  TempDir dir;
  Console::get().set_quiet(true);
  struct Case {
    std::string name;
    std::vector<std::string> sets;
  };
  const int64_t budget = 6000;
  for (const auto& c : std::vector<Case>{
           {"bytes-tokenset", {"memory.sample_fraction=null", "memory.token_fraction=null", "memory.budget_bytes=6000", "memory.coreset=gradmatch"}},
           {"bytes-coreset", {"memory.strategy=coreset", "memory.sample_fraction=null", "memory.token_fraction=null", "memory.budget_bytes=6000"}},
           {"joint-bytes", {"memory.sample_fraction=null", "memory.token_fraction=null", "memory.budget_bytes=6000", "memory.selection=joint"}},
           {"craig-weights", {"memory.coreset=craig", "memory.use_weights=true"}}}) {
    RunOptions o;
    o.out_dir = dir / c.name;
    auto s = run_experiment(tiny_config(c.sets), o);
    ASSERT_TRUE(s.completed) << c.name;
    auto m = read_json(dir / c.name / "metrics.json");
    auto buffer = TokenBuffer::load(dir / c.name / "buffer.safetensors");
    EXPECT_EQ(buffer.bytes(), m["memory"]["bytes"].get<int64_t>());
    if (c.name.rfind("craig", 0) != 0) {
      EXPECT_LE(buffer.bytes(), budget) << c.name;
      EXPECT_EQ(m["memory"]["budget_bytes"].get<int64_t>(), budget);
    }
    if (c.name == "joint-bytes") EXPECT_LT(buffer.counts().min().item<int64_t>(), buffer.counts().max().item<int64_t>());
    if (c.name == "bytes-coreset") EXPECT_EQ(buffer.tokens(), buffer.size() * 49);
    if (c.name == "craig-weights") {
      ASSERT_TRUE(buffer.has_weights());
      // Cluster sizes: every class's weights add up to its 16 training samples.
      for (int64_t cls = 0; cls < 4; ++cls) EXPECT_EQ(buffer.weights().masked_select(buffer.labels() == cls).sum().item<float>(), 16.0f);
    }
    // log.jsonl selection events carry the budget and, for core-tokenset, the split search.
    std::istringstream log(test::read_text(dir / c.name / "log.jsonl"));
    std::string line;
    int selections = 0;
    while (std::getline(log, line)) {
      auto j = nlohmann::json::parse(line);
      if (j["event"] != "selection") continue;
      ++selections;
      if (c.name == "bytes-tokenset") EXPECT_FALSE(j["split_trials"].empty());
    }
    EXPECT_EQ(selections, 2);
  }
  Console::get().set_quiet(false);
}

// memory.size_policy = fixed: after task 0 the memory holds 12 samples of each of its 2
// classes; after task 2, 4 of each of 6 classes, and each class of task 0 kept the first 4 of
// its 12 as stored (not any 4). Selection stores a class's samples in the coreset method's
// order (CoresetResult::rank, tested in Coreset.RankIsTheMethodsOrder...), so this is iCaRL's
// rule: the samples herding chose first stay.
TEST(FixedMemory, OldClassesShrinkToTheFirstOfTheirSamplesInTheCoresetsOrder) {
  TempDir dir;
  Console::get().set_quiet(true);
  auto config = parse_config(
      "seed: 3\nthreads: 1\ndata: {name: synthetic, tasks: 3, num_classes: 6, train_per_class: 40, test_per_class: 6}\n"
      "model: {preset: vit_nano_patch4_28, embed_dim: 16, depth: 1, num_heads: 2}\n"
      "train: {epochs: 1, batch_size: 16, replay_batch_size: 8, warmup_steps: 1}\n"
      "memory: {strategy: core-tokenset, coreset: herding, size_policy: fixed, samples: 24, token_fraction: 0.5}\n"
      "output: {progress: none, save_model: false}\n",
      "fixed", {});
  config.name = "fixed";
  RunOptions part;
  part.out_dir = dir / "run";
  part.stop_after_steps = 6;  // task 0 has 5 steps: stops at its end, with its checkpoint
  ASSERT_FALSE(run_experiment(config, part).completed);
  // The checkpoint holds the buffer as it was after task 0 (buffer-<generation>.safetensors).
  std::filesystem::path saved;
  for (const auto& e : std::filesystem::directory_iterator(dir / "run" / "checkpoint"))
    if (e.path().filename().string().rfind("buffer-", 0) == 0) saved = e.path();
  ASSERT_FALSE(saved.empty());
  const auto after0 = TokenBuffer::load(saved);
  RunOptions resume;
  resume.resume_dir = dir / "run";
  ASSERT_TRUE(run_experiment(config, resume).completed);
  Console::get().set_quiet(false);
  const auto after2 = TokenBuffer::load(dir / "run" / "buffer.safetensors");
  ASSERT_EQ(after0.size(), 24);
  ASSERT_EQ(after2.size(), 24);
  EXPECT_EQ(after2.tokens(), 24 * 25);  // round(0.5 x 49) tokens each
  auto rows_of = [](const TokenBuffer& b, int64_t label) { return (b.labels() == label).nonzero().flatten(); };
  const auto task0_labels = std::set<int64_t>{after0.labels()[0].item<int64_t>(), after0.labels()[23].item<int64_t>()};
  ASSERT_EQ(task0_labels.size(), 2u);
  for (int64_t c = 0; c < 6; ++c) EXPECT_EQ(rows_of(after2, c).size(0), 4) << "class " << c;
  for (int64_t c : task0_labels) {
    auto before = after0.gather(rows_of(after0, c), true, false), now = after2.gather(rows_of(after2, c), true, false);
    ASSERT_EQ(before.images.size(0), 12);
    EXPECT_TRUE(torch::equal(now.images, before.images.narrow(0, 0, 4))) << "class " << c << " kept other samples than its first 4";
    EXPECT_TRUE(torch::equal(now.positions, before.positions.narrow(0, 0, 4)));
  }
  const auto m = read_json(dir / "run" / "metrics.json");
  EXPECT_EQ(m["memory"]["fixed_samples"], 24);
}

TEST(CoresetConfig, ErrorsExitTwoWithWhatIsAccepted) {
  TempDir dir;
  test::write_text(dir / "c.yaml", "threads: 1\ndata: {name: synthetic, tasks: 2, num_classes: 4, train_per_class: 10, test_per_class: 4}\n");
  const std::string run = "run " + (dir / "c.yaml").string() + " --progress none --out " + (dir / "out").string();
  struct Case {
    std::string sets, message;
  };
  for (const auto& c : std::vector<Case>{
           {"--set memory.coreset=kmeans", "accepted: random, herding, craig, gradmatch"},
           {"--set memory.selection=greedy", "accepted: two-stage, joint"},
           {"--set memory.selection=joint --set memory.strategy=coreset", "memory.selection = joint selects (sample, token) pairs: it needs memory.strategy = core-tokenset"},
           {"--set memory.budget_bytes=5000 --set memory.sample_fraction=0.1", "memory.budget_bytes = 5000 and memory.sample_fraction both fix the memory size"},
           {"--set memory.budget_bytes=5000 --set memory.strategy=cumulative", "needs a memory that selects"},
           {"--set memory.budget_bytes=0", "memory.budget_bytes = 0 is out of range; accepted: > 0"},
           {"--set memory.gradmatch_lambda=0", "memory.gradmatch_lambda = 0 is out of range; accepted: > 0"},
           {"--set memory.coreset_gradient=full", "accepted: logits, logits-embedding"},
           {"--set memory.budget_holdout=0.9", "memory.budget_holdout = 0.9 is out of range"},
           // 2 classes per task, 20 of 40 samples per task: one token of one sample per class needs 2 · 26 bytes.
           {"--set memory.budget_bytes=100", "memory.budget_bytes = 100 is impossible: task 0 would get 50 bytes but one token of one sample per class needs 52 bytes; accepted: memory.budget_bytes >= 104"},
           {"--set memory.budget_bytes=1000 --set memory.strategy=coreset", "one whole sample per class needs 1584 bytes; accepted: memory.budget_bytes >= 3168"},  // 2 x (784 + 8): whole samples store no positions,
           // memory.size_policy = fixed (a memory of a fixed size from the first task on).
           {"--set memory.samples=10", "memory.samples = 10 sizes a fixed memory: it needs memory.size_policy = fixed"},
           {"--set memory.size_policy=fixed", "needs exactly one of memory.samples (> 0) and memory.budget_bytes; got neither"},
           {"--set memory.size_policy=fixed --set memory.samples=10 --set memory.budget_bytes=9000", "got both"},
           {"--set memory.size_policy=fixed --set memory.samples=10 --set memory.strategy=cumulative", "it needs memory.strategy = coreset or core-tokenset, got cumulative"},
           {"--set memory.size_policy=fixed --set memory.samples=10 --set memory.selection=joint", "works with memory.selection = two-stage"},
           {"--set memory.size_policy=fixed --set memory.samples=10 --set memory.strategy=coreset --set memory.token_fraction=0.5", "memory.token_fraction must be null or 1"},
           {"--set memory.size_policy=fixed --set memory.samples=3 --set memory.strategy=coreset", "memory.samples = 3 cannot hold one sample per class for the 4 classes of the run"},
           {"--set memory.size_policy=shrink", "accepted: grow, fixed"}}) {
    auto r = test::run_cts(run + " " + c.sets);
    EXPECT_EQ(r.exit_code, 2) << c.sets << "\n" << r.output;
    EXPECT_NE(r.output.find(c.message), std::string::npos) << c.sets << "\n" << r.output;
  }
}

}  // namespace
}  // namespace cts
