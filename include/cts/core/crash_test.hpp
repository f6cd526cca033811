// Crash-test hook (hidden, for the kill-and-resume tests): with the environment variable
//   CTS_TEST_KILL_AT=<point>:<n>
// the process sends itself CTS_TEST_KILL_SIGNAL (KILL by default; TERM, INT or INT,INT
// for a double Ctrl-C) the n-th time (1-based, counted per process) it reaches <point>.
// Points:
//   step              after an optimizer step
//   finetune          after an optimizer step of a learner's finetuning phase (DyTox's)
//   selection         inside a task's memory selection: the task's samples are in the
//                     in-memory buffer, nothing about them is written yet
//   checkpoint-files  inside a checkpoint: state-<g> and buffer-<g> are written,
//                     checkpoint.json (the commit point) is not
//   rename:<file>     inside an atomic write of a file named <file> (e.g. checkpoint.json,
//                     metrics.json, buffer.safetensors): the temporary file is written and
//                     fsynced, the rename has not happened
// Without the variable crash_point() is one branch on a cached flag.
#pragma once
#include <string_view>

namespace cts {

// True when CTS_TEST_KILL_AT is set (read once).
bool crash_points_enabled();

// Counts a visit of `point` and raises the configured signal when the count matches.
void crash_point(std::string_view point);

}  // namespace cts
