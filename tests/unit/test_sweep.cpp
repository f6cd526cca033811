// `cts sweep` and `cts report`: grid parsing and naming, a real two-process sweep that is
// resumable (finished runs skipped, an interrupted one resumed), the summary tables recomputed
// from the runs' metrics.json, and the report plots.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "cts/core/error.hpp"
#include "cts/report/sweep.hpp"
#include "test_util.hpp"

using namespace cts;
using test::TempDir;

namespace {

const char* kTiny =
    "seed: 0\nthreads: 1\ndata: {name: synthetic, tasks: 2, num_classes: 4, train_per_class: 16, test_per_class: 4}\n"
    "model: {preset: vit_nano_patch4_28, embed_dim: 16, depth: 1, num_heads: 2}\n"
    "train: {epochs: 1, batch_size: 16, replay_batch_size: 8, warmup_steps: 1, checkpoint_every: 1}\n"
    "memory: {strategy: core-tokenset, retention: 0.09}\noutput: {progress: none, save_model: false}\n";

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string l; std::getline(ss, l);) out.push_back(l);
  return out;
}

}  // namespace

TEST(Sweep, GridParsingAndCellNames) {
  auto a = parse_grid_axis("memory.retention=0.01,0.1");
  EXPECT_EQ(a.key, "memory.retention");
  EXPECT_EQ(a.values, (std::vector<std::string>{"0.01", "0.1"}));
  EXPECT_THROW(parse_grid_axis("memory.retention"), InputError);
  EXPECT_THROW(parse_grid_axis("memory.retention=0.1,,0.2"), InputError);
  EXPECT_THROW(parse_grid_axis("memory.retention=0.1,0.1"), InputError);
  auto cells = expand_grid({parse_grid_axis("memory.strategy=coreset,core-tokenset"), a});
  ASSERT_EQ(cells.size(), 4u);
  EXPECT_EQ(cells[0].name, "strategy-coreset_retention-0.01");
  EXPECT_EQ(cells[3].name, "strategy-core-tokenset_retention-0.1");
  EXPECT_EQ(cells[1].settings[1].second, "0.1");
  // Two axes with the same last component keep their full keys.
  auto same = expand_grid({parse_grid_axis("train.seed_x=1"), parse_grid_axis("memory.seed_x=2")});
  EXPECT_EQ(same[0].name, "train.seed-x-1_memory.seed-x-2");  // only [A-Za-z0-9.-] in folder names
  EXPECT_THROW(expand_grid({a, a}), InputError);
}

