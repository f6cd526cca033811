// Class-incremental task split: the class order (seeded, natural or given) cut into N
// tasks of equal class groups. Labels seen by the model are incremental indices: the
// position of a class in the order, so task t owns indices [t*c, (t+1)*c).
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "cts/data/data_config.hpp"
#include "cts/data/dataset.hpp"

namespace cts {

struct TaskSplit {
  std::vector<int64_t> class_order;               // dataset class ids in arrival order
  std::vector<std::vector<int64_t>> task_classes;  // dataset class ids of each task
  torch::Tensor class_to_index;                    // [num_dataset_classes] int64, -1 if unused
  int64_t classes_per_task = 0;

  int64_t num_tasks() const { return static_cast<int64_t>(task_classes.size()); }
  int64_t classes_seen_after(int64_t task) const { return (task + 1) * classes_per_task; }
  // Sample indices of `dataset` whose class belongs to task t (ascending).
  torch::Tensor task_indices(const Dataset& dataset, int64_t task) const;
  // Dataset labels -> incremental indices.
  torch::Tensor map_labels(const torch::Tensor& labels) const;
};

TaskSplit make_task_split(int64_t num_classes, int64_t tasks, const ClassOrder& order, uint64_t seed);

}  // namespace cts
