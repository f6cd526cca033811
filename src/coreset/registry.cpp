// Coreset selector registry.
#include "cts/coreset/registry.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "cts/core/error.hpp"
#include "cts/coreset/craig.hpp"
#include "cts/coreset/gradmatch.hpp"
#include "cts/coreset/herding.hpp"
#include "cts/coreset/random.hpp"

namespace cts {

std::vector<std::string> sample_selector_names() { return {"random", "herding", "craig", "gradmatch"}; }

std::vector<std::string> coreset_gradient_names() { return {"logits", "logits-embedding"}; }

std::unique_ptr<SampleSelector> make_sample_selector(const std::string& name, const SampleSelectorOptions& options) {
  const auto grads = coreset_gradient_names();
  if (std::find(grads.begin(), grads.end(), options.gradient) == grads.end()) {
    throw_input("coreset gradient '{}' is not known; accepted: {}", options.gradient, fmt::join(grads, ", "));
  }
  if (!(options.gradmatch_lambda > 0)) throw_input("memory.gradmatch_lambda = {} must be > 0", options.gradmatch_lambda);
  if (options.craig_matrix_bytes < 0) throw_input("memory.coreset_memory_mb must be >= 0");
  if (name == "random") return std::make_unique<RandomCoreset>();
  if (name == "herding") return std::make_unique<HerdingCoreset>();
  if (name == "craig") return std::make_unique<CraigCoreset>(options);
  if (name == "gradmatch") return std::make_unique<GradMatchCoreset>(options);
  throw_input("coreset method '{}' is not known; accepted: {}", name, fmt::join(sample_selector_names(), ", "));
}

}  // namespace cts
