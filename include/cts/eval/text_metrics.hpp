// Scores of generated text for the vision-language settings (VQA, captioning): the VQA answer
// normalisation and accuracy (vqa_answer.cpp), corpus BLEU-4 with the 13a tokeniser as
// sacreBLEU computes it (bleu.cpp), ROUGE-L F-measure as rouge-score computes it (rouge.cpp).
// Each .cpp has its formula on top. Scores are fractions in [0, 1].
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace cts {

// ---- VQA (vqa_answer.cpp)
// The answer normalisation of the VQA evaluation: punctuation removed or turned into spaces,
// periods not followed by a digit removed, lower case, number words -> digits, articles
// dropped, common contractions restored ("dont" -> "don't"), single spaces.
std::string vqa_normalize_answer(const std::string& answer);
// VQA accuracy of a predicted answer against the human answers (10 in VQA v2): the mean over
// leaving each human answer out of min(#matches among the others / 3, 1); both sides
// normalised. One human answer: 1 if it matches, else 0 (CLEVR, Visual Genome).
double vqa_accuracy(const std::string& prediction, const std::vector<std::string>& human_answers);
// Exact match after normalisation.
bool vqa_exact_match(const std::string& prediction, const std::string& reference);

// ---- BLEU (bleu.cpp)
// The 13a tokeniser (mteval-v13a, sacreBLEU's default): punctuation split off, periods and
// commas split off unless between digits, a dash after a digit split off; case kept.
std::vector<std::string> tokenize_13a(const std::string& line);

enum class BleuSmoothing { None, Exp };
struct BleuScore {
  double score = 0.0;                    // BLEU in [0, 1]
  std::array<double, 4> precisions{};    // modified n-gram precisions (smoothed where applied)
  std::array<int64_t, 4> matches{}, totals{};
  double brevity_penalty = 0.0;
  int64_t hypothesis_length = 0, reference_length = 0;  // r: the closest reference length per sentence (ties: the shorter)
};
// Corpus BLEU-4 of tokenised hypotheses against one or more tokenised references each.
// Exp smoothing is sacreBLEU's default; None gives 0 whenever an order has no match (NLTK's
// corpus_bleu without a smoothing function).
BleuScore corpus_bleu_tokens(const std::vector<std::vector<std::string>>& hypotheses,
                             const std::vector<std::vector<std::vector<std::string>>>& references,
                             BleuSmoothing smoothing = BleuSmoothing::Exp);
// The same on strings tokenised with tokenize_13a (sacreBLEU's corpus_bleu).
BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::vector<std::string>>& references,
                      BleuSmoothing smoothing = BleuSmoothing::Exp);

// ---- ROUGE-L (rouge.cpp)
// rouge-score's tokeniser: lower case, every character outside [a-z0-9] a separator.
std::vector<std::string> tokenize_rouge(const std::string& text);
struct RougeL {
  double precision = 0.0, recall = 0.0, f = 0.0;
};
// ROUGE-L of a prediction against references: the reference with the highest F-measure.
RougeL rouge_l(const std::string& prediction, const std::vector<std::string>& references);
// The mean of the per-sample F-measures.
double corpus_rouge_l(const std::vector<std::string>& predictions, const std::vector<std::vector<std::string>>& references);

}  // namespace cts
