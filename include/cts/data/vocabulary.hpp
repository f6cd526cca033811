// A word-level vocabulary built from the training text (questions, answers, captions) of a
// vision-language run: ids 0..4 are <pad>, <bos>, <eos>, <unk>, <sep>, then the words by
// descending count (ties: alphabetical) with at least `min_count` occurrences. Words are
// lower-case runs of letters, digits and apostrophes; . , ? ! ; : are tokens of their own.
// Saved as JSON in the run folder and in the weights' metadata (cts.vocabulary).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cts {

class Vocabulary {
 public:
  static constexpr int64_t kPad = 0, kBos = 1, kEos = 2, kUnk = 3, kSep = 4;

  // The words of a text as the vocabulary sees them.
  static std::vector<std::string> split(const std::string& text);
  static Vocabulary build(const std::vector<std::string>& texts, int64_t min_count = 1);

  int64_t size() const { return int64_t(words_.size()); }
  int64_t id(const std::string& word) const;  // kUnk when unknown
  const std::string& word(int64_t id) const;
  // Ids of the text's words, with <bos> ... <eos> around them when asked.
  std::vector<int64_t> encode(const std::string& text, bool bos_eos = false) const;
  // Words joined by single spaces, punctuation attached to the word before it; stops at
  // <eos>, leaves out <pad> and <bos>.
  std::string decode(const std::vector<int64_t>& ids) const;

  nlohmann::json to_json() const;
  // InputError naming `origin` for a malformed or inconsistent record.
  static Vocabulary from_json(const nlohmann::json& j, const std::string& origin);

 private:
  std::vector<std::string> words_;
  std::map<std::string, int64_t> ids_;
};

}  // namespace cts
