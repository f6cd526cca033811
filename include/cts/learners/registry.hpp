// The learners cts knows by name (config key model.learner). Adding one: a folder under
// src/learners/ and one entry in src/learners/registry.cpp.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "cts/learners/learner.hpp"

namespace cts {

std::vector<std::string> learner_names();
// Builds the learner `context.model.learner` names; InputError lists the accepted names.
std::unique_ptr<Learner> make_learner(const LearnerContext& context);

}  // namespace cts
