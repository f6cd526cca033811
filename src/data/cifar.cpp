// CIFAR binary loader with record-size and label-range validation.
#include "cts/data/cifar.hpp"

#include <torch/torch.h>

#include <fstream>

#include "cts/core/error.hpp"
#include "cts/core/fs.hpp"

namespace cts {
namespace {

constexpr int64_t kPixels = 3 * 32 * 32;

std::vector<std::string> read_names(const std::filesystem::path& file, size_t expected) {
  std::vector<std::string> names;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) return names;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    if (!line.empty()) names.push_back(line);
  }
  if (names.size() != expected) names.clear();  // not a usable names file: fall back to numbers
  return names;
}

std::filesystem::path locate(const std::filesystem::path& root, const std::string& sub, const std::string& probe) {
  std::error_code ec;
  if (std::filesystem::is_regular_file(root / probe, ec)) return root;
  if (std::filesystem::is_regular_file(root / sub / probe, ec)) return root / sub;
  throw_input("CIFAR files not found: expected {} or {} (download the binary version and set data.root)",
              (root / probe).string(), (root / sub / probe).string());
}

}  // namespace

std::shared_ptr<TensorDataset> read_cifar_files(const std::vector<std::filesystem::path>& files, bool cifar100,
                                                const std::string& name, std::vector<std::string> class_names) {
  const int64_t label_bytes = cifar100 ? 2 : 1;
  const int64_t record = label_bytes + kPixels;
  const int64_t num_classes = cifar100 ? 100 : 10;
  std::vector<torch::Tensor> images, labels;
  for (const auto& file : files) {
    const std::string bytes = read_file(file, "CIFAR file");
    const int64_t size = static_cast<int64_t>(bytes.size());
    if (size == 0 || size % record != 0) {
      throw_input("{}: {} bytes is not a whole number of {}-byte records ({} label byte(s) + 3072 pixels); truncated or not a {} file",
                  file.string(), size, record, label_bytes, cifar100 ? "CIFAR-100" : "CIFAR-10");
    }
    const int64_t n = size / record;
    auto raw = torch::from_blob(const_cast<char*>(bytes.data()), {n, record}, torch::kUInt8).clone();
    auto lab = raw.select(1, label_bytes - 1).to(torch::kInt64);  // CIFAR-100: the fine label is the second byte
    const int64_t max_label = lab.max().item<int64_t>();
    if (max_label >= num_classes) {
      const int64_t bad = (lab >= num_classes).nonzero()[0][0].item<int64_t>();
      throw_input("{}: record {} (offset {}) has label {}; {} has labels 0..{}", file.string(), bad, bad * record,
                  lab[bad].item<int64_t>(), name, num_classes - 1);
    }
    if (cifar100) {
      // The first byte is the coarse label (20 superclasses): not used, but a value outside
      // 0..19 means the file is not what it claims to be.
      auto coarse = raw.select(1, 0).to(torch::kInt64);
      if (coarse.max().item<int64_t>() >= 20) {
        const int64_t bad = (coarse >= 20).nonzero()[0][0].item<int64_t>();
        throw_input("{}: record {} (offset {}) has coarse label {}; CIFAR-100 has coarse labels 0..19", file.string(), bad, bad * record,
                    coarse[bad].item<int64_t>());
      }
    }
    images.push_back(raw.narrow(1, label_bytes, kPixels).reshape({n, 3, 32, 32}));
    labels.push_back(lab);
  }
  return std::make_shared<TensorDataset>(name, torch::cat(images), torch::cat(labels), num_classes, std::move(class_names));
}

std::shared_ptr<TensorDataset> load_cifar10(const std::filesystem::path& root, bool train) {
  const auto dir = locate(root, "cifar-10-batches-bin", "test_batch.bin");
  std::vector<std::filesystem::path> files;
  if (train)
    for (int i = 1; i <= 5; ++i) files.push_back(dir / fmt::format("data_batch_{}.bin", i));
  else
    files.push_back(dir / "test_batch.bin");
  return read_cifar_files(files, false, "cifar10", read_names(dir / "batches.meta.txt", 10));
}

std::shared_ptr<TensorDataset> load_cifar100(const std::filesystem::path& root, bool train) {
  const auto dir = locate(root, "cifar-100-binary", "test.bin");
  return read_cifar_files({dir / (train ? "train.bin" : "test.bin")}, true, "cifar100", read_names(dir / "fine_label_names.txt", 100));
}

}  // namespace cts
