// RunProcesses forks real processes: what matters is who is left running.
#include <catch2/catch.hpp>

#include <pthread.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "supervisor.h"

namespace {

// Each process writes its pid into a pipe when it starts.
struct StartPipe {
  int fds[2];
  StartPipe() { REQUIRE(::pipe(fds) == 0); }
  ~StartPipe() {
    ::close(fds[0]);
    ::close(fds[1]);
  }
  void Announce() const {
    pid_t me = ::getpid();
    (void)!::write(fds[1], &me, sizeof me);
  }
  std::vector<pid_t> Read(int n) const {
    std::vector<pid_t> pids(n);
    for (auto& p : pids) REQUIRE(::read(fds[0], &p, sizeof p) == sizeof p);
    return pids;
  }
};

bool Gone(pid_t pid) { return ::kill(pid, 0) == -1 && errno == ESRCH; }

}  // namespace

TEST_CASE("a process that ends on its own stops the others and its status is returned", "[supervisor]") {
  StartPipe started;
  // Shared by the processes: how many started, and a flag the first to take
  // it exits with 3 on, once all three are running; the others wait.
  auto* shared = static_cast<int*>(::mmap(nullptr, 2 * sizeof(int), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  REQUIRE(shared != MAP_FAILED);
  int* running = &shared[0];
  int* taken = &shared[1];
  *running = *taken = 0;
  std::ostringstream log;
  int rc = artifact::RunProcesses(
      3,
      [&](int /*index*/) {
        started.Announce();
        __atomic_add_fetch(running, 1, __ATOMIC_SEQ_CST);
        if (__atomic_exchange_n(taken, 1, __ATOMIC_SEQ_CST) == 0) {
          // Bounded: 10 s at most, then it ends anyway (and the test fails).
          for (int i = 0; i < 10000 && __atomic_load_n(running, __ATOMIC_SEQ_CST) < 3; ++i) ::usleep(1000);
          return 3;
        }
        ::pause();  // until the supervisor's SIGTERM
        return 0;
      },
      log);
  CHECK(rc == 3);
  CHECK(log.str().find("ended (exit status 3); stopping the other 2") != std::string::npos);
  for (pid_t pid : started.Read(3)) CHECK(Gone(pid));
  ::munmap(shared, 2 * sizeof(int));
}

TEST_CASE("a stop signal reaches every process and the supervisor returns 0", "[supervisor]") {
  StartPipe started;
  std::vector<pid_t> pids;
  // The signalling thread starts with SIGTERM blocked, so the signal waits
  // for the supervisor's sigwaitinfo instead of killing the test runner.
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &term, &old);
  std::thread stopper([&] {
    pids = started.Read(4);
    ::kill(::getpid(), SIGTERM);
  });
  std::ostringstream log;
  int rc = artifact::RunProcesses(
      4,
      [&](int /*index*/) {
        started.Announce();
        ::pause();
        return 0;
      },
      log);
  stopper.join();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  CHECK(rc == 0);
  CHECK(log.str().empty());
  REQUIRE(pids.size() == 4);
  for (pid_t pid : pids) CHECK(Gone(pid));
}

namespace {

// Gone, or a zombie waiting for init: not running any more.
bool Ended(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, comm, state;
  if (!(stat >> pid_field >> comm >> state)) return true;
  return state == "Z" || state == "X";
}

}  // namespace

TEST_CASE("the processes end when their supervisor is killed with SIGKILL", "[supervisor]") {
  StartPipe started;
  pid_t supervisor = ::fork();
  REQUIRE(supervisor >= 0);
  if (supervisor == 0) {
    std::ostringstream log;
    ::_exit(artifact::RunProcesses(
        2,
        [&](int /*index*/) {
          started.Announce();
          ::pause();
          return 0;
        },
        log));
  }
  auto pids = started.Read(2);
  ::kill(supervisor, SIGKILL);
  REQUIRE(::waitpid(supervisor, nullptr, 0) == supervisor);
  for (pid_t pid : pids) {
    // Bounded wait for the kernel's parent-death signal: 5 s at most.
    bool ended = false;
    for (int i = 0; i < 5000 && !(ended = Ended(pid)); ++i) ::usleep(1000);
    CHECK(ended);
  }
}
