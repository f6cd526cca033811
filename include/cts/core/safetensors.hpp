// Reader and writer of the .safetensors format (8-byte little-endian header length, JSON
// header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, raw data).
// Used for model weights (timm-compatible names), the token buffer and checkpoints, so
// Python users can open every file cts writes with the safetensors library.
#pragma once
#include <torch/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace cts {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;            // safetensors dtype string: F32, BF16, U16, ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte offsets inside the data section
};

struct SafetensorsFile {
  std::filesystem::path path;
  std::vector<SafetensorsEntry> entries;        // in data order
  std::map<std::string, torch::Tensor> tensors;  // U16 is widened to int32 (torch 1.13 has no uint16)
  std::map<std::string, std::string> metadata;
  uint64_t data_bytes = 0;                       // size of the data section

  bool contains(const std::string& name) const { return tensors.count(name) != 0; }
  // The tensor `name`; throws InputError naming the file and the tensors it has.
  const torch::Tensor& at(const std::string& name) const;
  // A metadata value; throws InputError naming the file if absent.
  const std::string& meta(const std::string& key) const;
};

// One tensor to write. `dtype` overrides the stored type, e.g. "U16" for an int32 tensor
// whose values fit 16 bits unsigned (checked).
struct SafetensorsTensor {
  std::string name;
  torch::Tensor tensor;
  std::string dtype;  // empty: derived from tensor's scalar type
};

// Parses and validates only the header (cheap; for `cts buffer inspect`).
SafetensorsFile read_safetensors_header(const std::filesystem::path& path);

// Loads a whole file. Rejects a short file, an oversized or malformed header, unknown
// dtypes, shapes that disagree with offsets, and offsets outside or overlapping the data.
SafetensorsFile load_safetensors(const std::filesystem::path& path);

// Serialises tensors (CPU copies are made as needed) in the given order.
std::string serialize_safetensors(const std::vector<SafetensorsTensor>& tensors,
                                  const std::map<std::string, std::string>& metadata = {});

// serialize_safetensors + atomic write.
void save_safetensors(const std::filesystem::path& path, const std::vector<SafetensorsTensor>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace cts
