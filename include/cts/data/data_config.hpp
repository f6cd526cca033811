// The `data.*` section of a run configuration: which dataset, where, how it is split into
// tasks and subsampled. Keys, defaults and help texts are declared once in src/config/config.cpp.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace cts {

// "seeded" (a permutation drawn from the run seed), "natural" (0, 1, 2, ...) or an
// explicit list of class ids.
struct ClassOrder {
  std::string mode = "seeded";  // seeded | natural | list
  std::vector<int64_t> classes;
};

struct DataConfig {
  std::string name = "fashion-mnist";
  std::string root;  // empty: the dataset's default location
  int64_t tasks = 5;
  ClassOrder class_order;
  int64_t image_size = 0;  // 0: the dataset's native size
  std::string class_list;  // ImageFolder: file with the class folders to use, in label order
  std::string train_split = "train";
  std::string test_split = "val";
  double crop_fraction = 0.875;
  int64_t train_per_class = 0;  // 0: all
  std::string train_subset = "all";  // all | a | b: a fixed seeded split of every class (pretraining on a, the stream on b)
  double subset_fraction = 0.5;      // share of each class in part a
  int64_t subset_seed = 0;           // seed of the a/b split (not the run seed)
  int64_t test_per_class = 0;   // 0: all
  int64_t num_classes = 10;     // synthetic only
  int64_t channels = 1;         // synthetic only
  int64_t workers = 4;
};

}  // namespace cts
