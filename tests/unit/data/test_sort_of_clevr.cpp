// The Sort-of-CLEVR generator and the word vocabulary of vision-language runs: scenes are
// reproducible per index, objects do not overlap and are drawn where the scene says, every
// answer agrees with a brute-force reading of the scene written here, a featured shape is
// always present, captions name every object, bad options are refused; the vocabulary
// round-trips text, orders words by count, and rejects malformed files.
#include <gtest/gtest.h>

#include <set>

#include "cts/core/error.hpp"
#include "cts/data/sort_of_clevr.hpp"
#include "cts/data/vocabulary.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

TEST(SortOfClevr, ScenesAreReproducibleAndDoNotOverlap) {
  SortOfClevrOptions o;
  o.seed = 4;
  for (int64_t i = 0; i < 50; ++i) {
    const auto s = generate_scene(o, 0, i);
    const auto again = generate_scene(o, 0, i);
    ASSERT_EQ(s.objects.size(), 6u);
    std::set<std::string> colors;
    for (size_t k = 0; k < s.objects.size(); ++k) {
      EXPECT_EQ(s.objects[k].x, again.objects[k].x);
      EXPECT_EQ(s.objects[k].shape, again.objects[k].shape);
      colors.insert(s.objects[k].color);
      for (size_t j = 0; j < k; ++j)
        EXPECT_TRUE(std::abs(s.objects[k].x - s.objects[j].x) >= 12 || std::abs(s.objects[k].y - s.objects[j].y) >= 12) << i;
      EXPECT_GE(s.objects[k].x, 5);
      EXPECT_LE(s.objects[k].x, 59);
    }
    EXPECT_EQ(colors.size(), 6u);  // one object per colour
  }
  // The test split differs from the train split.
  EXPECT_NE(generate_scene(o, 1, 0).objects[0].x * 1000 + generate_scene(o, 1, 0).objects[0].y,
            generate_scene(o, 0, 0).objects[0].x * 1000 + generate_scene(o, 0, 0).objects[0].y);
}

TEST(SortOfClevr, RenderingAndAnswersAgreeWithTheScene) {
  SortOfClevrOptions o;
  o.seed = 9;
  o.shapes = {"square", "circle", "triangle"};
  const std::map<std::string, std::array<int, 3>> rgb{{"red", {255, 0, 0}}, {"green", {0, 200, 0}}, {"blue", {0, 0, 255}},
                                                      {"orange", {255, 156, 0}}, {"gray", {128, 128, 128}}, {"yellow", {230, 230, 0}}};
  for (int64_t i = 0; i < 20; ++i) {
    const auto s = generate_scene(o, 0, i);
    const auto img = render_scene(s, o);
    ASSERT_EQ(img.sizes(), (std::vector<int64_t>{3, 64, 64}));
    EXPECT_EQ(img[0][0][0].item<int>(), 255);  // white canvas
    for (const auto& obj : s.objects)
      for (int c = 0; c < 3; ++c) EXPECT_EQ(img[c][obj.y][obj.x].item<int>(), rgb.at(obj.color)[size_t(c)]) << obj.color << " " << obj.shape;
    const auto qs = scene_questions(s, o);
    ASSERT_EQ(qs.size(), 36u);
    for (size_t k = 0; k < s.objects.size(); ++k) {
      const auto& q = s.objects[k];
      // Brute force: nearest / furthest by squared distance, same-shape count.
      std::string near, far;
      double dn = 1e18, df = -1;
      int same = 0;
      for (size_t j = 0; j < s.objects.size(); ++j) {
        if (j == k) continue;
        const double d = std::pow(double(q.x - s.objects[j].x), 2) + std::pow(double(q.y - s.objects[j].y), 2);
        if (d < dn) dn = d, near = s.objects[j].shape;
        if (d > df) df = d, far = s.objects[j].shape;
        same += s.objects[j].shape == q.shape;
      }
      const auto* a = &qs[k * 6];
      EXPECT_EQ(a[0].family, "shape");
      EXPECT_NE(a[0].question.find("the " + q.color + " object"), std::string::npos);
      EXPECT_EQ(a[0].answer, q.shape);
      EXPECT_EQ(a[1].answer, q.x < 32 ? "left" : "right");
      EXPECT_EQ(a[2].answer, q.y < 32 ? "top" : "bottom");
      EXPECT_EQ(a[3].answer, near);
      EXPECT_EQ(a[4].answer, far);
      EXPECT_EQ(a[5].answer, std::to_string(same));
    }
    const auto cap = scene_caption(s, o);
    for (const auto& obj : s.objects) EXPECT_NE(cap.find("a " + obj.color + " " + obj.shape), std::string::npos) << cap;
  }
}

