// Coreset selection methods by name.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "cts/coreset/sample_selector.hpp"

namespace cts {

std::vector<std::string> sample_selector_names();
// Accepted values of SampleSelectorOptions::gradient (memory.coreset_gradient).
std::vector<std::string> coreset_gradient_names();
// InputError for an unknown name or bad options, naming what is accepted.
std::unique_ptr<SampleSelector> make_sample_selector(const std::string& name, const SampleSelectorOptions& options = {});

}  // namespace cts
