// Class order and task split.
#include "cts/data/task_split.hpp"

#include <torch/torch.h>

#include <set>

#include "cts/core/error.hpp"
#include "cts/core/rng.hpp"

namespace cts {

TaskSplit make_task_split(int64_t num_classes, int64_t tasks, const ClassOrder& order, uint64_t seed) {
  TaskSplit s;
  if (order.mode == "list") {
    std::set<int64_t> seen;
    for (int64_t c : order.classes) {
      if (c < 0 || c >= num_classes) throw_input("data.class_order: class {} out of range; the dataset has classes 0..{}", c, num_classes - 1);
      if (!seen.insert(c).second) throw_input("data.class_order: class {} appears twice", c);
    }
    s.class_order = order.classes;
  } else if (order.mode == "natural") {
    for (int64_t c = 0; c < num_classes; ++c) s.class_order.push_back(c);
  } else {
    auto gen = make_generator(seed, "class_order");
    auto perm = torch::randperm(num_classes, gen, torch::kInt64);
    s.class_order.assign(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + num_classes);
  }
  const int64_t n = static_cast<int64_t>(s.class_order.size());
  if (tasks > n || n % tasks != 0) {
    throw_input("data.tasks = {} does not divide the {} classes into equal groups; accepted: a divisor of {}", tasks, n, n);
  }
  s.classes_per_task = n / tasks;
  s.class_to_index = torch::full({num_classes}, -1, torch::kInt64);
  for (int64_t t = 0; t < tasks; ++t) {
    std::vector<int64_t> group(s.class_order.begin() + t * s.classes_per_task, s.class_order.begin() + (t + 1) * s.classes_per_task);
    s.task_classes.push_back(group);
  }
  for (int64_t i = 0; i < n; ++i) s.class_to_index[s.class_order[i]] = i;
  return s;
}

torch::Tensor TaskSplit::task_indices(const Dataset& dataset, int64_t task) const {
  const auto& labels = dataset.labels();
  auto mask = torch::zeros({labels.size(0)}, torch::kBool);
  for (int64_t c : task_classes.at(static_cast<size_t>(task))) mask |= labels == c;
  return mask.nonzero().flatten();
}

torch::Tensor TaskSplit::map_labels(const torch::Tensor& labels) const { return class_to_index.index_select(0, labels.to(torch::kInt64).cpu()); }

}  // namespace cts
