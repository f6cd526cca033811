// Vision-language datasets: images with one text payload per sample, in the layout the
// vl-decoder learner (learners/vl_decoder) reads:
//   payload = [prefix ids ..., <sep>, target ids ..., <eos>]
// VQA: prefix = the question, target = the answer; captioning: prefix = a fixed prompt
// ("a picture of"), target = the caption. The label of a sample is its task group (one
// "class" per task, split with data.class_order: natural), so the sequential loop's task
// split, memory selection and replay work unchanged. The vocabulary is built from the
// training texts alone (data/vocabulary.hpp); test texts are encoded with it.
//
// Sort-of-CLEVR sequences (data/sort_of_clevr.hpp for scenes, questions and captions; scenes
// drawn from a fixed generator seed, so every run sees the same data, like a real dataset):
//   sort-of-clevr-vqa, 3 tasks that differ as the paper's VQA v2 -> CLEVR -> Visual Genome do:
//     0 attributes   non-relational questions (shape, left/right, top/bottom); squares and circles
//     1 relations    relational questions (shape of the closest / furthest object, count of
//                    the same shape); squares and circles
//     2 new-shapes   all six families on scenes of triangles, crosses and diamonds, two colours
//                    swapped (purple, cyan for orange, gray): a shifted vocabulary
//     6 objects per scene; one question per sample (a seeded draw among the task's families
//     and the scene's objects).
//   sort-of-clevr-caption, 5 tasks split by the object kind the scenes feature (as the paper
//     splits COCO by object class): task t features shape t of (square, circle, triangle,
//     cross, diamond) — at least one object has it — and draws its other objects from shapes
//     t and t+1 (mod 5); 4 objects per scene; the caption lists them in reading order.
// Image side data.image_size (default 48, a multiple of 6), RGB; the objects sit on a 6 x 6
// grid of cells (side c = image_size / 6, objects of side c − 2): with model.patch_size = c,
// each object is exactly one token.
#pragma once
#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "cts/data/dataset.hpp"
#include "cts/data/registry.hpp"
#include "cts/data/sort_of_clevr.hpp"
#include "cts/data/vocabulary.hpp"

namespace cts {

struct VLText {
  std::string prefix, target;
};

// The payloads of `texts` in the layout above (InputError when a sample would exceed the
// buffer's 65535 values).
Payload encode_vl_payload(const std::vector<VLText>& texts, const Vocabulary& vocabulary);

struct VLSequence {
  std::vector<int64_t> prefix;  // ids before <sep>
  std::vector<int64_t> target;  // ids after <sep>, ending with <eos>
};
// One sample's payload values (int32 [L]) split at its first <sep>; InputError naming
// `origin` when there is no <sep> or no target.
VLSequence split_vl_payload(const torch::Tensor& values, const std::string& origin);

class VLDataset : public TensorDataset {
 public:
  VLDataset(std::string name, torch::Tensor images, torch::Tensor labels, std::vector<std::string> task_names, Payload payload,
            std::shared_ptr<const Vocabulary> vocabulary, std::string text_task);
  std::shared_ptr<const Vocabulary> vocabulary() const override { return vocabulary_; }
  std::string text_task() const override { return text_task_; }

 private:
  std::shared_ptr<const Vocabulary> vocabulary_;
  std::string text_task_;
};

// One task of a Sort-of-CLEVR sequence: its scenes and (VQA) question families.
struct SortOfClevrTask {
  std::string name;
  SortOfClevrOptions scene;
  std::vector<std::string> families;  // empty for captioning
};
std::vector<SortOfClevrTask> sort_of_clevr_tasks(const std::string& text_task, int64_t image_size);
// The caption prompt (the prefix of every captioning sample).
const char* caption_prompt();

// Train and test splits of "vqa" or "caption": `train_per_task` / `test_per_task` samples per
// task (0: 2000 / 300). InputError for an image size the scenes do not fit.
DatasetSplits make_sort_of_clevr(const std::string& text_task, int64_t image_size, int64_t train_per_task, int64_t test_per_task);

}  // namespace cts
