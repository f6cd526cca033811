// ROUGE-L (Lin 2004) as rouge-score computes it, on rouge-score's tokens (lower case, runs of
// [a-z0-9]):
//   LCS = length of the longest common subsequence of prediction p and reference r
//   P = LCS / |p|,  R = LCS / |r|,  F = 2 P R / (P + R)   (0 when P + R = 0)
// Several references: the one with the highest F. A corpus: the mean F over its samples.
#include <algorithm>
#include <cctype>

#include "cts/eval/text_metrics.hpp"

namespace cts {
namespace {

int64_t lcs_length(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<int64_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::vector<std::string> tokenize_rouge(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (unsigned char c : text) {
    const char l = char(std::tolower(c));
    if ((l >= 'a' && l <= 'z') || (l >= '0' && l <= '9')) {
      cur += l;
    } else if (!cur.empty()) {
      out.push_back(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

RougeL rouge_l(const std::string& prediction, const std::vector<std::string>& references) {
  const auto p = tokenize_rouge(prediction);
  RougeL best;
  bool first = true;
  for (const auto& ref : references) {
    const auto r = tokenize_rouge(ref);
    RougeL s;
    if (!p.empty() && !r.empty()) {
      const double lcs = double(lcs_length(p, r));
      s.precision = lcs / double(p.size());
      s.recall = lcs / double(r.size());
      s.f = s.precision + s.recall > 0 ? 2.0 * s.precision * s.recall / (s.precision + s.recall) : 0.0;
    }
    if (first || s.f > best.f) best = s, first = false;
  }
  return best;
}

double corpus_rouge_l(const std::vector<std::string>& predictions, const std::vector<std::vector<std::string>>& references) {
  const size_t n = std::min(predictions.size(), references.size());
  if (n == 0) return 0.0;
  double sum = 0.0;
  for (size_t i = 0; i < n; ++i) sum += rouge_l(predictions[i], references[i]).f;
  return sum / double(n);
}

}  // namespace cts