TEST(SortOfClevr, FeaturedShapeAndBadOptions) {
  SortOfClevrOptions o;
  o.shapes = {"square", "circle"};
  o.featured_shape = "cross";
  for (int64_t i = 0; i < 30; ++i) {
    int crosses = 0;
    for (const auto& obj : generate_scene(o, 0, i).objects) crosses += obj.shape == "cross";
    EXPECT_EQ(crosses, 1) << i;
  }
  SortOfClevrOptions bad;
  bad.colors = {"red", "mauve"};
  test::expect_error("colour", [&] { validate(bad); }, {"mauve", "accepted: red"});
  bad = {};
  bad.objects = 7;
  test::expect_error("objects", [&] { validate(bad); }, {"7 objects with 6 colours"});
  bad = {};
  bad.image_size = 24;
  test::expect_error("fit", [&] { validate(bad); }, {"do not fit"});
}

TEST(Vocabulary, RoundTripCountsAndErrors) {
  const std::vector<std::string> texts{"What is the shape of the red object?", "a red circle at the top left, a blue square.", "circle"};
  const auto v = Vocabulary::build(texts);
  EXPECT_EQ(v.word(Vocabulary::kPad), "<pad>");
  EXPECT_EQ(v.word(5), "the");  // the most frequent word (3 times) comes first
  for (const auto& t : texts) {
    auto ids = v.encode(t, true);
    EXPECT_EQ(ids.front(), Vocabulary::kBos);
    EXPECT_EQ(ids.back(), Vocabulary::kEos);
    // Lower case, one space between words, punctuation attached to the word before it.
    std::string want;
    for (const auto& w : Vocabulary::split(t)) want += (want.empty() || (w.size() == 1 && std::ispunct(static_cast<unsigned char>(w[0]))) ? "" : " ") + w;
    EXPECT_EQ(v.decode(ids), want);
  }
  EXPECT_EQ(v.decode(v.encode("What is the shape?")), "what is the shape?");
  EXPECT_EQ(v.encode("a purple cube")[1], Vocabulary::kUnk);
  EXPECT_EQ(v.decode({Vocabulary::kBos, v.id("red"), Vocabulary::kEos, v.id("blue")}), "red");
  const auto back = Vocabulary::from_json(v.to_json(), "vocab.json");
  EXPECT_EQ(back.size(), v.size());
  EXPECT_EQ(back.id("circle"), v.id("circle"));
  test::expect_error("format", [] { Vocabulary::from_json({{"words", {"a"}}}, "v.json"); }, {"v.json", "cts-vocabulary-v1"});
  test::expect_error("specials", [] { Vocabulary::from_json({{"format", "cts-vocabulary-v1"}, {"words", {"<pad>", "x"}}}, "v.json"); },
                     {"v.json", "<bos>"});
  test::expect_error("dup", [] { Vocabulary::from_json({{"format", "cts-vocabulary-v1"}, {"words", {"<pad>", "<pad>"}}}, "v.json"); },
                     {"twice"});
  EXPECT_EQ(Vocabulary::build(texts, 2).size(), 5 + 4);  // the, a, red, circle appear at least twice
}

}  // namespace
}  // namespace cts
