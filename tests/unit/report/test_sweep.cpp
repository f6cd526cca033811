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
    EXPECT_NEAR(std::stod(f[4]), m["task_il"]["final_average_accuracy"].get<double>(), 1e-5);  // task-IL next to class-IL
    sum += std::stod(f[3]);
  }
  EXPECT_GT(sum, 0.0);
  auto md = test::read_text(out / "sweep.md");
  EXPECT_NE(md.find("| 0.09 | 2 |"), std::string::npos) << md;
  EXPECT_NE(md.find("±"), std::string::npos) << md;
  EXPECT_NE(md.find("final task-IL acc. (%)"), std::string::npos) << md;
  EXPECT_NE(md.find("Final average task-IL accuracy (%)"), std::string::npos) << md;

  // Everything finished: a second call runs nothing.
  auto again = test::run_command(sweep);
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_EQ(again.output.find("started"), std::string::npos) << again.output;
  EXPECT_NE(again.output.find("already done"), std::string::npos);

  // tools/results_archive.py: the records of the finished runs (no checkpoints), put back into an
  // empty sweep folder, make the same sweep skip every run and give the same sweep.csv.
  {
    const std::string tool = std::string(CTS_PYTHON) + " " + CTS_SOURCE_DIR + "/tools/results_archive.py";
    const auto archive = dir / "archive";
    auto s = test::run_command(tool + " save " + out.string() + " " + archive.string());
    ASSERT_EQ(s.exit_code, 0) << s.output;
    EXPECT_NE(s.output.find("4 finished runs saved"), std::string::npos) << s.output;
    for (const char* f : {"config.yaml", "metrics.json", "summary.md"})
      EXPECT_TRUE(std::filesystem::exists(archive / "retention-0.25" / "seed-1" / f)) << f;
    EXPECT_TRUE(std::filesystem::exists(out / "retention-0.25" / "seed-1" / "checkpoint"));
    EXPECT_FALSE(std::filesystem::exists(archive / "retention-0.25" / "seed-1" / "checkpoint"));
    EXPECT_TRUE(std::filesystem::exists(archive / "sweep.csv"));
    const auto restored = dir / "restored";
    auto rs = test::run_command(tool + " restore " + archive.string() + " " + restored.string());
    ASSERT_EQ(rs.exit_code, 0) << rs.output;
    EXPECT_NE(rs.output.find("4 finished runs restored"), std::string::npos) << rs.output;
    auto resweep = test::run_command(bin + " sweep " + (dir / "tiny.yaml").string() +
                                     " --grid memory.retention=0.09,0.25 --seeds 0,1 --jobs 2 --out " + restored.string());
    ASSERT_EQ(resweep.exit_code, 0) << resweep.output;
    EXPECT_EQ(resweep.output.find("started"), std::string::npos) << resweep.output;
    // The same rows; only run_dir (the last column) names the new folder.
    std::string expected = test::read_text(out / "sweep.csv");
    for (size_t at; (at = expected.find(out.string() + "/")) != std::string::npos;) expected.replace(at, out.string().size(), restored.string());
    EXPECT_EQ(test::read_text(restored / "sweep.csv"), expected);
    // --summarize-only on a larger grid: the table of what finished, the rest missing, nothing run.
    auto partial = test::run_command(bin + " sweep " + (dir / "tiny.yaml").string() +
                                     " --grid memory.retention=0.09,0.25,0.5 --seeds 0,1 --summarize-only --out " + restored.string());
    ASSERT_EQ(partial.exit_code, 0) << partial.output;
    EXPECT_EQ(partial.output.find("started"), std::string::npos) << partial.output;
    EXPECT_NE(partial.output.find("6 runs: 0 failed, 2 not run"), std::string::npos) << partial.output;
    EXPECT_FALSE(std::filesystem::exists(restored / "retention-0.5"));
    auto part_csv = test::read_text(restored / "sweep.csv");
    EXPECT_NE(part_csv.find("0.5,0,missing,"), std::string::npos) << part_csv;
    EXPECT_NE(part_csv.find("0.25,1,done,"), std::string::npos) << part_csv;
    const auto part_md = test::read_text(restored / "sweep.md");
    EXPECT_NE(part_md.find("| 0.5 | 0 |"), std::string::npos) << part_md;
    // The Table-1 layout: the numeric axis as columns, a dash where nothing finished.
    EXPECT_NE(part_md.find("| runs \\ memory.retention | 0.09 | 0.25 | 0.5 |\n|---|---|---|---|\n| all | "), std::string::npos) << part_md;
    EXPECT_NE(part_md.find(" | – |\n"), std::string::npos) << part_md;
    auto two = test::run_command(bin + " sweep " + (dir / "tiny.yaml").string() +
                                 " --grid memory.strategy=coreset,core-tokens --grid memory.retention=0.5,0.25 --summarize-only --out " +
                                 (dir / "two").string());
    ASSERT_EQ(two.exit_code, 0) << two.output;
    EXPECT_NE(two.output.find("| memory.strategy \\ memory.retention | 0.5 | 0.25 |\n|---|---|---|\n| coreset | – | – |\n| core-tokens | – | – |\n"),
              std::string::npos)
        << two.output;
    // A run folder of its own (here: a checkpoint, no metrics) is never overwritten.
    std::filesystem::remove(restored / "retention-0.09" / "seed-0" / "metrics.json");
    std::filesystem::create_directories(restored / "retention-0.09" / "seed-0" / "checkpoint");
    auto keep = test::run_command(tool + " restore " + archive.string() + " " + restored.string());
    ASSERT_EQ(keep.exit_code, 0) << keep.output;
    EXPECT_NE(keep.output.find("0 finished runs restored"), std::string::npos) << keep.output;
    EXPECT_FALSE(std::filesystem::exists(restored / "retention-0.09" / "seed-0" / "metrics.json"));
    // Bad input: a missing folder, a folder that is no sweep, an unfinished run in the archive.
    auto missing = test::run_command(tool + " save " + (dir / "nope").string() + " " + archive.string());
    EXPECT_EQ(missing.exit_code, 2) << missing.output;
    EXPECT_NE(missing.output.find((dir / "nope").string() + ": no such folder"), std::string::npos) << missing.output;
    auto not_sweep = test::run_command(tool + " save " + (out / "retention-0.09").string() + " " + archive.string());
    EXPECT_EQ(not_sweep.exit_code, 2) << not_sweep.output;
    EXPECT_NE(not_sweep.output.find("not a sweep folder"), std::string::npos) << not_sweep.output;
    auto m = nlohmann::json::parse(test::read_text(archive / "retention-0.25" / "seed-1" / "metrics.json"));
    m["tasks_done"] = 1;
    test::write_text(archive / "retention-0.25" / "seed-1" / "metrics.json", m.dump());
    auto unfinished = test::run_command(tool + " restore " + archive.string() + " " + (dir / "restored2").string());
    EXPECT_EQ(unfinished.exit_code, 2) << unfinished.output;
    EXPECT_NE(unfinished.output.find("unfinished run"), std::string::npos) << unfinished.output;
    EXPECT_FALSE(std::filesystem::exists(dir / "restored2"));  // nothing copied
  }

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
  // Every metric the learner recorded is plotted (metrics by name): task-IL too.
  EXPECT_TRUE(std::filesystem::exists(out / "retention-0.09" / "seed-0" / "plots" / "task_il_accuracy_matrix.png"));
  EXPECT_TRUE(std::filesystem::exists(out / "retention-0.09" / "seed-0" / "plots" / "task_il_accuracy_over_tasks.png"));
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

