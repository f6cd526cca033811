// Vision-language datasets: the payload layout, and the Sort-of-CLEVR sequences (each task's
// question families, shapes and colours; objects on the cell grid; every stored question and
// answer agreeing with the scene it was drawn from, regenerated independently; the
// vocabulary from the training text only; reproducibility).
#include <torch/torch.h>

#include <set>

#include "cts/core/error.hpp"
#include "cts/data/registry.hpp"
#include "cts/data/vl_dataset.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

TEST(VLDataset, PayloadLayoutRoundTrips) {
  auto v = Vocabulary::build({"what colour is it ? red", "a picture of a red square ."});
  auto p = encode_vl_payload({{"what colour is it ?", "red"}, {"a picture of", "a red square ."}}, v);
  ASSERT_EQ(p.size(), 2);
  auto s0 = split_vl_payload(p.sample(0), "t");
  EXPECT_EQ(v.decode(s0.prefix), "what colour is it?");
  EXPECT_EQ(s0.target, (std::vector<int64_t>{v.id("red"), Vocabulary::kEos}));
  auto s1 = split_vl_payload(p.sample(1), "t");
  EXPECT_EQ(v.decode(s1.target), "a red square.");
  EXPECT_EQ(p.lengths[1].item<int64_t>(), 3 + 1 + 4 + 1);  // prompt, <sep>, caption words and '.', <eos>
}

// Each stored question, regenerated from its scene, has the stored answer.
TEST(VLDataset, SortOfClevrVqaTasksDifferAsDatasetsDo) {
  const int64_t per = 60;
  auto d = make_sort_of_clevr("vqa", 48, per, 10);
  ASSERT_EQ(d.train->size(), 3 * per);
  EXPECT_EQ(d.train->num_classes(), 3);
  EXPECT_EQ(d.train->text_task(), "vqa");
  EXPECT_EQ(d.train->class_names(), (std::vector<std::string>{"attributes", "relations", "new-shapes"}));
  const auto tasks = sort_of_clevr_tasks("vqa", 48);
  const auto& vocab = *d.train->vocabulary();
  std::vector<std::set<std::string>> families(3), answers(3);
  for (int64_t k = 0; k < d.train->size(); ++k) {
    const int64_t t = d.train->labels()[k].item<int64_t>(), i = k % per;
    ASSERT_EQ(t, k / per);
    auto s = split_vl_payload(d.train->payloads(torch::tensor({k})).sample(0), "t");
    const std::string question = vocab.decode(s.prefix), answer = vocab.decode(s.target);
    const auto scene = generate_scene(tasks[size_t(t)].scene, 0, i);
    bool found = false;
    for (const auto& q : scene_questions(scene, tasks[size_t(t)].scene)) {
      if (vocab.decode(vocab.encode(q.question)) != question) continue;
      found = true;
      EXPECT_EQ(q.answer, answer) << question;
      families[size_t(t)].insert(q.family);
    }
    EXPECT_TRUE(found) << question;
    answers[size_t(t)].insert(answer);
    // Objects on the 6 x 6 grid of 8 px cells, and the image is the scene's.
    for (const auto& o : scene.objects) {
      EXPECT_EQ(o.x % 8, 4);
      EXPECT_EQ(o.y % 8, 4);
    }
    EXPECT_TRUE(torch::equal(d.train->images(torch::tensor({k}))[0], render_scene(scene, tasks[size_t(t)].scene)));
  }
  EXPECT_EQ(families[0], (std::set<std::string>{"shape", "horizontal", "vertical"}));
  EXPECT_EQ(families[1], (std::set<std::string>{"closest", "furthest", "count"}));
  EXPECT_EQ(families[2].size(), 6u);
  for (const auto& a : answers[2]) EXPECT_FALSE(a == "square" || a == "circle") << a;  // the shifted vocabulary
  EXPECT_TRUE(answers[0].count("left") && answers[0].count("square"));
  // The vocabulary comes from the training text: every test word is known, and a run twice
  // gives the same data.
  auto again = make_sort_of_clevr("vqa", 48, per, 10);
  EXPECT_TRUE(torch::equal(again.train->payloads(torch::arange(3 * per)).values, d.train->payloads(torch::arange(3 * per)).values));
  EXPECT_TRUE(torch::equal(again.test->images(torch::arange(30)), d.test->images(torch::arange(30))));
  EXPECT_EQ(d.test->vocabulary().get(), d.train->vocabulary().get());
}

TEST(VLDataset, SortOfClevrCaptionTasksFeatureTheirShape) {
  auto d = make_sort_of_clevr("caption", 36, 20, 5);
  ASSERT_EQ(d.train->num_classes(), 5);
  const auto shapes = sort_of_clevr_shapes();
  const auto& vocab = *d.train->vocabulary();
  for (int64_t k = 0; k < d.train->size(); ++k) {
    const int64_t t = k / 20;
    auto s = split_vl_payload(d.train->payloads(torch::tensor({k})).sample(0), "t");
    EXPECT_EQ(vocab.decode(s.prefix), caption_prompt());
    const std::string caption = vocab.decode(s.target);
    EXPECT_NE(caption.find(shapes[size_t(t)]), std::string::npos) << t << ": " << caption;
    for (size_t o = 0; o < shapes.size(); ++o)
      if (o != size_t(t) && o != (size_t(t) + 1) % shapes.size()) EXPECT_EQ(caption.find(shapes[o]), std::string::npos) << t << ": " << caption;
  }
}

TEST(VLDataset, Errors) {
  test::expect_error("size", [] { make_sort_of_clevr("vqa", 40, 4, 4); }, {"data.image_size = 40", "multiple of 6"});
  test::expect_error("small", [] { make_sort_of_clevr("vqa", 24, 4, 4); }, {"data.image_size = 24", "at least 30"});
  test::expect_error("task", [] { sort_of_clevr_tasks("qa", 48); }, {"'qa'", "vqa, caption"});
  test::expect_error("payload", [] { split_vl_payload(torch::tensor({5, 6}, torch::kInt32), "sample 3"); }, {"sample 3", "<sep>"});
  DataConfig c;
  c.name = "sort-of-clevr-vqa";
  c.image_size = 30;
  c.train_per_class = 3;
  c.test_per_class = 2;
  auto s = open_dataset(c, 5, 0);
  EXPECT_EQ(s.train->size(), 9);
  EXPECT_EQ(s.test->size(), 6);
  EXPECT_TRUE(s.train->has_payload());
}

}  // namespace
}  // namespace cts
