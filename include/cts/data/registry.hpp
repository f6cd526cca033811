// The datasets cts knows by name, where it looks for them, and how to open one.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "cts/data/data_config.hpp"
#include "cts/data/dataset.hpp"

namespace cts {

struct DatasetInfo {
  std::string name;
  std::string default_root;  // empty: needs data.root
  std::string description;
  std::string status;        // "available at ..." or what is missing
  bool available = false;
};

std::vector<std::string> dataset_names();
// Every dataset with its default location and whether it is present here (`cts datasets`).
std::vector<DatasetInfo> dataset_catalog();

struct DatasetSplits {
  std::shared_ptr<const Dataset> train, test;
};

// Opens train and test splits: loads, resizes to data.image_size if set, limits samples per
// class. `patch_size` places synthetic-patch's key patch on the model's grid.
DatasetSplits open_dataset(const DataConfig& data, int64_t patch_size, uint64_t seed);

}  // namespace cts
