// VQA answer scoring (Antol et al. 2015; the VQA v2 evaluation):
//   norm(a) = articles and punctuation removed, number words as digits, lower case
//   acc(â, {a_1..a_m}) = (1/m) Σ_i min( |{j ≠ i : norm(a_j) = norm(â)}| / 3, 1 )      (m = 10 in VQA v2)
// i.e. an answer given by at least 3 of the other 9 humans scores 1 in that round. With one
// human answer (CLEVR, Visual Genome) the score is exact match.
// Punctuation as the reference evaluation treats it: a mark next to a space, or any mark in a
// text holding a digit-comma-digit group, is removed; otherwise it becomes a space. A period
// is removed unless a digit follows it ("2.5" stays).
#include <algorithm>
#include <cctype>
#include <map>
#include <sstream>

#include "cts/eval/text_metrics.hpp"

namespace cts {
namespace {

const std::string kPunct = ";/[]\"{}()=+\\_-><@`,?!";

bool has_digit_comma_digit(const std::string& s) {
  for (size_t i = 1; i + 1 < s.size(); ++i)
    if (s[i] == ',' && std::isdigit(static_cast<unsigned char>(s[i - 1])) && std::isdigit(static_cast<unsigned char>(s[i + 1]))) return true;
  return false;
}

std::string process_punctuation(const std::string& in) {
  std::string out = in;
  const bool comma_group = has_digit_comma_digit(in);
  for (char p : kPunct) {
    const bool spaced = in.find(std::string(1, p) + " ") != std::string::npos || in.find(" " + std::string(1, p)) != std::string::npos;
    std::string next;
    for (char c : out) {
      if (c != p) next += c;
      else if (!(spaced || comma_group)) next += ' ';
    }
    out = next;
  }
  std::string no_periods;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '.' && !(i + 1 < out.size() && std::isdigit(static_cast<unsigned char>(out[i + 1])))) continue;
    no_periods += out[i];
  }
  return no_periods;
}

const std::map<std::string, std::string>& number_words() {
  static const std::map<std::string, std::string> m{{"none", "0"}, {"zero", "0"}, {"one", "1"},   {"two", "2"},   {"three", "3"}, {"four", "4"},
                                                    {"five", "5"}, {"six", "6"},  {"seven", "7"}, {"eight", "8"}, {"nine", "9"},  {"ten", "10"}};
  return m;
}

// Common contractions written without their apostrophe (a subset of the reference table).
const std::map<std::string, std::string>& contractions() {
  static const std::map<std::string, std::string> m{
      {"aint", "ain't"},       {"arent", "aren't"},     {"cant", "can't"},     {"couldnt", "couldn't"}, {"couldve", "could've"},
      {"didnt", "didn't"},     {"doesnt", "doesn't"},   {"dont", "don't"},     {"hadnt", "hadn't"},     {"hasnt", "hasn't"},
      {"havent", "haven't"},   {"hed", "he'd"},         {"hes", "he's"},       {"howd", "how'd"},       {"hows", "how's"},
      {"im", "i'm"},           {"ive", "i've"},         {"isnt", "isn't"},     {"itd", "it'd"},         {"itll", "it'll"},
      {"lets", "let's"},       {"mightnt", "mightn't"}, {"mustnt", "mustn't"}, {"neednt", "needn't"},   {"shant", "shan't"},
      {"shed", "she'd"},       {"shes", "she's"},       {"shouldnt", "shouldn't"}, {"shouldve", "should've"}, {"thats", "that's"},
      {"theres", "there's"},   {"theyd", "they'd"},     {"theyll", "they'll"}, {"theyre", "they're"},   {"theyve", "they've"},
      {"wasnt", "wasn't"},     {"werent", "weren't"},   {"weve", "we've"},     {"whats", "what's"},     {"wheres", "where's"},
      {"whos", "who's"},       {"wont", "won't"},       {"wouldnt", "wouldn't"}, {"wouldve", "would've"}, {"youd", "you'd"},
      {"youll", "you'll"},     {"youre", "you're"},     {"youve", "you've"}};
  return m;
}

}  // namespace

std::string vqa_normalize_answer(const std::string& answer) {
  std::string a = answer;
  std::replace(a.begin(), a.end(), '\n', ' ');
  std::replace(a.begin(), a.end(), '\t', ' ');
  a = process_punctuation(a);
  std::transform(a.begin(), a.end(), a.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  std::istringstream in(a);
  std::string word, out;
  while (in >> word) {
    if (auto it = number_words().find(word); it != number_words().end()) word = it->second;
    if (word == "a" || word == "an" || word == "the") continue;
    if (auto it = contractions().find(word); it != contractions().end()) word = it->second;
    out += (out.empty() ? "" : " ") + word;
  }
  return out;
}

double vqa_accuracy(const std::string& prediction, const std::vector<std::string>& human_answers) {
  if (human_answers.empty()) return 0.0;
  const std::string p = vqa_normalize_answer(prediction);
  std::vector<bool> match;
  for (const auto& a : human_answers) match.push_back(vqa_normalize_answer(a) == p);
  if (human_answers.size() == 1) return match[0] ? 1.0 : 0.0;
  const int64_t total = std::count(match.begin(), match.end(), true);
  double sum = 0.0;
  for (bool m : match) sum += std::min(1.0, double(total - (m ? 1 : 0)) / 3.0);
  return sum / double(human_answers.size());
}

bool vqa_exact_match(const std::string& prediction, const std::string& reference) {
  return vqa_normalize_answer(prediction) == vqa_normalize_answer(reference);
}

}  // namespace cts
