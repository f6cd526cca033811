// random: a uniform choice of `budget` samples of the class, seeded by (seed, task, class).
#pragma once
#include "cts/coreset/sample_selector.hpp"

namespace cts {

class RandomCoreset : public SampleSelector {
 public:
  std::string name() const override { return "random"; }
  CoresetResult select(const CoresetInput& input) override;
};

}  // namespace cts
