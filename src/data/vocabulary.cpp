// Word-level vocabulary of vision-language runs (data/vocabulary.hpp).
#include "cts/data/vocabulary.hpp"

#include <algorithm>
#include <cctype>

#include "cts/core/error.hpp"

namespace cts {
namespace {

const std::vector<std::string> kSpecial{"<pad>", "<bos>", "<eos>", "<unk>", "<sep>"};

bool is_mark(char c) { return c == '.' || c == ',' || c == '?' || c == '!' || c == ';' || c == ':'; }

}  // namespace

std::vector<std::string> Vocabulary::split(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    if (!cur.empty()) out.push_back(cur), cur.clear();
  };
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '\'') {
      cur += char(std::tolower(c));
    } else {
      flush();
      if (is_mark(char(c))) out.emplace_back(1, char(c));
    }
  }
  flush();
  return out;
}

Vocabulary Vocabulary::build(const std::vector<std::string>& texts, int64_t min_count) {
  std::map<std::string, int64_t> counts;
  for (const auto& t : texts)
    for (const auto& w : split(t)) ++counts[w];
  std::vector<std::pair<std::string, int64_t>> ranked(counts.begin(), counts.end());
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.second > b.second; });  // map order: alphabetical ties
  Vocabulary v;
  for (const auto& s : kSpecial) v.ids_[s] = int64_t(v.words_.size()), v.words_.push_back(s);
  for (const auto& [w, c] : ranked)
    if (c >= min_count) v.ids_[w] = int64_t(v.words_.size()), v.words_.push_back(w);
  return v;
}

int64_t Vocabulary::id(const std::string& word) const {
  auto it = ids_.find(word);
  return it == ids_.end() ? kUnk : it->second;
}

const std::string& Vocabulary::word(int64_t id) const {
  if (id < 0 || id >= size()) throw_run("vocabulary: id {} outside [0, {})", id, size());
  return words_[size_t(id)];
}

std::vector<int64_t> Vocabulary::encode(const std::string& text, bool bos_eos) const {
  std::vector<int64_t> out;
  if (bos_eos) out.push_back(kBos);
  for (const auto& w : split(text)) out.push_back(id(w));
  if (bos_eos) out.push_back(kEos);
  return out;
}

std::string Vocabulary::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t i : ids) {
    if (i == kEos) break;
    if (i == kPad || i == kBos) continue;
    const std::string& w = word(i);
    if (!out.empty() && !(w.size() == 1 && is_mark(w[0]))) out += ' ';
    out += w;
  }
  return out;
}

nlohmann::json Vocabulary::to_json() const { return {{"format", "cts-vocabulary-v1"}, {"words", words_}}; }

Vocabulary Vocabulary::from_json(const nlohmann::json& j, const std::string& origin) {
  if (!j.is_object() || j.value("format", "") != "cts-vocabulary-v1" || !j.contains("words") || !j["words"].is_array())
    throw_input("{}: not a cts vocabulary (expected {{\"format\": \"cts-vocabulary-v1\", \"words\": [...]}})", origin);
  Vocabulary v;
  for (const auto& w : j["words"]) {
    if (!w.is_string()) throw_input("{}: vocabulary word {} is not a string", origin, v.words_.size());
    const std::string s = w.get<std::string>();
    if (v.ids_.count(s)) throw_input("{}: vocabulary word '{}' appears twice", origin, s);
    v.ids_[s] = int64_t(v.words_.size());
    v.words_.push_back(s);
  }
  for (size_t i = 0; i < kSpecial.size(); ++i)
    if (v.words_.size() <= i || v.words_[i] != kSpecial[i])
      throw_input("{}: vocabulary id {} must be {} (the special tokens come first)", origin, i, kSpecial[i]);
  return v;
}

}  // namespace cts
