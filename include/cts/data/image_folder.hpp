// ImageFolder (the ImageNet directory layout): <root>/<split>/<class folder>/<image>.
// Classes are the sorted folder names, or those named by a class-list file (one folder per
// line, optional readable name after it: the ImageNet-100 list format). JPEG and PNG files
// are decoded on demand by worker threads, resized and centre-cropped to a square.
#pragma once
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cts/data/dataset.hpp"

namespace cts {

struct ClassListEntry {
  std::string folder;
  std::string readable_name;  // empty if the line has only the folder
};

// Parses a class-list file; InputError names the file and line of a bad entry.
std::vector<ClassListEntry> read_class_list(const std::filesystem::path& path);

class ImageFolderDataset : public Dataset {
 public:
  // `class_list` may be empty: every sub-folder of <root>/<split> in sorted order.
  ImageFolderDataset(const std::filesystem::path& root, const std::string& split, const std::filesystem::path& class_list,
                     int64_t image_size, double crop_fraction, int64_t workers);
  std::string name() const override { return "imagefolder"; }
  int64_t size() const override { return static_cast<int64_t>(files_.size()); }
  ImageShape shape() const override { return {3, image_size_, image_size_}; }
  int64_t num_classes() const override { return static_cast<int64_t>(classes_.size()); }
  const torch::Tensor& labels() const override { return labels_; }
  torch::Tensor images(const torch::Tensor& indices) const override;
  std::vector<std::string> class_names() const override;
  const std::filesystem::path& file(int64_t i) const { return files_.at(static_cast<size_t>(i)); }

 private:
  std::vector<ClassListEntry> classes_;
  std::vector<std::filesystem::path> files_;
  torch::Tensor labels_;
  int64_t image_size_;
  double crop_fraction_;
  int64_t workers_;
};

}  // namespace cts
