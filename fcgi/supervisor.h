// Several `serve` processes on one FastCGI socket, supervised in the
// foreground.
#pragma once

#include <functional>
#include <ostream>

namespace artifact {

// Runs `serve` in `n` forked processes that share the listening socket on
// fd 0, as `spawn-fcgi -F n` does, but in the foreground and keeping their
// standard error (the event log). SIGTERM, SIGINT and SIGHUP are passed on
// to every process. When one ends on its own, the others are stopped too,
// so whatever supervises this one (systemd, a container runtime) sees the
// failure and restarts the whole.
//
// Returns 0 after a stop signal; otherwise the exit status of the process
// that ended first (128 + signal when killed, 1 when it exited with 0
// unasked). Call it before any thread is started: it forks.
// `serve` gets the process's index, 0..n-1.
int RunProcesses(int n, const std::function<int(int index)>& serve, std::ostream& log);

}  // namespace artifact
