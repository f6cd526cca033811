// Error types of cts. The CLI maps InputError to exit code 2 (bad usage, config or
// input file) and every other failure to exit code 1. The library never calls exit().
#pragma once
#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace cts {

// Bad usage, config or input data: the message names the file/field and what is accepted.
class InputError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A run that started but could not finish (I/O failure, numerical failure, ...).
class RunError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <typename... Args>
[[noreturn]] void throw_input(fmt::format_string<Args...> format, Args&&... args) {
  throw InputError(fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
[[noreturn]] void throw_run(fmt::format_string<Args...> format, Args&&... args) {
  throw RunError(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace cts
