#include "serve.h"

#include <pthread.h>
#include <unistd.h>

#include <csignal>
#include <iostream>
#include <memory>

#include "api.h"
#include "builds.h"
#include "expiry_timer.h"
#include "fcgi_loop.h"
#include "masters.h"
#include "metrics.h"
#include "posix_file.h"
#include "sealer.h"
#include "token_store.h"

namespace artifact {

int ServeProcess(const Config& config, int index, Metrics* metrics) {
  SystemClock clock;
  OpenSslRandom random;
  EventLog log(std::cerr, StderrIsJournal());
  TokenStore store(config.tokens_dir, clock, random);
  Builds builds(config.artifacts_dir, clock);
  MastersFile masters(config.masters_file, &std::cerr);
  // The processes of a host take turns at the full sweep: together they
  // sweep once a minute, not once a minute each (10,000 records each time).
  ExpiryTimer timer(store, clock, log, 60 * config.processes, metrics, 60 * index);
  Sealer sealer(store, builds, clock, log, metrics);
  // An expired token's builds end sealed too, never as latest: frozen on the
  // timer's thread at once, hashed on the sealer's.
  timer.OnExpired([&sealer](const TokenInfo& t) { sealer.Seal(t, BuildResult::kExpired, /*queue_all=*/true); });

  // The timer thread starts with the stop signals blocked, so they are
  // delivered to the accept loop, which installs their handlers.
  sigset_t stop_signals, old;
  sigemptyset(&stop_signals);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaddset(&stop_signals, sig);
  pthread_sigmask(SIG_BLOCK, &stop_signals, &old);
  timer.Start();
  sealer.Start();
  pthread_sigmask(SIG_SETMASK, &old, nullptr);

  Api api(config, store, builds, masters, clock, log, ApiServices{&timer, &sealer, metrics});
  log.Write("artifact-token serve: tokens in " + config.tokens_dir + ", artifacts in " + config.artifacts_dir +
            ", scope_depth " + std::to_string(config.scope_depth));
  int rc = RunFastCgiLoop(api);
  timer.Stop();
  sealer.Stop();
  return rc;
}

}  // namespace artifact
