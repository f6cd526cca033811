// Child processes with posix_spawn: started with a log file, waited for, or run with their
// output captured through a pipe. No shell is involved, so arguments need no quoting.
#include "cts/core/launcher.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cts/core/error.hpp"

extern char** environ;

namespace cts {
namespace {

std::vector<char*> c_argv(std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  return argv;
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

pid_t spawn(std::vector<std::string> args, posix_spawn_file_actions_t* actions) {
  if (args.empty()) throw_run("cannot start a process without a program");
  auto argv = c_argv(args);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], actions, nullptr, argv.data(), environ);
  if (rc != 0) throw_run("cannot start {}: {}", args.front(), std::strerror(rc));
  return pid;
}

}  // namespace

pid_t start_process(const std::vector<std::string>& argv, const std::filesystem::path& log) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, STDOUT_FILENO, STDERR_FILENO);
  try {
    const pid_t pid = spawn(argv, &fa);
    posix_spawn_file_actions_destroy(&fa);
    return pid;
  } catch (...) {
    posix_spawn_file_actions_destroy(&fa);
    throw;
  }
}

ChildExit wait_for_child() {
  ChildExit e;
  int status = 0;
  const pid_t pid = ::waitpid(-1, &status, 0);
  if (pid < 0) {
    if (errno == EINTR) {
      e.interrupted = true;
      return e;
    }
    throw_run("waiting for a child process failed: {}", std::strerror(errno));
  }
  e.pid = pid;
  e.exit_code = decode_status(status);
  e.success = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  return e;
}

ProcessOutput run_and_capture(const std::vector<std::string>& argv) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw_run("cannot create a pipe for {}: {}", argv.empty() ? "?" : argv.front(), std::strerror(errno));
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&fa, fds[1], STDERR_FILENO);
  pid_t pid = -1;
  try {
    pid = spawn(argv, &fa);
  } catch (...) {
    posix_spawn_file_actions_destroy(&fa);
    ::close(fds[0]);
    ::close(fds[1]);
    throw;
  }
  posix_spawn_file_actions_destroy(&fa);
  ::close(fds[1]);
  ProcessOutput out;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof(buf));
    if (n > 0) out.output.append(buf, size_t(n));
    else if (n == 0 || errno != EINTR) break;
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw_run("waiting for {} failed: {}", argv.front(), std::strerror(errno));
  }
  out.exit_code = decode_status(status);
  return out;
}

}  // namespace cts
