// Coreset selector registry.
#include "cts/coreset/registry.hpp"

#include <fmt/format.h>

#include "cts/core/error.hpp"
#include "cts/coreset/random.hpp"

namespace cts {

std::vector<std::string> sample_selector_names() { return {"random"}; }

std::unique_ptr<SampleSelector> make_sample_selector(const std::string& name) {
  if (name == "random") return std::make_unique<RandomCoreset>();
  throw_input("coreset method '{}' is not known; accepted: {}", name, fmt::join(sample_selector_names(), ", "));
}

}  // namespace cts
