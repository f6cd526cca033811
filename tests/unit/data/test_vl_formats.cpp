// The vision-language loaders on small files written here in the published formats (VQA v2,
// CLEVR, Visual Genome QA, COCO captions + instances): fields, image paths, answers, families,
// categories; and the errors for missing fields, wrong types and dangling ids.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cts/core/error.hpp"
#include "cts/data/vl_formats.hpp"
#include "cts/eval/text_metrics.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

using nlohmann::json;
using test::TempDir;

TEST(VLFormats, VqaV2QuestionsAndAnnotations) {
  TempDir dir;
  json q = {{"info", {}}, {"task_type", "Open-Ended"}, {"data_type", "mscoco"}, {"data_subtype", "val2014"},
            {"questions", {{{"image_id", 42}, {"question", "What color is the cat?"}, {"question_id", 42000}},
                           {{"image_id", 7}, {"question", "How many dogs?"}, {"question_id", 7001}}}}};
  json answers = json::array();
  for (const char* a : {"black", "black", "Black", "gray", "black", "dark", "black", "black", "black", "black"})
    answers.push_back({{"answer", a}, {"answer_confidence", "yes"}, {"answer_id", answers.size() + 1}});
  json two = json::array();
  for (int k = 0; k < 10; ++k) two.push_back({{"answer", k < 4 ? "2" : "two"}, {"answer_confidence", "maybe"}, {"answer_id", k + 1}});
  json a = {{"annotations",
             {{{"question_id", 7001}, {"image_id", 7}, {"answers", two}, {"question_type", "how many"}, {"multiple_choice_answer", "2"}},
              {{"question_id", 42000}, {"image_id", 42}, {"answers", answers}, {"question_type", "what color is the"}, {"multiple_choice_answer", "black"}}}}};
  test::write_text(dir / "q.json", q.dump());
  test::write_text(dir / "a.json", a.dump());
  auto r = load_vqa_v2(dir / "q.json", dir / "a.json", dir / "val2014");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].image, dir / "val2014" / "COCO_val2014_000000000042.jpg");
  EXPECT_EQ(r[0].question, "What color is the cat?");
  EXPECT_EQ(r[0].answers.size(), 10u);
  EXPECT_EQ(r[0].family, "what color is the");
  EXPECT_EQ(r[1].id, 7001);
  // The VQA accuracy over those answers: "black" (8 of 10 after normalisation) scores 1.
  EXPECT_NEAR(vqa_accuracy("Black", r[0].answers), 1.0, 1e-12);
  EXPECT_NEAR(vqa_accuracy("2", r[1].answers), 1.0, 1e-12);  // "two" and "2" are the same answer
  // Errors: a question without an annotation; a wrong type; a missing file.
  a["annotations"].erase(0);
  test::write_text(dir / "a2.json", a.dump());
  test::expect_error("no annotation", [&] { load_vqa_v2(dir / "q.json", dir / "a2.json", dir.path()); }, {"q.json", "question_id 7001", "no annotation"});
  q["questions"][0]["image_id"] = "42";
  test::write_text(dir / "q2.json", q.dump());
  test::expect_error("type", [&] { load_vqa_v2(dir / "q2.json", dir / "a.json", dir.path()); }, {"q2.json", "question 0", "\"image_id\"", "a number"});
  test::expect_error("missing", [&] { load_vqa_v2(dir / "nope.json", dir / "a.json", dir.path()); }, {"nope.json", "no such"});
  test::write_text(dir / "bad.json", "{\"questions\": [");
  test::expect_error("json", [&] { load_vqa_v2(dir / "bad.json", dir / "a.json", dir.path()); }, {"bad.json", "not valid JSON"});
}

