// Coreset selection methods by name.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "cts/coreset/sample_selector.hpp"

namespace cts {

std::vector<std::string> sample_selector_names();
std::unique_ptr<SampleSelector> make_sample_selector(const std::string& name);

}  // namespace cts