// cts sweep --slurm / --commands: nothing runs; the commands (absolute paths, one per
// unfinished run, a resume for an interrupted one) run from another folder as a scheduler
// would, the Slurm array script runs line SLURM_ARRAY_TASK_ID + 1, and --summarize-only then
// tabulates them. Finished runs are left out of a second hand-out.
TEST(Sweep, HandsCellsToAScheduler) {
  TempDir dir;
  test::write_text(dir / "tiny.yaml", kTiny);
  const std::string bin = CTS_BINARY;
  const auto out = dir / "sw";
  auto pre = test::run_command(bin + " run " + (dir / "tiny.yaml").string() + " --set memory.retention=0.25 --set seed=0 --out " +
                               (out / "retention-0.25" / "seed-0").string() + " --stop-after-steps 1");
  ASSERT_EQ(pre.exit_code, 130) << pre.output;
  const std::string sweep = bin + " sweep " + (dir / "tiny.yaml").string() + " --grid memory.retention=0.09,0.25 --out " + out.string();
  auto r = test::run_command(sweep + " --slurm " + (dir / "job.sbatch").string() + " --launcher 'env CTS_SCHEDULED=1'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(run_finished(out / "retention-0.09" / "seed-0"));
  auto cmds = lines(test::read_text(out / "commands.txt"));
  ASSERT_EQ(cmds.size(), 2u) << test::read_text(out / "commands.txt");
  EXPECT_EQ(cmds[0].rfind("env CTS_SCHEDULED=1 " + bin + " run /", 0), 0u) << cmds[0];
  EXPECT_NE(cmds[0].find("--set memory.retention=0.09 --set seed=0 --out /"), std::string::npos) << cmds[0];
  EXPECT_NE(cmds[1].find(" run --resume /"), std::string::npos) << cmds[1];
  const auto script = test::read_text(dir / "job.sbatch");
  EXPECT_NE(script.find("#SBATCH --array=0-1"), std::string::npos) << script;
  // The scheduler: array tasks 1 and 0, started from another folder.
  for (const char* id : {"1", "0"}) {
    auto t = test::run_command("cd / && SLURM_ARRAY_TASK_ID=" + std::string(id) + " bash " + (dir / "job.sbatch").string());
    ASSERT_EQ(t.exit_code, 0) << id << ": " << t.output << test::read_text(out / "retention-0.09" / "seed-0.log");
  }
  EXPECT_TRUE(run_finished(out / "retention-0.09" / "seed-0"));
  EXPECT_TRUE(run_finished(out / "retention-0.25" / "seed-0"));
  auto beyond = test::run_command("SLURM_ARRAY_TASK_ID=2 bash " + (dir / "job.sbatch").string());
  EXPECT_EQ(beyond.exit_code, 2) << beyond.output;
  auto sum = test::run_command(sweep + " --summarize-only");
  ASSERT_EQ(sum.exit_code, 0) << sum.output;
  auto csv = lines(test::read_text(out / "sweep.csv"));
  ASSERT_EQ(csv.size(), 3u);
  for (size_t i = 1; i < csv.size(); ++i) EXPECT_NE(csv[i].find(",0,done,"), std::string::npos) << csv[i];
  // All done: nothing to hand out.
  auto none = test::run_command(sweep + " --commands " + (dir / "more.txt").string());
  ASSERT_EQ(none.exit_code, 0) << none.output;
  EXPECT_EQ(test::read_text(dir / "more.txt"), "");
  auto bad = test::run_command(sweep + " --slurm " + (dir / "x.sbatch").string() + " --summarize-only");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
}

TEST(Sweep, ShellQuoteSurvivesTheShell) {
  EXPECT_EQ(shell_quote("runs/a-0.1"), "runs/a-0.1");
  EXPECT_EQ(shell_quote(""), "''");
  for (const std::string w : {"a b", "it's", "x;rm -rf /", "$HOME", "\"q\"", "back\\slash", "tab\there"}) {
    auto r = test::run_command("printf %s " + shell_quote(w));
    EXPECT_EQ(r.output, w) << shell_quote(w);
  }
}
