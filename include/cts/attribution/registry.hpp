// Token selection methods by name.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "cts/attribution/token_selector.hpp"

namespace cts {

std::vector<std::string> token_selector_names();
std::unique_ptr<TokenSelector> make_token_selector(const std::string& name, const TokenSelectorOptions& options);

}  // namespace cts
