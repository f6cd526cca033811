// TensorDataset, SubsetDataset and per-class limiting.
#include "cts/data/dataset.hpp"

#include <torch/torch.h>

#include "cts/core/error.hpp"
#include "cts/core/rng.hpp"

namespace cts {

void Payload::check(const std::string& what) const {
  if (empty()) return;
  TORCH_CHECK(lengths.dim() == 1 && lengths.scalar_type() == torch::kInt64, what, ": payload lengths must be int64 [B], got ", lengths.sizes());
  TORCH_CHECK(values.defined() && values.dim() == 1 && values.scalar_type() == torch::kInt32, what, ": payload values must be int32 [L]");
  TORCH_CHECK(lengths.numel() == 0 || lengths.min().item<int64_t>() >= 0, what, ": payload lengths must be >= 0");
  TORCH_CHECK(lengths.sum().item<int64_t>() == values.size(0), what, ": payload lengths sum to ", lengths.sum().item<int64_t>(), " but there are ",
              values.size(0), " values");
}

Payload Payload::select(const torch::Tensor& indices) const {
  if (empty()) return {};
  auto idx = indices.to(torch::kCPU, torch::kInt64).contiguous();
  auto offsets = torch::cumsum(lengths, 0) - lengths;  // [B] first value of each sample
  Payload out;
  out.lengths = lengths.index_select(0, idx);
  const int64_t total = out.lengths.sum().item<int64_t>();
  // Gather index of every output value: offset of its sample + its rank within the sample.
  auto starts = offsets.index_select(0, idx).repeat_interleave(out.lengths);                     // [total]
  auto first = (torch::cumsum(out.lengths, 0) - out.lengths).repeat_interleave(out.lengths);  // [total]
  auto rank = torch::arange(total, torch::kInt64) - first;
  out.values = values.index_select(0, starts + rank);
  return out;
}

torch::Tensor Payload::sample(int64_t i) const {
  TORCH_CHECK(!empty() && i >= 0 && i < size(), "payload sample ", i, " out of range");
  const int64_t start = i == 0 ? 0 : lengths.narrow(0, 0, i).sum().item<int64_t>();
  return values.narrow(0, start, lengths[i].item<int64_t>());
}

Payload Payload::concat(const std::vector<Payload>& parts) {
  std::vector<torch::Tensor> v, l;
  for (const auto& p : parts) {
    if (p.empty()) continue;
    v.push_back(p.values);
    l.push_back(p.lengths);
  }
  if (l.empty()) return {};
  return {torch::cat(v), torch::cat(l)};
}

std::vector<std::string> Dataset::class_names() const {
  std::vector<std::string> names;
  for (int64_t c = 0; c < num_classes(); ++c) names.push_back(std::to_string(c));
  return names;
}

TensorDataset::TensorDataset(std::string name, torch::Tensor images, torch::Tensor labels, int64_t num_classes,
                             std::vector<std::string> class_names, Payload payload)
    : name_(std::move(name)), images_(std::move(images)), labels_(std::move(labels)), num_classes_(num_classes),
      class_names_(std::move(class_names)), payload_(std::move(payload)) {
  TORCH_CHECK(images_.dim() == 4 && images_.scalar_type() == torch::kUInt8, "images must be uint8 [N, C, H, W], got ",
              images_.sizes(), " ", images_.scalar_type());
  TORCH_CHECK(labels_.dim() == 1 && labels_.size(0) == images_.size(0), "labels must be [N] with N = ", images_.size(0),
              ", got ", labels_.sizes());
  labels_ = labels_.to(torch::kInt64).contiguous();
  images_ = images_.contiguous();
  payload_.check(name_);
  TORCH_CHECK(payload_.empty() || payload_.size() == images_.size(0), name_, ": the payload has ", payload_.size(), " entries for ",
              images_.size(0), " samples");
}

Payload TensorDataset::payloads(const torch::Tensor& indices) const { return payload_.select(indices); }

ImageShape TensorDataset::shape() const { return {images_.size(1), images_.size(2), images_.size(3)}; }

torch::Tensor TensorDataset::images(const torch::Tensor& indices) const { return images_.index_select(0, indices.to(torch::kInt64)); }

std::vector<std::string> TensorDataset::class_names() const {
  if (static_cast<int64_t>(class_names_.size()) == num_classes_) return class_names_;
  return Dataset::class_names();
}

SubsetDataset::SubsetDataset(std::shared_ptr<const Dataset> base, torch::Tensor indices)
    : base_(std::move(base)), indices_(indices.to(torch::kInt64).contiguous()) {
  labels_ = base_->labels().index_select(0, indices_);
}

torch::Tensor SubsetDataset::images(const torch::Tensor& indices) const {
  return base_->images(indices_.index_select(0, indices.to(torch::kInt64)));
}

torch::Tensor train_subset_indices(const torch::Tensor& labels, int64_t num_classes, const std::string& part, double fraction, uint64_t split_seed) {
  if (part != "a" && part != "b") throw_input("data.train_subset = '{}' is not known; accepted: all, a, b", part);
  if (!(fraction > 0.0 && fraction < 1.0)) throw_input("data.subset_fraction = {} leaves a part empty; accepted: (0, 1)", fraction);
  std::vector<torch::Tensor> keep;
  for (int64_t c = 0; c < num_classes; ++c) {
    torch::Tensor idx = (labels == c).nonzero().flatten();
    const int64_t n = idx.size(0), na = std::llround(fraction * double(n));
    if (n == 0) continue;
    if (na == 0 || na == n) {
      throw_input("data.train_subset: class {} has {} training samples; data.subset_fraction = {} leaves part {} empty", c, n, fraction, na == 0 ? "a" : "b");
    }
    auto gen = make_generator(split_seed, "train_subset", {c});
    auto perm = idx.index_select(0, torch::randperm(n, gen, torch::kInt64));
    keep.push_back(part == "a" ? perm.narrow(0, 0, na) : perm.narrow(0, na, n - na));
  }
  if (keep.empty()) return torch::zeros({0}, torch::kInt64);
  return std::get<0>(torch::sort(torch::cat(keep)));
}

std::shared_ptr<const Dataset> train_subset(std::shared_ptr<const Dataset> base, const std::string& part, double fraction, uint64_t split_seed) {
  if (part == "all") return base;
  return std::make_shared<SubsetDataset>(base, train_subset_indices(base->labels(), base->num_classes(), part, fraction, split_seed));
}

std::shared_ptr<const Dataset> limit_per_class(std::shared_ptr<const Dataset> base, int64_t per_class, uint64_t seed) {
  if (per_class <= 0) return base;
  const torch::Tensor& labels = base->labels();
  std::vector<torch::Tensor> keep;
  bool limited = false;
  for (int64_t c = 0; c < base->num_classes(); ++c) {
    torch::Tensor idx = (labels == c).nonzero().flatten();
    if (idx.size(0) > per_class) {
      auto gen = make_generator(seed, "limit_per_class", {c});
      idx = idx.index_select(0, torch::randperm(idx.size(0), gen, torch::kInt64).narrow(0, 0, per_class));
      limited = true;
    }
    keep.push_back(idx);
  }
  if (!limited) return base;
  torch::Tensor all = std::get<0>(torch::sort(torch::cat(keep)));
  return std::make_shared<SubsetDataset>(base, all);
}

torch::Tensor resize_images(const torch::Tensor& images, int64_t height, int64_t width) {
  TORCH_CHECK(images.dim() == 4, "images must be [N, C, H, W], got ", images.sizes());
  if (images.size(2) == height && images.size(3) == width) return images;
  namespace F = torch::nn::functional;
  std::vector<torch::Tensor> out;
  const int64_t chunk = 1024;
  for (int64_t i = 0; i < images.size(0); i += chunk) {
    auto part = images.narrow(0, i, std::min(chunk, images.size(0) - i)).to(torch::kFloat32);
    auto r = F::interpolate(part, F::InterpolateFuncOptions()
                                      .size(std::vector<int64_t>{height, width})
                                      .mode(torch::kBilinear)
                                      .align_corners(false)
                                      .antialias(height < images.size(2) || width < images.size(3)));
    out.push_back(r.round().clamp(0, 255).to(torch::kUInt8));
  }
  return torch::cat(out);
}

}  // namespace cts
