// MNIST / Fashion-MNIST idx files (gzipped or raw): magic 0x0000 <type> <ndims>, big-endian
// int32 dimensions, then the data. Only unsigned-byte data (type 0x08) is accepted.
#pragma once
#include <torch/types.h>

#include <filesystem>
#include <memory>

#include "cts/data/dataset.hpp"

namespace cts {

// Reads one idx file into a uint8 tensor with the file's dimensions.
torch::Tensor read_idx(const std::filesystem::path& path);

// Loads `<root>/<prefix>-images-idx3-ubyte[.gz]` and `<prefix>-labels-idx1-ubyte[.gz]`
// (prefix "train" or "t10k") as [N, 1, H, W] images with labels in [0, 10).
std::shared_ptr<TensorDataset> load_idx_dataset(const std::filesystem::path& root, const std::string& prefix,
                                                const std::string& name, std::vector<std::string> class_names);

}  // namespace cts
