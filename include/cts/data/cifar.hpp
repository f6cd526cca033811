// CIFAR-10 / CIFAR-100 binary versions ("cifar-10-batches-bin", "cifar-100-binary"):
// records of <label byte(s)> + 3072 bytes (1024 R, 1024 G, 1024 B, row-major 32x32).
#pragma once
#include <filesystem>
#include <memory>

#include "cts/data/dataset.hpp"

namespace cts {

// Reads CIFAR binary files into [N, 3, 32, 32]. `fine` selects CIFAR-100's fine label
// (records of 2 + 3072 bytes); CIFAR-10 records are 1 + 3072 bytes.
std::shared_ptr<TensorDataset> read_cifar_files(const std::vector<std::filesystem::path>& files, bool cifar100,
                                                const std::string& name, std::vector<std::string> class_names);

// Loads the train or test split from `root`, which is the extracted folder itself or its parent.
std::shared_ptr<TensorDataset> load_cifar10(const std::filesystem::path& root, bool train);
std::shared_ptr<TensorDataset> load_cifar100(const std::filesystem::path& root, bool train);

}  // namespace cts
