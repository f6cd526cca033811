// Evaluation of a class-incremental head on task test sets, by hand: class-IL over the classes
// seen, task-IL over the task's own classes (the next task with its init rows), only the tasks
// listed, and which tasks the metrics need.
#include <torch/torch.h>

#include <cmath>

#include "cts/data/task_split.hpp"
#include "cts/eval/evaluate.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

TEST(Evaluate, ClassAndTaskIlByHand) {
  // 3 tasks of 2 classes, 4 test samples per task; a sample's image is its index, and its
  // "features" are row `index` of a table, so the logits are known exactly.
  const std::vector<int64_t> labels = {0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5};
  const int64_t n = int64_t(labels.size());
  auto images = torch::arange(n, torch::kInt64).to(torch::kUInt8).view({n, 1, 1, 1});
  TensorDataset test("toy", images, torch::tensor(labels, torch::kInt64), 6);
  auto split = make_task_split(6, 3, ClassOrder{"natural", {}}, 0);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(3);
  const auto table = torch::randn({n, 4}, gen);
  auto features = [&](const torch::Tensor& imgs) { return table.index_select(0, imgs.flatten().to(torch::kInt64)); };
  // Trained: tasks 0 and 1 (4 rows); the init rows of all 6 classes.
  const auto W = torch::randn({4, 4}, gen), b = torch::randn({4}, gen), init = torch::randn({6, 4}, gen);
  // By hand: the logit of class k for sample i, with a plain loop.
  auto logit = [&](int64_t i, int64_t k) {
    const bool trained = k < 4;
    double z = trained ? b[k].item<double>() : 0.0;
    for (int64_t d = 0; d < 4; ++d) z += table[i][d].item<double>() * (trained ? W[k][d] : init[k][d]).item<double>();
    return z;
  };
  auto argmax = [&](int64_t i, int64_t from, int64_t to) {
    int64_t best = from;
    for (int64_t k = from + 1; k < to; ++k)
      if (logit(i, k) > logit(i, best)) best = k;
    return best;
  };
  for (int64_t batch : {1, 5, 100}) {  // the batch size changes nothing
    auto acc = evaluate_tasks(features, W, b, test, split, /*trained_tasks=*/2, init, batch, {0, 1, 2});
    ASSERT_EQ(acc.size(), 3u);
    for (int64_t j = 0; j < 3; ++j) {
      int64_t cil = 0, til = 0;
      for (int64_t i = 4 * j; i < 4 * j + 4; ++i) {
        cil += argmax(i, 0, 4) == labels[size_t(i)];
        til += argmax(i, 2 * j, 2 * j + 2) == labels[size_t(i)];
      }
      EXPECT_EQ(acc[size_t(j)].samples, 4);
      EXPECT_DOUBLE_EQ(acc[size_t(j)].task_il, double(til) / 4.0) << "task " << j << " batch " << batch;
      if (j < 2) EXPECT_DOUBLE_EQ(acc[size_t(j)].class_il, double(cil) / 4.0) << "task " << j;
      else EXPECT_TRUE(std::isnan(acc[size_t(j)].class_il)) << "task 2 is not trained: no class-IL score";
    }
  }
  // Tasks not listed are not scored.
  auto some = evaluate_tasks(features, W, b, test, split, 2, init, 8, {1});
  EXPECT_TRUE(std::isnan(some[0].task_il));
  EXPECT_TRUE(std::isnan(some[2].task_il));
  EXPECT_FALSE(std::isnan(some[1].task_il));
}

TEST(Evaluate, TasksTheMetricsNeed) {
  // At the start only b_j for j >= 1 (FWT); after task i the tasks trained and the next.
  EXPECT_EQ(tasks_to_evaluate(0, 5), (std::vector<int64_t>{1, 2, 3, 4}));
  EXPECT_EQ(tasks_to_evaluate(1, 5), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(tasks_to_evaluate(3, 5), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_EQ(tasks_to_evaluate(5, 5), (std::vector<int64_t>{0, 1, 2, 3, 4}));
  EXPECT_EQ(tasks_to_evaluate(0, 1), (std::vector<int64_t>{}));
}

}  // namespace
}  // namespace cts
