// Acceptance check of the quickstart on real Fashion-MNIST through the CLI: a 5x5 accuracy
// matrix, memory within 1.1x the configured 1% retention, and a final average accuracy
// above the finetune baseline. About 3 minutes on 2 cores (label e2e).
#include <nlohmann/json.hpp>

#include "test_util.hpp"

namespace cts {
namespace {

TEST(E2E, QuickstartBeatsFinetuneWithinItsMemoryBudget) {
  if (!std::filesystem::exists("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")) {
    FAIL() << "dataset-fashion-mnist is not installed (scripts/install-deps installs it)";
  }
  test::TempDir dir;
  const std::string src = test::source_dir();
  auto qs = test::run_cts("run " + src + "/configs/quickstart.yaml --progress none --out " + (dir / "qs").string());
  ASSERT_EQ(qs.exit_code, 0) << qs.output;
  auto ft = test::run_cts("run " + src + "/configs/baselines/finetune.yaml --progress none --out " + (dir / "ft").string());
  ASSERT_EQ(ft.exit_code, 0) << ft.output;
  auto m = nlohmann::json::parse(test::read_text(dir / "qs" / "metrics.json"));
  auto f = nlohmann::json::parse(test::read_text(dir / "ft" / "metrics.json"));
  ASSERT_EQ(m["accuracy_matrix"].size(), 5u);
  for (const auto& row : m["accuracy_matrix"]) EXPECT_EQ(row.size(), 5u);
  const double retention = m["memory"]["configured_retention"].get<double>();
  EXPECT_DOUBLE_EQ(retention, 0.01);
  EXPECT_LE(m["memory"]["fraction"].get<double>(), 1.1 * retention);
  EXPECT_GT(m["memory"]["fraction"].get<double>(), 0.9 * retention);
  const double ours = m["final_average_accuracy"].get<double>();
  const double finetune = f["final_average_accuracy"].get<double>();
  std::cout << "quickstart final average accuracy " << ours << " vs finetune " << finetune << "\n";
  EXPECT_GT(ours, finetune + 0.05);
}

}  // namespace
}  // namespace cts
