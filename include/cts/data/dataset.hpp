// Datasets as sources of (uint8 image, label) pairs. In-memory datasets (idx, CIFAR,
// synthetic) hold one uint8 tensor; ImageFolder decodes files on demand with worker
// threads. Images are always uint8 [C, H, W] at the dataset's final size: what the
// token buffer stores is exactly what the model was trained on.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cts {

class Vocabulary;

struct ImageShape {
  int64_t channels = 1, height = 28, width = 28;
  int64_t bytes() const { return channels * height * width; }
  bool operator==(const ImageShape& o) const { return channels == o.channels && height == o.height && width == o.width; }
};

// Per-sample integer data beyond the label, of any length per sample (e.g. the token ids of a
// VQA question and answer). Flat layout: values int32 [L] sample after sample, lengths int64
// [B] with L = Σ lengths. A default-constructed payload is empty (the dataset has none).
struct Payload {
  torch::Tensor values;   // int32 [L]
  torch::Tensor lengths;  // int64 [B]

  bool empty() const { return !lengths.defined(); }
  int64_t size() const { return lengths.defined() ? lengths.size(0) : 0; }
  // The samples at int64 indices [K], in that order.
  Payload select(const torch::Tensor& indices) const;
  // Sample i's values, int32 [lengths[i]].
  torch::Tensor sample(int64_t i) const;
  // The parts one after the other (empty parts are skipped; all empty gives an empty payload).
  static Payload concat(const std::vector<Payload>& parts);
  // Checks the layout (dtypes, dims, Σ lengths = L, lengths >= 0); TORCH_CHECK names `what`.
  void check(const std::string& what) const;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual std::string name() const = 0;
  virtual int64_t size() const = 0;
  virtual ImageShape shape() const = 0;
  virtual int64_t num_classes() const = 0;
  // Labels of every sample, int64 [N], in [0, num_classes).
  virtual const torch::Tensor& labels() const = 0;
  // uint8 [B, C, H, W] for int64 indices [B].
  virtual torch::Tensor images(const torch::Tensor& indices) const = 0;
  // Human-readable class names (defaults to "0", "1", ...).
  virtual std::vector<std::string> class_names() const;
  // Whether samples carry a payload, and the payloads of int64 indices [B] (empty for
  // datasets without one, the default).
  virtual bool has_payload() const { return false; }
  virtual Payload payloads(const torch::Tensor& indices) const { return {}; }
  // Vision-language datasets (data/vl_dataset.hpp): the word vocabulary of their payloads and
  // what the text is ("vqa": question -> answer, "caption": prompt -> caption); null / "" for
  // image-only datasets.
  virtual std::shared_ptr<const Vocabulary> vocabulary() const { return nullptr; }
  virtual std::string text_task() const { return ""; }
};

// A dataset held in memory as one uint8 tensor.
class TensorDataset : public Dataset {
 public:
  TensorDataset(std::string name, torch::Tensor images, torch::Tensor labels, int64_t num_classes,
                std::vector<std::string> class_names = {}, Payload payload = {});
  std::string name() const override { return name_; }
  int64_t size() const override { return images_.size(0); }
  ImageShape shape() const override;
  int64_t num_classes() const override { return num_classes_; }
  const torch::Tensor& labels() const override { return labels_; }
  torch::Tensor images(const torch::Tensor& indices) const override;
  std::vector<std::string> class_names() const override;
  bool has_payload() const override { return !payload_.empty(); }
  Payload payloads(const torch::Tensor& indices) const override;
  const torch::Tensor& all_images() const { return images_; }

 private:
  std::string name_;
  torch::Tensor images_;  // uint8 [N, C, H, W]
  torch::Tensor labels_;  // int64 [N]
  int64_t num_classes_;
  std::vector<std::string> class_names_;
  Payload payload_;  // empty, or one entry per sample
};

// A view of another dataset restricted to some of its samples (e.g. N per class).
class SubsetDataset : public Dataset {
 public:
  SubsetDataset(std::shared_ptr<const Dataset> base, torch::Tensor indices);
  std::string name() const override { return base_->name(); }
  int64_t size() const override { return indices_.size(0); }
  ImageShape shape() const override { return base_->shape(); }
  int64_t num_classes() const override { return base_->num_classes(); }
  const torch::Tensor& labels() const override { return labels_; }
  torch::Tensor images(const torch::Tensor& indices) const override;
  std::vector<std::string> class_names() const override { return base_->class_names(); }
  bool has_payload() const override { return base_->has_payload(); }
  Payload payloads(const torch::Tensor& indices) const override {
    return base_->payloads(indices_.index_select(0, indices.to(torch::kInt64)));
  }
  std::shared_ptr<const Vocabulary> vocabulary() const override { return base_->vocabulary(); }
  std::string text_task() const override { return base_->text_task(); }

 private:
  std::shared_ptr<const Dataset> base_;
  torch::Tensor indices_;  // int64 [N] into base
  torch::Tensor labels_;
};

// Keeps at most `per_class` samples of each class, chosen by a seeded shuffle
// (per_class <= 0 keeps everything and returns `base` itself).
std::shared_ptr<const Dataset> limit_per_class(std::shared_ptr<const Dataset> base, int64_t per_class, uint64_t seed);

// data.train_subset: a fixed, seeded split of every class into two disjoint parts, A (the
// first round(fraction · n_c) of a permutation of the class's samples drawn from `split_seed`
// alone) and B (the rest), so a pretraining run on A and a continual run on B never share a
// sample whatever their run seeds. Returns the ascending dataset indices of `part` ("a" or
// "b"); InputError when a class would get an empty part.
torch::Tensor train_subset_indices(const torch::Tensor& labels, int64_t num_classes, const std::string& part, double fraction, uint64_t split_seed);
// The dataset restricted to train_subset_indices ("all": `base` itself).
std::shared_ptr<const Dataset> train_subset(std::shared_ptr<const Dataset> base, const std::string& part, double fraction, uint64_t split_seed);

// Resizes every image of an in-memory uint8 tensor [N, C, H, W] (bilinear, antialiased).
torch::Tensor resize_images(const torch::Tensor& images, int64_t height, int64_t width);

}  // namespace cts
