// examples/text_classifier/kill_points.h — fault injection for the crash-safety test: the process
// SIGKILLs itself at a moment named by the environment variable TEXTCLF_KILL_AT,
//
//   step:N           before this process's (N+1)-th optimizer step (N = 0: before the first)
//   save:K:header    in this process's K-th safetensors write (a checkpoint or model.safetensors),
//                    its temporary file holding the header and no data yet
//   save:K:flushed   in the K-th write, its temporary file complete and flushed, not yet renamed
//
// so that tests/examples/run_text_classifier_kill.sh can crash a run at exact points — between
// steps, halfway through a write, just before a rename — and check that --resume continues from
// what survived to bitwise the weights of an uninterrupted run. SIGKILL, not an exception: nothing
// is cleaned up, no destructor runs, as when the machine or the OOM killer stops a process.
// Unset, nothing happens (the only cost is one getenv per run).
#pragma once

#include <functional>

namespace textclf {

// Reads TEXTCLF_KILL_AT; for save:... installs the write hook (core/safetensors.h). Returns the
// poll to call before every optimizer step (empty unless the value is step:N). A malformed value
// throws ValueError naming the variable and the accepted forms.
std::function<void()> arm_kill_points_from_env();

}  // namespace textclf
