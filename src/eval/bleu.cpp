// Corpus BLEU-4 (Papineni et al. 2002) as sacreBLEU computes it (Post 2018):
//   m_n = Σ_sentences Σ_{g ∈ n-grams(h)} min(count_h(g), max_refs count_r(g))   (clipped matches)
//   t_n = Σ_sentences max(|h| − n + 1, 0)                                       (hypothesis n-grams)
//   p_n = m_n / t_n;  exp smoothing: the k-th order with m_n = 0 gets p_n = 1 / (2^k t_n)
//   c = Σ |h|,  r = Σ closest reference length (ties: the shorter)
//   BP = 1 if c ≥ r, else exp(1 − r / c)   (0 when c = 0)
//   BLEU = BP · exp( (1/4) Σ_{n=1..4} log p_n )      (0 if some t_n = 0, or, unsmoothed, some m_n = 0)
// Tokeniser 13a (mteval-v13a, sacreBLEU's default): the line padded with spaces, then
//   1. every character of { | } ~ [ \ ] ^ _ ` space ! " # $ % & ( ) * + : ; < = > ? @ / padded with spaces
//   2. a period or comma not preceded by a digit split off,  3. ... not followed by a digit,
//   4. a dash preceded by a digit split off; then split on white space. Case is kept.
#include <cmath>
#include <map>
#include <regex>
#include <sstream>

#include "cts/eval/text_metrics.hpp"

namespace cts {
namespace {

void replace_all(std::string& s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size()) s.replace(pos, from.size(), to);
}

using Counts = std::map<std::vector<std::string>, int64_t>;

Counts ngrams(const std::vector<std::string>& tokens, size_t n) {
  Counts c;
  for (size_t i = 0; i + n <= tokens.size(); ++i) ++c[std::vector<std::string>(tokens.begin() + long(i), tokens.begin() + long(i + n))];
  return c;
}

}  // namespace

std::vector<std::string> tokenize_13a(const std::string& input) {
  std::string line = input;
  replace_all(line, "<skipped>", "");
  replace_all(line, "-\n", "");
  replace_all(line, "\n", " ");
  if (line.find('&') != std::string::npos) {
    replace_all(line, "&quot;", "\"");
    replace_all(line, "&amp;", "&");
    replace_all(line, "&lt;", "<");
    replace_all(line, "&gt;", ">");
  }
  line = " " + line + " ";
  static const std::regex punct(R"(([{|}~\[\\\]^_` !"#$%&()*+:;<=>?@/]))");
  static const std::regex period_after(R"(([^0-9])([.,]))");
  static const std::regex period_before(R"(([.,])([^0-9]))");
  static const std::regex dash(R"(([0-9])(-))");
  line = std::regex_replace(line, punct, " $1 ");
  line = std::regex_replace(line, period_after, "$1 $2 ");
  line = std::regex_replace(line, period_before, " $1 $2");
  line = std::regex_replace(line, dash, "$1 $2 ");
  std::vector<std::string> out;
  std::istringstream in(line);
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

BleuScore corpus_bleu_tokens(const std::vector<std::vector<std::string>>& hypotheses,
                             const std::vector<std::vector<std::vector<std::string>>>& references, BleuSmoothing smoothing) {
  BleuScore s;
  const size_t N = std::min(hypotheses.size(), references.size());
  for (size_t i = 0; i < N; ++i) {
    const auto& h = hypotheses[i];
    const int64_t hl = int64_t(h.size());
    s.hypothesis_length += hl;
    int64_t best = -1;
    for (const auto& r : references[i]) {
      const int64_t rl = int64_t(r.size());
      if (best < 0 || std::llabs(rl - hl) < std::llabs(best - hl) || (std::llabs(rl - hl) == std::llabs(best - hl) && rl < best)) best = rl;
    }
    s.reference_length += std::max<int64_t>(best, 0);
    for (size_t n = 1; n <= 4; ++n) {
      const auto hc = ngrams(h, n);
      Counts max_ref;
      for (const auto& r : references[i])
        for (const auto& [g, c] : ngrams(r, n)) max_ref[g] = std::max(max_ref[g], c);
      for (const auto& [g, c] : hc) {
        auto it = max_ref.find(g);
        if (it != max_ref.end()) s.matches[n - 1] += std::min(c, it->second);
      }
      s.totals[n - 1] += std::max<int64_t>(hl - int64_t(n) + 1, 0);
    }
  }
  const double c = double(s.hypothesis_length), r = double(s.reference_length);
  s.brevity_penalty = c >= r ? 1.0 : (c > 0 ? std::exp(1.0 - r / c) : 0.0);
  double log_sum = 0.0, smooth = 1.0;
  bool zero = false;
  for (size_t n = 0; n < 4; ++n) {
    if (s.totals[n] == 0) {
      zero = true;
      continue;
    }
    if (s.matches[n] == 0) {
      if (smoothing == BleuSmoothing::None) {
        zero = true;
        continue;
      }
      smooth *= 2.0;
      s.precisions[n] = 1.0 / (smooth * double(s.totals[n]));
    } else {
      s.precisions[n] = double(s.matches[n]) / double(s.totals[n]);
    }
    log_sum += std::log(s.precisions[n]);
  }
  s.score = zero ? 0.0 : s.brevity_penalty * std::exp(log_sum / 4.0);
  return s;
}

BleuScore corpus_bleu(const std::vector<std::string>& hypotheses, const std::vector<std::vector<std::string>>& references, BleuSmoothing smoothing) {
  std::vector<std::vector<std::string>> h;
  std::vector<std::vector<std::vector<std::string>>> r;
  for (const auto& x : hypotheses) h.push_back(tokenize_13a(x));
  for (const auto& refs : references) {
    r.emplace_back();
    for (const auto& x : refs) r.back().push_back(tokenize_13a(x));
  }
  return corpus_bleu_tokens(h, r, smoothing);
}

}  // namespace cts
