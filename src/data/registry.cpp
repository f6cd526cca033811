// Dataset registry: names, default roots, opening with resize and per-class limits.
#include "cts/data/registry.hpp"

#include <torch/torch.h>

#include "cts/core/error.hpp"
#include "cts/data/cifar.hpp"
#include "cts/data/idx.hpp"
#include "cts/data/image_folder.hpp"
#include "cts/data/synthetic.hpp"
#include "cts/data/vl_dataset.hpp"

namespace cts {
namespace {

const std::vector<std::string> kFashionNames = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
const std::vector<std::string> kDigitNames = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

std::string default_root(const std::string& name) {
  if (name == "fashion-mnist") return "/usr/share/datasets/fashion-mnist";
  if (name == "mnist") return "data/mnist";
  if (name == "cifar10") return "data/cifar10";
  if (name == "cifar100") return "data/cifar100";
  return "";
}

std::shared_ptr<const Dataset> resized(std::shared_ptr<TensorDataset> d, int64_t size) {
  if (size == 0 || (d->shape().height == size && d->shape().width == size)) return d;
  return std::make_shared<TensorDataset>(d->name(), resize_images(d->all_images(), size, size), d->labels(), d->num_classes(),
                                         d->class_names());
}

}  // namespace

std::vector<std::string> dataset_names() { return {"fashion-mnist", "mnist", "cifar10", "cifar100", "imagefolder", "synthetic", "synthetic-patch", "sort-of-clevr-vqa", "sort-of-clevr-caption"}; }

std::vector<DatasetInfo> dataset_catalog() {
  std::vector<DatasetInfo> out;
  auto probe = [](const std::string& root, const std::vector<std::string>& files) {
    std::error_code ec;
    for (const auto& f : files)
      if (std::filesystem::exists(std::filesystem::path(root) / f, ec)) return true;
    return false;
  };
  for (const auto& name : dataset_names()) {
    DatasetInfo info;
    info.name = name;
    info.default_root = default_root(name);
    if (name == "fashion-mnist" || name == "mnist") {
      info.description = "idx files (gzipped or raw), 60k train / 10k test, 10 classes, 1x28x28";
      info.available = probe(info.default_root, {"train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"});
    } else if (name == "cifar10") {
      info.description = "CIFAR-10 binary version (cifar-10-batches-bin), 50k/10k, 10 classes, 3x32x32";
      info.available = probe(info.default_root, {"test_batch.bin", "cifar-10-batches-bin/test_batch.bin"});
    } else if (name == "cifar100") {
      info.description = "CIFAR-100 binary version (cifar-100-binary), 50k/10k, 100 fine classes, 3x32x32";
      info.available = probe(info.default_root, {"test.bin", "cifar-100-binary/test.bin"});
    } else if (name == "imagefolder") {
      info.description = "<root>/<train_split|test_split>/<class>/*.jpg|png (ImageNet layout), optional class_list (e.g. ImageNet-100)";
    } else if (name == "synthetic") {
      info.description = "generated: class patterns plus noise (data.num_classes, data.channels, data.image_size)";
      info.available = true;
    } else if (name == "sort-of-clevr-vqa") {
      info.description = "generated VQA (Santoro et al. 2017 scenes): 3 tasks (attributes, relations, new shapes), question -> one-word answer, RGB 48x48";
      info.available = true;
    } else if (name == "sort-of-clevr-caption") {
      info.description = "generated captioning: 5 tasks split by the featured shape, prompt -> caption, RGB 48x48";
      info.available = true;
    } else {
      info.description = "generated: the label is decided by one patch (attribution sanity checks)";
      info.available = true;
    }
    if (name == "imagefolder") info.status = "needs data.root";
    else if (name.rfind("synthetic", 0) == 0 || name.rfind("sort-of-clevr", 0) == 0) info.status = "generated on demand";
    else info.status = info.available ? "available at " + info.default_root : "not found at " + info.default_root + " (set data.root)";
    out.push_back(info);
  }
  return out;
}

DatasetSplits open_dataset(const DataConfig& data, int64_t patch_size, uint64_t seed) {
  const std::string root = data.root.empty() ? default_root(data.name) : data.root;
  DatasetSplits s;
  if (data.name == "fashion-mnist" || data.name == "mnist") {
    const auto& names = data.name == "mnist" ? kDigitNames : kFashionNames;
    s.train = resized(load_idx_dataset(root, "train", data.name, names), data.image_size);
    s.test = resized(load_idx_dataset(root, "t10k", data.name, names), data.image_size);
  } else if (data.name == "cifar10") {
    s.train = resized(load_cifar10(root, true), data.image_size);
    s.test = resized(load_cifar10(root, false), data.image_size);
  } else if (data.name == "cifar100") {
    s.train = resized(load_cifar100(root, true), data.image_size);
    s.test = resized(load_cifar100(root, false), data.image_size);
  } else if (data.name == "imagefolder") {
    s.train = std::make_shared<ImageFolderDataset>(root, data.train_split, data.class_list, data.image_size, data.crop_fraction, data.workers);
    s.test = std::make_shared<ImageFolderDataset>(root, data.test_split, data.class_list, data.image_size, data.crop_fraction, data.workers);
    if (s.train->num_classes() != s.test->num_classes()) {
      throw_input("{}: train split has {} classes but test split has {}", root, s.train->num_classes(), s.test->num_classes());
    }
  } else if (data.name == "synthetic" || data.name == "synthetic-patch") {
    SyntheticOptions o;
    o.num_classes = data.num_classes;
    o.channels = data.channels;
    o.image_size = data.image_size > 0 ? data.image_size : 28;
    o.patch_size = patch_size;
    o.seed = seed;
    o.key_patch = data.name == "synthetic-patch";
    o.per_class = data.train_per_class > 0 ? data.train_per_class : 500;
    s.train = train_subset(make_synthetic(o, 0), data.train_subset, data.subset_fraction, uint64_t(data.subset_seed));
    o.per_class = data.test_per_class > 0 ? data.test_per_class : 100;
    s.test = make_synthetic(o, 1);
    return s;
  } else if (data.name == "sort-of-clevr-vqa" || data.name == "sort-of-clevr-caption") {
    // Per task (one class per task): data.train_per_class / test_per_class samples.
    s = make_sort_of_clevr(data.name == "sort-of-clevr-vqa" ? "vqa" : "caption", data.image_size, data.train_per_class, data.test_per_class);
    s.train = train_subset(s.train, data.train_subset, data.subset_fraction, uint64_t(data.subset_seed));
    return s;
  } else {
    throw_input("data.name = '{}' is not a known dataset; accepted: {}", data.name, fmt::join(dataset_names(), ", "));
  }
  s.train = limit_per_class(train_subset(s.train, data.train_subset, data.subset_fraction, uint64_t(data.subset_seed)), data.train_per_class,
                            seed ^ 0x7472);
  s.test = limit_per_class(s.test, data.test_per_class, seed ^ 0x7465);
  return s;
}

}  // namespace cts
