// The parts of cts only look down (docs/design.md, "Layers"): every header and source of a
// part includes headers of its own part or of parts below it, never of a part above. Read from
// the source tree, so a new include that breaks the layering fails here.
#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "test_util.hpp"

namespace cts {
namespace {

namespace fs = std::filesystem;

TEST(Layering, PartsIncludeOnlyPartsBelowThem) {
  // Lower rank = lower layer; parts of the same rank do not include each other.
  const std::map<std::string, int> rank = {{"core", 0},     {"data", 1},   {"models", 2}, {"attribution", 3}, {"coreset", 3}, {"memory", 4},
                                           {"eval", 5},     {"learners", 6}, {"config", 7}, {"report", 8},       {"train", 9}};
  const std::regex include(R"re(#include "cts/([a-z_]+)/)re");
  int files = 0;
  for (const auto& root : {fs::path(test::source_dir()) / "include" / "cts", fs::path(test::source_dir()) / "src"}) {
    for (const auto& e : fs::recursive_directory_iterator(root)) {
      if (!e.is_regular_file()) continue;
      const auto rel = fs::relative(e.path(), root);
      const std::string part = rel.begin()->string();
      ASSERT_TRUE(rank.count(part)) << e.path() << ": part '" << part << "' has no place in the layers (add it here and to docs/design.md)";
      const std::string text = test::read_text(e.path());
      ++files;
      for (std::sregex_iterator it(text.begin(), text.end(), include), end; it != end; ++it) {
        const std::string used = (*it)[1];
        if (used == part) continue;
        ASSERT_TRUE(rank.count(used)) << e.path() << " includes unknown part " << used;
        EXPECT_LT(rank.at(used), rank.at(part)) << rel.string() << " (" << part << ") includes cts/" << used << "/: a part above it or beside it";
      }
    }
  }
  EXPECT_GT(files, 100);
}

}  // namespace
}  // namespace cts
