#include "supervisor.h"

#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <iostream>
#include <set>
#include <string>

namespace artifact {
namespace {

int ExitStatusOf(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return 1;
}

std::string Describe(int wait_status) {
  if (WIFSIGNALED(wait_status)) return std::string("killed by signal ") + std::to_string(WTERMSIG(wait_status));
  return "exit status " + std::to_string(ExitStatusOf(wait_status));
}

void StopAll(const std::set<pid_t>& live) {
  for (pid_t pid : live) ::kill(pid, SIGTERM);
}

}  // namespace

int RunProcesses(int n, const std::function<int(int index)>& serve, std::ostream& log) {
  // Signals are taken synchronously (sigwaitinfo) rather than in handlers.
  sigset_t watched, old;
  sigemptyset(&watched);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&watched, sig);
  sigprocmask(SIG_BLOCK, &watched, &old);

  std::set<pid_t> live;
  bool stopping = false;
  int result = 0;
  const pid_t supervisor = ::getpid();
  for (int i = 0; i < n && !stopping; ++i) {
    pid_t pid = ::fork();
    if (pid == 0) {
      // A supervisor killed with SIGKILL must not leave its processes
      // answering on the socket: they are stopped with it.
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != supervisor) ::_exit(1);
      // A process starts as a fresh one would: stop signals end it until
      // `serve` installs its own handlers.
      for (int sig : {SIGTERM, SIGINT, SIGHUP}) ::signal(sig, SIG_DFL);
      sigprocmask(SIG_SETMASK, &old, nullptr);
      sigprocmask(SIG_UNBLOCK, &watched, nullptr);
      int rc = serve(i);
      std::cerr.flush();
      ::_exit(rc);
    }
    if (pid < 0) {
      // The ones started are stopped and reaped below, like any stop.
      log << "artifact-token serve: fork failed: " << std::strerror(errno) << "; stopping\n";
      result = 1;
      stopping = true;
      StopAll(live);
      continue;
    }
    live.insert(pid);
  }

  while (!live.empty()) {
    siginfo_t info;
    int sig = sigwaitinfo(&watched, &info);
    if (sig < 0) continue;  // EINTR
    if (sig != SIGCHLD) {
      if (!stopping) StopAll(live);
      stopping = true;
      continue;
    }
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      live.erase(pid);
      if (stopping) continue;
      // One process ended unasked: the service is broken, stop the rest.
      log << "artifact-token serve: process " << pid << " ended (" << Describe(status)
          << "); stopping the other " << live.size() << "\n";
      result = ExitStatusOf(status) == 0 ? 1 : ExitStatusOf(status);
      stopping = true;
      StopAll(live);
    }
  }
  sigprocmask(SIG_SETMASK, &old, nullptr);
  return result;
}

}  // namespace artifact
