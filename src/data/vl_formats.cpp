// Vision-language JSON loaders (data/vl_formats.hpp).
#include "cts/data/vl_formats.hpp"

#include <fmt/format.h>

#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "cts/core/error.hpp"
#include "cts/core/fs.hpp"

namespace cts {
namespace {

using nlohmann::json;

json parse_file(const std::filesystem::path& path, const char* what) {
  if (!std::filesystem::is_regular_file(path)) throw_input("{}: no such {} file", path.string(), what);
  try {
    return json::parse(read_file(path, what));
  } catch (const json::exception& e) {
    throw_input("{}: not valid JSON ({}): {}", path.string(), what, e.what());
  }
}

// j[key] as T, or an InputError naming the file, the record and the field.
template <typename T>
T field(const json& j, const char* key, const std::filesystem::path& file, const std::string& record) {
  if (!j.is_object() || !j.contains(key)) throw_input("{}: {} has no field \"{}\"", file.string(), record, key);
  try {
    return j.at(key).get<T>();
  } catch (const json::exception&) {
    throw_input("{}: {} field \"{}\" is {} ({} expected)", file.string(), record, key, j.at(key).dump().substr(0, 40),
                std::is_same_v<T, std::string> ? "a string" : "a number");
  }
}

const json& array_field(const json& j, const char* key, const std::filesystem::path& file, const std::string& record) {
  if (!j.is_object() || !j.contains(key) || !j.at(key).is_array()) throw_input("{}: {} has no array \"{}\"", file.string(), record, key);
  return j.at(key);
}

}  // namespace

std::vector<VLRecord> load_vqa_v2(const std::filesystem::path& questions, const std::filesystem::path& annotations,
                                  const std::filesystem::path& image_dir) {
  const json q = parse_file(questions, "VQA v2 questions");
  const json a = parse_file(annotations, "VQA v2 annotations");
  const std::string subtype = field<std::string>(q, "data_subtype", questions, "the file");
  std::map<int64_t, const json*> by_question;
  const auto& anns = array_field(a, "annotations", annotations, "the file");
  for (size_t i = 0; i < anns.size(); ++i) by_question[field<int64_t>(anns[i], "question_id", annotations, fmt::format("annotation {}", i))] = &anns[i];
  std::vector<VLRecord> out;
  const auto& qs = array_field(q, "questions", questions, "the file");
  for (size_t i = 0; i < qs.size(); ++i) {
    const std::string rec = fmt::format("question {}", i);
    VLRecord r;
    r.id = field<int64_t>(qs[i], "question_id", questions, rec);
    r.image_id = field<int64_t>(qs[i], "image_id", questions, rec);
    r.question = field<std::string>(qs[i], "question", questions, rec);
    r.image = image_dir / fmt::format("COCO_{}_{:012d}.jpg", subtype, r.image_id);
    auto it = by_question.find(r.id);
    if (it == by_question.end()) throw_input("{}: question_id {} ({}) has no annotation in {}", questions.string(), r.id, rec, annotations.string());
    const json& an = *it->second;
    const std::string arec = fmt::format("the annotation of question_id {}", r.id);
    if (field<int64_t>(an, "image_id", annotations, arec) != r.image_id)
      throw_input("{}: {} names image_id {}, the question {}", annotations.string(), arec, an.at("image_id").dump(), r.image_id);
    const auto& answers = array_field(an, "answers", annotations, arec);
    for (size_t k = 0; k < answers.size(); ++k) r.answers.push_back(field<std::string>(answers[k], "answer", annotations, fmt::format("{}, answer {}", arec, k)));
    if (r.answers.empty()) throw_input("{}: {} has no answers", annotations.string(), arec);
    r.family = an.contains("question_type") && an["question_type"].is_string() ? an["question_type"].get<std::string>() : "";
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<VLRecord> load_clevr_questions(const std::filesystem::path& questions, const std::filesystem::path& image_dir) {
  const json q = parse_file(questions, "CLEVR questions");
  std::vector<VLRecord> out;
  const auto& qs = array_field(q, "questions", questions, "the file");
  for (size_t i = 0; i < qs.size(); ++i) {
    const std::string rec = fmt::format("question {}", i);
    VLRecord r;
    r.id = qs[i].contains("question_index") ? field<int64_t>(qs[i], "question_index", questions, rec) : int64_t(i);
    r.image_id = field<int64_t>(qs[i], "image_index", questions, rec);
    r.image = image_dir / field<std::string>(qs[i], "image_filename", questions, rec);
    r.question = field<std::string>(qs[i], "question", questions, rec);
    // The test split publishes no answers.
    if (!qs[i].contains("answer")) throw_input("{}: {} has no answer (CLEVR's test questions are unanswered; use train or val)", questions.string(), rec);
    r.answers = {field<std::string>(qs[i], "answer", questions, rec)};
    if (qs[i].contains("question_family_index")) r.family = std::to_string(field<int64_t>(qs[i], "question_family_index", questions, rec));
    out.push_back(std::move(r));
  }
  return out;
}

std::vector<VLRecord> load_visual_genome_qa(const std::filesystem::path& question_answers, const std::filesystem::path& image_dir) {
  const json j = parse_file(question_answers, "Visual Genome question answers");
  if (!j.is_array()) throw_input("{}: expected a list of images with \"qas\" (Visual Genome question_answers.json)", question_answers.string());
  std::vector<VLRecord> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string irec = fmt::format("image entry {}", i);
    const int64_t image_id = field<int64_t>(j[i], "id", question_answers, irec);
    std::filesystem::path image = image_dir / fmt::format("{}.jpg", image_id);
    for (const char* sub : {"VG_100K", "VG_100K_2"})
      if (!std::filesystem::exists(image) && std::filesystem::exists(image_dir / sub / fmt::format("{}.jpg", image_id)))
        image = image_dir / sub / fmt::format("{}.jpg", image_id);
    const auto& qas = array_field(j[i], "qas", question_answers, irec);
    for (size_t k = 0; k < qas.size(); ++k) {
      const std::string rec = fmt::format("{}, qa {}", irec, k);
      VLRecord r;
      r.image = image;
      r.image_id = image_id;
      r.id = field<int64_t>(qas[k], "qa_id", question_answers, rec);
      r.question = field<std::string>(qas[k], "question", question_answers, rec);
      r.answers = {field<std::string>(qas[k], "answer", question_answers, rec)};
      // The family: the question word (what, where, how, who, why, when).
      std::string w;
      for (char c : r.question) {
        if (!std::isalpha(static_cast<unsigned char>(c))) break;
        w += char(std::tolower(static_cast<unsigned char>(c)));
      }
      r.family = w;
      out.push_back(std::move(r));
    }
  }
  return out;
}

std::vector<VLRecord> load_coco_captions(const std::filesystem::path& captions, const std::filesystem::path& image_dir,
                                         const std::filesystem::path& instances) {
  const json c = parse_file(captions, "COCO captions");
  std::map<int64_t, VLRecord> by_image;
  const auto& images = array_field(c, "images", captions, "the file");
  for (size_t i = 0; i < images.size(); ++i) {
    const std::string rec = fmt::format("image {}", i);
    VLRecord r;
    r.image_id = field<int64_t>(images[i], "id", captions, rec);
    r.image = image_dir / field<std::string>(images[i], "file_name", captions, rec);
    by_image[r.image_id] = std::move(r);
  }
  const auto& anns = array_field(c, "annotations", captions, "the file");
  for (size_t i = 0; i < anns.size(); ++i) {
    const std::string rec = fmt::format("annotation {}", i);
    const int64_t image_id = field<int64_t>(anns[i], "image_id", captions, rec);
    auto it = by_image.find(image_id);
    if (it == by_image.end()) throw_input("{}: {} names image_id {}, which \"images\" does not list", captions.string(), rec, image_id);
    it->second.answers.push_back(field<std::string>(anns[i], "caption", captions, rec));
  }
  if (!instances.empty()) {
    const json in = parse_file(instances, "COCO instances");
    std::map<int64_t, std::string> names;
    const auto& cats = array_field(in, "categories", instances, "the file");
    for (size_t i = 0; i < cats.size(); ++i)
      names[field<int64_t>(cats[i], "id", instances, fmt::format("category {}", i))] = field<std::string>(cats[i], "name", instances, fmt::format("category {}", i));
    std::map<int64_t, std::set<std::string>> per_image;
    const auto& objs = array_field(in, "annotations", instances, "the file");
    for (size_t i = 0; i < objs.size(); ++i) {
      const std::string rec = fmt::format("annotation {}", i);
      const int64_t cat = field<int64_t>(objs[i], "category_id", instances, rec);
      auto n = names.find(cat);
      if (n == names.end()) throw_input("{}: {} has category_id {}, which \"categories\" does not list", instances.string(), rec, cat);
      per_image[field<int64_t>(objs[i], "image_id", instances, rec)].insert(n->second);
    }
    for (auto& [id, r] : by_image) {
      auto it = per_image.find(id);
      if (it != per_image.end()) r.categories.assign(it->second.begin(), it->second.end());
    }
  }
  std::vector<VLRecord> out;
  for (auto& [id, r] : by_image) {
    if (r.answers.empty()) continue;  // images without captions (none in the published files)
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace cts
