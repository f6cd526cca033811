// Loaders of the vision-language datasets the paper uses, in their published JSON formats,
// into one record type: VQA v2 (questions + annotations, 10 human answers each), CLEVR
// (questions with one answer and a question family), Visual Genome QA (question_answers.json),
// COCO captions (captions_*.json, optionally with the object categories of each image from
// instances_*.json to split tasks by object class as the paper does). Images stay on disk and
// are decoded when used (data/image_codec). Every malformed file is an InputError naming the
// file, the record and the field.
#pragma once
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace cts {

struct VLRecord {
  std::filesystem::path image;      // the image file
  int64_t image_id = -1;            // the dataset's image id (CLEVR: image_index)
  int64_t id = -1;                  // question id / qa_id / -1 for a caption group
  std::string question;             // empty for captioning
  std::vector<std::string> answers;  // VQA v2: the 10 human answers; CLEVR, VG: one; COCO: the reference captions
  std::string family;               // VQA v2: question_type; CLEVR: question family index; VG: the question word; COCO: ""
  std::vector<std::string> categories;  // COCO with instances: the object categories in the image (names)
};

// VQA v2: v2_OpenEnded_mscoco_<split>_questions.json + v2_mscoco_<split>_annotations.json;
// images <image_dir>/COCO_<data_subtype>_<image_id, 12 digits>.jpg.
std::vector<VLRecord> load_vqa_v2(const std::filesystem::path& questions, const std::filesystem::path& annotations,
                                  const std::filesystem::path& image_dir);
// CLEVR v1.0: questions/CLEVR_<split>_questions.json; images <image_dir>/<image_filename>.
std::vector<VLRecord> load_clevr_questions(const std::filesystem::path& questions, const std::filesystem::path& image_dir);
// Visual Genome: question_answers.json; images <image_dir>/<image_id>.jpg (also looked up in
// VG_100K/ and VG_100K_2/ below it).
std::vector<VLRecord> load_visual_genome_qa(const std::filesystem::path& question_answers, const std::filesystem::path& image_dir);
// COCO captions: captions_<split>.json (one record per image, its captions as answers);
// `instances` (optional, instances_<split>.json) adds each image's category names.
std::vector<VLRecord> load_coco_captions(const std::filesystem::path& captions, const std::filesystem::path& image_dir,
                                         const std::filesystem::path& instances = {});

}  // namespace cts
