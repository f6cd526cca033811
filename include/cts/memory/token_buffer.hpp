// The replay memory of core tokensets. Per kept sample it stores its label, task id and
// only its kept patches as raw uint8 pixels with their uint16 positions; nothing else
// (optional coreset weights when replay weighting is on, and the sample's payload, e.g. the
// token ids of a VQA question and answer, when its dataset has one). Samples may keep different
// numbers of tokens. Byte accounting is exact: bytes() is the size of the tensor data that
// buffer.safetensors holds.
//
// File layout (safetensors, readable from Python):
//   patches   U8  [total_tokens, C, p, p]   kept patches, sample after sample
//   positions U16 [partial_tokens]          row-major patch index of each kept patch of the samples
//                                           that keep fewer than num_tokens tokens (a whole
//                                           sample, as a coreset keeps, stores none: its
//                                           positions are 0 .. num_tokens-1). Files of format
//                                           v1 hold every token's position; both load.
//   counts    U16 [n]                       tokens kept by each sample
//   labels    I32 [n]                       dataset class id
//   tasks     U16 [n]                       task the sample came from
//   weights   F32 [n]                       only if the buffer was built with weights
//   payload   I32 [payload values]          only with payloads: every sample's values in turn
//   payload_lengths U16 [n]                 only with payloads: values per sample
//   __metadata__: patch_size, image_size, channels, num_tokens, strategy, fractions, ...
#pragma once
#include <torch/types.h>

#include <filesystem>
#include <map>
#include <string>

#include "cts/data/dataset.hpp"

namespace cts {

struct BufferBatch {
  torch::Tensor images;     // uint8 [B, C, H, W], missing patches 0 (when requested)
  torch::Tensor patches;    // uint8 [B, Kmax, C, p, p], padding 0 (when requested)
  torch::Tensor positions;  // int64 [B, Kmax], -1 = padding
  torch::Tensor labels;     // int64 [B] dataset class ids
  torch::Tensor tasks;      // int64 [B]
  torch::Tensor weights;    // float [B] (ones if the buffer has no weights)
  Payload payload;          // the samples' payloads (empty if the buffer has none)
};

class TokenBuffer {
 public:
  TokenBuffer() = default;
  TokenBuffer(int64_t channels, int64_t image_size, int64_t patch_size);

  // Adds n samples: images uint8 [n, C, H, W], labels [n], positions [n, K] int64 with -1
  // padding for samples keeping fewer tokens, optional weights [n], optional payload of n
  // samples (every sample of a buffer has weights, and a payload, or none does).
  void add(const torch::Tensor& images, const torch::Tensor& labels, int64_t task, const torch::Tensor& positions,
           const torch::Tensor& weights = {}, const Payload& payload = {});

  int64_t size() const { return labels_.defined() ? labels_.size(0) : 0; }
  int64_t tokens() const { return positions_.defined() ? positions_.size(0) : 0; }
  bool empty() const { return size() == 0; }
  // Exact bytes of the stored tensors (= buffer.safetensors minus its header).
  int64_t bytes() const;
  // Positions as the file stores them: those of samples keeping fewer than num_tokens() tokens.
  torch::Tensor stored_positions() const;
  bool has_weights() const { return weights_.defined(); }
  bool has_payload() const { return !payload_.empty(); }

  int64_t channels() const { return channels_; }
  int64_t image_size() const { return image_size_; }
  int64_t patch_size() const { return patch_size_; }
  int64_t num_tokens() const { return (image_size_ / patch_size_) * (image_size_ / patch_size_); }

  // Keeps only the samples at int64 `indices` (ascending), in their order; the others are removed.
  void retain(const torch::Tensor& indices);
  // Keeps the first `per_class` samples of every label (in buffer order); returns how many
  // samples were removed.
  int64_t keep_first_per_class(int64_t per_class);

  // Rebuilds samples. `want_images`: full uint8 grids with missing patches 0;
  // `want_patches`: only the kept patches, padded to the longest sample.
  BufferBatch gather(const torch::Tensor& indices, bool want_images, bool want_patches) const;

  const torch::Tensor& labels() const { return labels_; }
  const torch::Tensor& tasks() const { return tasks_; }
  const torch::Tensor& counts() const { return counts_; }
  const torch::Tensor& weights() const { return weights_; }
  const torch::Tensor& patches() const { return patches_; }
  const torch::Tensor& positions() const { return positions_; }
  const Payload& payload() const { return payload_; }

  std::map<std::string, std::string>& metadata() { return metadata_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  void save(const std::filesystem::path& path) const;
  // Loads and validates (shapes, counts vs tokens, positions < T); InputError names the file.
  static TokenBuffer load(const std::filesystem::path& path);

 private:
  torch::Tensor partial_samples() const;  // bool [n]: keeps fewer than num_tokens() tokens
  int64_t channels_ = 0, image_size_ = 0, patch_size_ = 0;
  torch::Tensor patches_;    // uint8 [total, C, p, p]
  torch::Tensor positions_;  // int64 [total]
  torch::Tensor counts_;     // int64 [n]
  torch::Tensor offsets_;    // int64 [n]: first token of each sample
  torch::Tensor labels_;     // int64 [n]
  torch::Tensor tasks_;      // int64 [n]
  torch::Tensor weights_;    // float [n] or undefined
  Payload payload_;          // n entries or empty
  std::map<std::string, std::string> metadata_;
};

}  // namespace cts
