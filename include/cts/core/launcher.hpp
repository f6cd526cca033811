// Starting other programs, without a shell: `cts sweep` runs its cells as child `cts run`
// processes and `cts report` runs the plotting script. The one place cts handles processes.
#pragma once
#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

namespace cts {

// Starts argv[0] (a path, or a name looked up on PATH) with the arguments argv, its stdout and
// stderr appended to `log` (created if missing). RunError naming the program if it cannot start.
pid_t start_process(const std::vector<std::string>& argv, const std::filesystem::path& log);

struct ChildExit {
  pid_t pid = -1;            // the child that ended (-1: none, see interrupted)
  bool interrupted = false;  // a signal arrived while waiting (EINTR); nothing ended
  bool success = false;      // exited with status 0
  int exit_code = -1;        // exit status, or 128 + signal for a child killed by a signal
};
// Waits for any child of this process to end. RunError when there is none to wait for.
ChildExit wait_for_child();

struct ProcessOutput {
  int exit_code = -1;  // as in ChildExit
  std::string output;  // stdout and stderr, interleaved as written
};
// Runs argv to completion and returns what it printed. RunError if it cannot start.
ProcessOutput run_and_capture(const std::vector<std::string>& argv);

}  // namespace cts
