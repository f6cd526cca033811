// Vision-language datasets: the payload layout and the Sort-of-CLEVR task sequences (both
// described in data/vl_dataset.hpp).
#include "cts/data/vl_dataset.hpp"

#include <fmt/format.h>

#include <random>

#include "cts/core/error.hpp"
#include "cts/core/rng.hpp"
#include "cts/core/threads.hpp"

namespace cts {

Payload encode_vl_payload(const std::vector<VLText>& texts, const Vocabulary& vocabulary) {
  std::vector<int32_t> values;
  std::vector<int64_t> lengths;
  lengths.reserve(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    auto ids = vocabulary.encode(texts[i].prefix);
    ids.push_back(Vocabulary::kSep);
    for (int64_t id : vocabulary.encode(texts[i].target)) ids.push_back(id);
    ids.push_back(Vocabulary::kEos);
    if (ids.size() > 65535) throw_input("vision-language sample {}: {} token ids; accepted: at most 65535", i, ids.size());
    for (int64_t id : ids) values.push_back(int32_t(id));
    lengths.push_back(int64_t(ids.size()));
  }
  Payload p;
  p.values = torch::from_blob(values.data(), {int64_t(values.size())}, torch::kInt32).clone();
  p.lengths = torch::from_blob(lengths.data(), {int64_t(lengths.size())}, torch::kInt64).clone();
  return p;
}

VLSequence split_vl_payload(const torch::Tensor& values, const std::string& origin) {
  const auto v = values.to(torch::kCPU, torch::kInt64).contiguous();
  const int64_t* d = v.data_ptr<int64_t>();
  const int64_t n = v.numel();
  int64_t sep = -1;
  for (int64_t i = 0; i < n && sep < 0; ++i)
    if (d[i] == Vocabulary::kSep) sep = i;
  if (sep < 0) throw_input("{}: a vision-language payload without <sep> (id {}) between prefix and target", origin, Vocabulary::kSep);
  if (sep + 1 >= n) throw_input("{}: a vision-language payload with no target after <sep>", origin);
  VLSequence s;
  s.prefix.assign(d, d + sep);
  s.target.assign(d + sep + 1, d + n);
  if (s.target.back() != Vocabulary::kEos) s.target.push_back(Vocabulary::kEos);
  return s;
}

VLDataset::VLDataset(std::string name, torch::Tensor images, torch::Tensor labels, std::vector<std::string> task_names, Payload payload,
                     std::shared_ptr<const Vocabulary> vocabulary, std::string text_task)
    : TensorDataset(std::move(name), std::move(images), std::move(labels), int64_t(task_names.size()), task_names, std::move(payload)),
      vocabulary_(std::move(vocabulary)),
      text_task_(std::move(text_task)) {}

const char* caption_prompt() { return "a picture of"; }

std::vector<SortOfClevrTask> sort_of_clevr_tasks(const std::string& text_task, int64_t image_size) {
  std::vector<SortOfClevrTask> tasks;
  SortOfClevrOptions base;
  base.image_size = image_size;
  base.cell = image_size / 6;  // a 6 x 6 grid of cells: with patch = image_size / 6 each object is one token
  base.object_size = base.cell - 2;
  if (text_task == "vqa") {
    base.objects = 6;
    SortOfClevrTask a{"attributes", base, {"shape", "horizontal", "vertical"}};
    SortOfClevrTask r{"relations", base, {"closest", "furthest", "count"}};
    SortOfClevrTask n{"new-shapes", base, sort_of_clevr_families()};
    n.scene.shapes = {"triangle", "cross", "diamond"};
    n.scene.colors = {"red", "green", "blue", "purple", "cyan", "yellow"};
    tasks = {a, r, n};
  } else if (text_task == "caption") {
    base.objects = 4;
    const auto shapes = sort_of_clevr_shapes();
    for (size_t t = 0; t < shapes.size(); ++t) {
      SortOfClevrTask c{shapes[t], base, {}};
      c.scene.shapes = {shapes[t], shapes[(t + 1) % shapes.size()]};
      c.scene.featured_shape = shapes[t];
      tasks.push_back(c);
    }
  } else {
    throw_input("sort-of-clevr: text task '{}' is not known; accepted: vqa, caption", text_task);
  }
  for (size_t t = 0; t < tasks.size(); ++t) {
    tasks[t].scene.seed = derive_seed(0, "sort_of_clevr_" + text_task, {int64_t(t)});  // fixed: the dataset, not the run
    validate(tasks[t].scene);
  }
  return tasks;
}

namespace {

struct Generated {
  torch::Tensor images, labels;
  std::vector<VLText> texts;
};

Generated generate(const std::string& text_task, const std::vector<SortOfClevrTask>& tasks, int64_t split, int64_t per_task) {
  const int64_t T = int64_t(tasks.size()), n = T * per_task, S = tasks.front().scene.image_size;
  Generated g;
  g.images = torch::empty({n, 3, S, S}, torch::kUInt8);
  g.labels = torch::empty({n}, torch::kInt64);
  g.texts.resize(size_t(n));
  auto* labels = g.labels.data_ptr<int64_t>();
  parallel_jobs(n, [&](int64_t k) {
    const int64_t t = k / per_task, i = k % per_task;
    const auto& task = tasks[size_t(t)];
    const Scene scene = generate_scene(task.scene, split, i);
    g.images[k].copy_(render_scene(scene, task.scene));
    labels[k] = t;
    if (text_task == "caption") {
      g.texts[size_t(k)] = {caption_prompt(), scene_caption(scene, task.scene)};
      return;
    }
    std::vector<SceneQuestion> pool;
    for (auto& q : scene_questions(scene, task.scene))
      if (std::find(task.families.begin(), task.families.end(), q.family) != task.families.end()) pool.push_back(std::move(q));
    std::mt19937_64 rng(derive_seed(task.scene.seed, "sort_of_clevr_question", {split, i}));
    const auto& q = pool[size_t(rng() % pool.size())];
    g.texts[size_t(k)] = {q.question, q.answer};
  });
  return g;
}

}  // namespace

DatasetSplits make_sort_of_clevr(const std::string& text_task, int64_t image_size, int64_t train_per_task, int64_t test_per_task) {
  if (image_size == 0) image_size = 48;
  if (image_size < 30 || image_size % 6 != 0)
    throw_input("data.image_size = {} for sort-of-clevr-{}: accepted: a multiple of 6, at least 30 (objects sit on a 6 x 6 grid of cells)", image_size,
                text_task);
  const auto tasks = sort_of_clevr_tasks(text_task, image_size);
  std::vector<std::string> names;
  for (const auto& t : tasks) names.push_back(t.name);
  auto train = generate(text_task, tasks, 0, train_per_task > 0 ? train_per_task : 2000);
  auto test = generate(text_task, tasks, 1, test_per_task > 0 ? test_per_task : 300);
  std::vector<std::string> corpus;
  corpus.reserve(train.texts.size());
  for (const auto& t : train.texts) corpus.push_back(t.prefix + " " + t.target);
  auto vocab = std::make_shared<const Vocabulary>(Vocabulary::build(corpus));
  const std::string name = "sort-of-clevr-" + text_task;
  DatasetSplits s;
  s.train = std::make_shared<VLDataset>(name, train.images, train.labels, names, encode_vl_payload(train.texts, *vocab), vocab, text_task);
  s.test = std::make_shared<VLDataset>(name, test.images, test.labels, names, encode_vl_payload(test.texts, *vocab), vocab, text_task);
  return s;
}

}  // namespace cts
