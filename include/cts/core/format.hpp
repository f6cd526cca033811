// Small formatting helpers for messages: tensor shapes as "[2, 3, 4]".
#pragma once
#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <string>

namespace cts {

inline std::string shape_str(c10::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

}  // namespace cts