TEST(Sweep, RunsResumesSkipsAndSummarises) {
  TempDir dir;
  test::write_text(dir / "tiny.yaml", kTiny);
  const std::string bin = CTS_BINARY;
  const auto out = dir / "sw";
  // An interrupted run of one cell, to be resumed by the sweep.
  auto pre = test::run_command(bin + " run " + (dir / "tiny.yaml").string() + " --set memory.retention=0.25 --set seed=1 --set threads=1 --out " +
                               (out / "retention-0.25" / "seed-1").string() + " --stop-after-steps 2");
  ASSERT_EQ(pre.exit_code, 130) << pre.output;
  const std::string sweep = bin + " sweep " + (dir / "tiny.yaml").string() + " --grid memory.retention=0.09,0.25 --seeds 0,1 --jobs 2 --out " + out.string();
  auto r = test::run_command(sweep);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("retention-0.25 / seed-1 (resumed)"), std::string::npos) << r.output;
  for (const char* cell : {"retention-0.09", "retention-0.25"}) {
    for (const char* seed : {"seed-0", "seed-1"}) EXPECT_TRUE(run_finished(out / cell / seed)) << cell << " " << seed;
  }
  // sweep.csv: one row per run, accuracies from each run's metrics.json.
  auto csv = lines(test::read_text(out / "sweep.csv"));
  ASSERT_EQ(csv.size(), 5u);
  double sum = 0;
  for (size_t i = 1; i < csv.size(); ++i) {
    std::vector<std::string> f;
    std::stringstream ss(csv[i]);
    for (std::string x; std::getline(ss, x, ',');) f.push_back(x);
    ASSERT_GE(f.size(), 4u);
    EXPECT_EQ(f[2], "done");
    auto m = nlohmann::json::parse(test::read_text(out / ("retention-" + f[0]) / ("seed-" + f[1]) / "metrics.json"));
    EXPECT_NEAR(std::stod(f[3]), m["final_average_accuracy"].get<double>(), 1e-5);
    sum += std::stod(f[3]);
  }
  EXPECT_GT(sum, 0.0);
  auto md = test::read_text(out / "sweep.md");
  EXPECT_NE(md.find("| 0.09 | 2 |"), std::string::npos) << md;
  EXPECT_NE(md.find("±"), std::string::npos) << md;

  // Everything finished: a second call runs nothing.
  auto again = test::run_command(sweep);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(again.output.find("started"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("already done"), std::string::npos);

  // A bad key anywhere in the grid: exit 2 before anything runs.
  auto bad = test::run_command(bin + " sweep " + (dir / "tiny.yaml").string() + " --grid memory.retension=0.1 --out " + (dir / "bad").string());
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("memory.retension"), std::string::npos) << bad.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "bad"));

  // cts report on the sweep and on one run.
  auto rep = test::run_command(bin + " report " + out.string());
  ASSERT_EQ(rep.exit_code, 0) << rep.output;
  EXPECT_TRUE(std::filesystem::exists(out / "plots" / "accuracy_vs_memory_retention.png"));
  EXPECT_TRUE(std::filesystem::exists(out / "plots" / "accuracy_vs_memory_bytes.png"));
  EXPECT_TRUE(std::filesystem::exists(out / "plots" / "average_accuracy_over_tasks.png"));
  EXPECT_TRUE(std::filesystem::exists(out / "retention-0.09" / "seed-0" / "plots" / "accuracy_matrix.png"));
  auto report_md = test::read_text(out / "report.md");
  EXPECT_NE(report_md.find("plots/accuracy_vs_memory_retention.png"), std::string::npos) << report_md;
  auto none = test::run_command(bin + " report " + dir.path().string());
  EXPECT_EQ(none.exit_code, 2) << none.output;

  // Several sweeps compared: a baseline sweep without axes drawn beside the grid.
  const auto base = dir / "finetune";
  auto b = test::run_command(bin + " sweep " + (dir / "tiny.yaml").string() + " --set memory.strategy=none --seeds 0 --out " + base.string());
  ASSERT_EQ(b.exit_code, 0) << b.output;
  const auto cmp = dir / "cmp";
  auto c = test::run_command(bin + " report " + out.string() + " " + base.string() + " --out " + cmp.string());
  ASSERT_EQ(c.exit_code, 0) << c.output;
  EXPECT_TRUE(std::filesystem::exists(cmp / "plots" / "accuracy_vs_memory_retention.png"));
  EXPECT_TRUE(std::filesystem::exists(cmp / "plots" / "accuracy_vs_memory_bytes.png"));
  auto cmp_md = test::read_text(cmp / "report.md");
  EXPECT_NE(cmp_md.find("## sw\n"), std::string::npos) << cmp_md;
  EXPECT_NE(cmp_md.find("## finetune\n"), std::string::npos) << cmp_md;
  EXPECT_NE(cmp_md.find("| 0.09 | 2 |"), std::string::npos) << cmp_md;
  EXPECT_NE(cmp_md.find("plots/accuracy_vs_memory_bytes.png"), std::string::npos) << cmp_md;
  auto no_out = test::run_command(bin + " report " + out.string() + " " + base.string());
  EXPECT_EQ(no_out.exit_code, 2) << no_out.output;
  EXPECT_NE(no_out.output.find("--out"), std::string::npos) << no_out.output;
  const auto one_run = out / "retention-0.09" / "seed-0";
  auto not_sweep = test::run_command(bin + " report " + out.string() + " " + one_run.string() + " --out " + cmp.string());
  EXPECT_EQ(not_sweep.exit_code, 2) << not_sweep.output;
  EXPECT_NE(not_sweep.output.find(one_run.string() + ": not a sweep folder"), std::string::npos) << not_sweep.output;
}