TEST(VLFormats, ClevrAndVisualGenome) {
  TempDir dir;
  json c = {{"info", {{"split", "val"}}},
            {"questions",
             {{{"image_index", 0}, {"split", "val"}, {"image_filename", "CLEVR_val_000000.png"}, {"question", "Are there more cubes than spheres?"},
               {"answer", "yes"}, {"question_family_index", 31}, {"question_index", 0}},
              {{"image_index", 1}, {"split", "val"}, {"image_filename", "CLEVR_val_000001.png"}, {"question", "What size is the cylinder?"},
               {"answer", "large"}, {"question_family_index", 89}, {"question_index", 1}}}}};
  test::write_text(dir / "clevr.json", c.dump());
  auto r = load_clevr_questions(dir / "clevr.json", dir / "images" / "val");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[1].image, dir / "images" / "val" / "CLEVR_val_000001.png");
  EXPECT_EQ(r[1].answers, std::vector<std::string>{"large"});
  EXPECT_EQ(r[0].family, "31");
  c["questions"][0].erase("answer");
  test::write_text(dir / "clevr-test.json", c.dump());
  test::expect_error("test split", [&] { load_clevr_questions(dir / "clevr-test.json", dir.path()); }, {"question 0", "no answer"});

  std::filesystem::create_directories(dir / "vg" / "VG_100K_2");
  test::write_text(dir / "vg" / "VG_100K_2" / "5.jpg", "x");
  json vg = json::array({{{"id", 5}, {"qas", {{{"qa_id", 100}, {"image_id", 5}, {"question", "What is on the table?"}, {"answer", "A cup."}},
                                              {{"qa_id", 101}, {"image_id", 5}, {"question", "Where is the cup?"}, {"answer", "On the table."}}}}},
                         {{"id", 9}, {"qas", json::array()}}});
  test::write_text(dir / "qa.json", vg.dump());
  auto v = load_visual_genome_qa(dir / "qa.json", dir / "vg");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].image, dir / "vg" / "VG_100K_2" / "5.jpg");
  EXPECT_EQ(v[1].family, "where");
  EXPECT_TRUE(vqa_exact_match("a cup", v[0].answers[0]));
  test::write_text(dir / "qa-bad.json", json::array({{{"id", 5}}}).dump());
  test::expect_error("no qas", [&] { load_visual_genome_qa(dir / "qa-bad.json", dir.path()); }, {"image entry 0", "\"qas\""});
}

TEST(VLFormats, CocoCaptionsWithCategories) {
  TempDir dir;
  json cap = {{"images", {{{"id", 1}, {"file_name", "COCO_val2014_000000000001.jpg"}}, {{"id", 2}, {"file_name", "COCO_val2014_000000000002.jpg"}}}},
              {"annotations",
               {{{"image_id", 1}, {"id", 10}, {"caption", "A book on a shelf."}},
                {{"image_id", 1}, {"id", 11}, {"caption", "Books and a bottle."}},
                {{"image_id", 2}, {"id", 12}, {"caption", "A red car parked next to a truck."}}}}};
  json inst = {{"categories", {{{"id", 84}, {"name", "book"}}, {{"id", 44}, {"name", "bottle"}}, {{"id", 3}, {"name", "car"}}, {{"id", 8}, {"name", "truck"}}}},
               {"annotations", {{{"image_id", 1}, {"category_id", 84}}, {{"image_id", 1}, {"category_id", 84}}, {{"image_id", 1}, {"category_id", 44}},
                                {{"image_id", 2}, {"category_id", 3}}, {{"image_id", 2}, {"category_id", 8}}}}};
  test::write_text(dir / "captions.json", cap.dump());
  test::write_text(dir / "instances.json", inst.dump());
  auto r = load_coco_captions(dir / "captions.json", dir / "val2014", dir / "instances.json");
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].answers.size(), 2u);
  EXPECT_EQ(r[0].categories, (std::vector<std::string>{"book", "bottle"}));
  EXPECT_EQ(r[1].categories, (std::vector<std::string>{"car", "truck"}));
  EXPECT_EQ(r[1].image, dir / "val2014" / "COCO_val2014_000000000002.jpg");
  EXPECT_TRUE(load_coco_captions(dir / "captions.json", dir.path()).at(0).categories.empty());
  cap["annotations"].push_back({{"image_id", 3}, {"id", 13}, {"caption", "x"}});
  test::write_text(dir / "captions-bad.json", cap.dump());
  test::expect_error("dangling", [&] { load_coco_captions(dir / "captions-bad.json", dir.path()); }, {"annotation 3", "image_id 3"});
  inst["annotations"].push_back({{"image_id", 2}, {"category_id", 999}});
  test::write_text(dir / "instances-bad.json", inst.dump());
  test::expect_error("category", [&] { load_coco_captions(dir / "captions.json", dir.path(), dir / "instances-bad.json"); }, {"category_id 999"});
}

}  // namespace
}  // namespace cts
