// Text metrics of the vision-language settings: VQA answer normalisation and accuracy, the
// 13a tokeniser, corpus BLEU-4 and ROUGE-L, against cases computed by hand (in the comments)
// and against NLTK's corpus_bleu and an independent ROUGE-L in Python.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "cts/eval/text_metrics.hpp"
#include "test_util.hpp"

namespace cts {
namespace {

TEST(TextMetrics, VqaNormalisation) {
  EXPECT_EQ(vqa_normalize_answer("The Two dogs!"), "2 dogs");       // article dropped, number word, '!' to a space
  EXPECT_EQ(vqa_normalize_answer("yes."), "yes");                   // a period not before a digit goes
  EXPECT_EQ(vqa_normalize_answer("3.5"), "3.5");                    // ... before a digit it stays
  EXPECT_EQ(vqa_normalize_answer("1,000"), "1000");                 // digit,digit: punctuation removed
  EXPECT_EQ(vqa_normalize_answer("black-and-white"), "black and white");
  EXPECT_EQ(vqa_normalize_answer("left - right"), "left right");    // a mark next to a space is removed
  EXPECT_EQ(vqa_normalize_answer("dont"), "don't");
  EXPECT_EQ(vqa_normalize_answer("  A\tRed\nCube "), "red cube");
  EXPECT_TRUE(vqa_exact_match("Two", "2"));
  EXPECT_FALSE(vqa_exact_match("cube", "cubes"));
}

TEST(TextMetrics, VqaAccuracyLeavesEachHumanOut) {
  std::vector<std::string> three_yes{"yes", "yes", "Yes!", "no", "no", "no", "no", "no", "no", "no"};
  // "yes": in its 3 own rounds 2 others agree (2/3), in the 7 others 3 do (1): (3·2/3 + 7)/10.
  EXPECT_NEAR(vqa_accuracy("yes", three_yes), 0.9, 1e-12);
  EXPECT_NEAR(vqa_accuracy("no", three_yes), 1.0, 1e-12);
  std::vector<std::string> two_yes{"yes", "yes", "no", "no", "no", "no", "no", "no", "no", "no"};
  // 2 rounds with 1 other (1/3), 8 rounds with 2 (2/3): (2/3 + 16/3)/10 = 0.6.
  EXPECT_NEAR(vqa_accuracy("yes", two_yes), 0.6, 1e-12);
  EXPECT_EQ(vqa_accuracy("maybe", two_yes), 0.0);
  EXPECT_EQ(vqa_accuracy("the cube", {"cube"}), 1.0);  // one answer: exact match
  EXPECT_EQ(vqa_accuracy("sphere", {"cube"}), 0.0);
}

TEST(TextMetrics, Tokenizer13a) {
  const std::vector<std::string> want{"Hello", ",", "world", ".", "It", "costs", "$", "3.50", "-", "4", "(", "approx", ")", "."};
  EXPECT_EQ(tokenize_13a("Hello, world. It costs $3.50-4 (approx)."), want);
  EXPECT_EQ(tokenize_13a("it's 1,000&amp;more"), (std::vector<std::string>{"it's", "1,000", "&", "more"}));
}

TEST(TextMetrics, CorpusBleuByHand) {
  auto tok = [](const std::string& s) { return tokenize_13a(s); };
  // p1 = 5/6, p2 = 3/5, p3 = 2/4, p4 = 1/3, c = r = 6: BLEU = (1/12)^(1/4).
  auto s = corpus_bleu_tokens({tok("the cat sat on the mat")}, {{tok("the cat sat on a mat")}});
  EXPECT_EQ(s.matches, (std::array<int64_t, 4>{5, 3, 2, 1}));
  EXPECT_EQ(s.totals, (std::array<int64_t, 4>{6, 5, 4, 3}));
  EXPECT_NEAR(s.score, std::pow(1.0 / 12.0, 0.25), 1e-12);
  // The closest reference (3 tokens, not 5) sets r: BP = exp(1 - 3/2); no 3-grams: BLEU 0.
  s = corpus_bleu_tokens({tok("the cat")}, {{tok("the cat sat"), tok("the cat is here now")}});
  EXPECT_EQ(s.reference_length, 3);
  EXPECT_NEAR(s.brevity_penalty, std::exp(1.0 - 1.5), 1e-12);
  EXPECT_EQ(s.score, 0.0);
  // Exp smoothing (sacreBLEU's default): p3 = 1/(2·3), p4 = 1/(4·2); unsmoothed: 0.
  s = corpus_bleu({"a b c d e"}, {{"a b x d e"}});
  EXPECT_NEAR(s.score, std::pow(0.8 * 0.5 / 6.0 / 8.0, 0.25), 1e-12);
  EXPECT_EQ(corpus_bleu({"a b c d e"}, {{"a b x d e"}}, BleuSmoothing::None).score, 0.0);
  // Clipping: "the the the" against "the cat": 1 match of 3 unigrams.
  EXPECT_EQ(corpus_bleu_tokens({tok("the the the")}, {{tok("the cat")}}).matches[0], 1);
}

TEST(TextMetrics, RougeLByHand) {
  // LCS("the red cube is left", "a red cube on the left") = red cube left = 3: P 3/5, R 3/6.
  auto r = rouge_l("The red cube is left.", {"a red cube on the left"});
  EXPECT_NEAR(r.precision, 0.6, 1e-12);
  EXPECT_NEAR(r.recall, 0.5, 1e-12);
  EXPECT_NEAR(r.f, 2 * 0.6 * 0.5 / 1.1, 1e-12);
  EXPECT_NEAR(rouge_l("red cube", {"blue sphere", "a red cube"}).f, 0.8, 1e-12);  // the best reference
  EXPECT_EQ(rouge_l("", {"a b"}).f, 0.0);
  EXPECT_NEAR(corpus_rouge_l({"a b", "c"}, {{"a b"}, {"d"}}), 0.5, 1e-12);
}

TEST(PythonTextMetrics, BleuMatchesNltkAndRougeAnIndependentLcs) {
  if (test::run_command(std::string(CTS_PYTHON) + " -c 'import nltk'").exit_code != 0) GTEST_SKIP() << "python3-nltk missing";
  // A deterministic corpus: captions from a small vocabulary, 1-3 references each.
  const std::vector<std::string> words{"a", "red", "blue", "cube", "sphere", "is", "left", "of", "the", "small", "large", "near"};
  uint64_t state = 12345;
  auto next = [&] { return state = state * 6364136223846793005ULL + 1442695040888963407ULL, (state >> 33) % 1000; };
  auto sentence = [&] {
    std::string s;
    // At least 4 words: NLTK counts max(1, n-grams) per sentence, so a hypothesis shorter than
    // n adds a phantom n-gram there (sacreBLEU and cts add none).
    const int64_t n = 4 + int64_t(next() % 7);
    for (int64_t i = 0; i < n; ++i) s += (i ? " " : "") + words[next() % words.size()];
    return s;
  };
  std::vector<std::string> hyps;
  std::vector<std::vector<std::string>> refs;
  nlohmann::json j = {{"hyps", nlohmann::json::array()}, {"refs", nlohmann::json::array()}, {"rouge", nlohmann::json::array()}};
  for (int i = 0; i < 60; ++i) {
    hyps.push_back(sentence());
    refs.emplace_back();
    const int64_t k = 1 + int64_t(next() % 3);
    for (int64_t r = 0; r < k; ++r) refs.back().push_back(r == 0 && i % 3 == 0 ? hyps.back() + " near" : sentence());
    j["hyps"].push_back(tokenize_13a(hyps.back()));
    nlohmann::json rr = nlohmann::json::array();
    for (const auto& x : refs.back()) rr.push_back(tokenize_13a(x));
    j["refs"].push_back(rr);
    j["rouge"].push_back({hyps.back(), refs.back()});
  }
  test::TempDir dir;
  test::write_text(dir / "case.json", j.dump());
  auto r = test::run_python("bleu_reference.py", (dir / "case.json").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto ref = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  const auto ours = corpus_bleu(hyps, refs, BleuSmoothing::None);
  ASSERT_GT(ours.score, 0.05);
  EXPECT_NEAR(ours.score, ref["bleu"].get<double>(), 1e-12);
  for (size_t i = 0; i < hyps.size(); ++i) EXPECT_NEAR(rouge_l(hyps[i], refs[i]).f, ref["rouge"][i].get<double>(), 1e-12) << i;
}

}  // namespace
}  // namespace cts
