// Seals the scopes of a revoked or expired token (builds.h: freeze, then
// SHA256SUMS and the record, then `latest` when the build succeeded). The
// freeze always happens at once, before the revoke answers: from then on no
// upload lands. Hashing happens within the request only for builds up to
// kInlineSealBytes and kInlineSealFiles; larger ones (in bytes or in files)
// are hashed on a thread of their own, so neither a 1 GiB build nor 80,000
// small files hold up the FastCGI loop: the revoke answers 202 and the status
// is kept by the token store (TokenStore::WriteSealStatus) for
// GET /token/<username>/seal, where any process or node can read it.
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "builds.h"
#include "clock.h"
#include "event_log.h"
#include "metrics.h"
#include "password_file.h"
#include "seal.h"
#include "token_store.h"

namespace artifact {

inline constexpr int64_t kInlineSealBytes = 16 << 20;
// About 20 ms of open/read/close on this machine's disks.
inline constexpr int64_t kInlineSealFiles = 1000;

struct ScopeSeal {
  std::string scope;
  SealReport report;
};

struct SealStatus {
  std::string username;  // "-" for a seal without a token (Sealer::SealBuild)
  std::string issued_by;
  std::string state;  // "running", "done" or "failed"
  BuildResult result = BuildResult::kSuccess;
  std::vector<ScopeSeal> scopes;
  // Why it failed, in words for the client (no path; the log has those).
  std::string error;
  bool conflict = false;  // failed because the build has a live token (409)
  std::string ticket;     // names the freeze (Builds::Freeze); not shown

  // The scopes' reports added up; mismatches as <scope>/<path>.
  SealReport Total() const;
  std::string ToJson() const;
};

// What Sealer::SealBuild did: nothing (the build was sealed already, its
// record is `record_json`), or the seal in `status`.
struct BuildSeal {
  std::string record_json;
  SealStatus status;
};

class Sealer {
 public:
  // The seal statuses are kept by the token store; the builds are sealed
  // through `builds`.
  Sealer(TokenStore& store, Builds& builds, const Clock& clock, EventLog& log, Metrics* metrics);
  ~Sealer();
  Sealer(const Sealer&) = delete;
  Sealer& operator=(const Sealer&) = delete;

  // Starts the thread for large builds; without it every seal is inline.
  void Start();
  void Stop();

  // Freezes the token's builds now, then seals them now when they are small
  // (state "done" or "failed"), else queues them (state "running"). With
  // `queue_all` (the expiry timer's thread) every hash is queued.
  SealStatus Seal(const TokenInfo& token, BuildResult result, bool queue_all = false);

  // Seals one build that no token holds (its master vanished, or a crash
  // came between a revoke and its seal), for `by` (a master, "-" for an
  // operator): 409 while a token holds it, 404 when there is no such build.
  // A build sealed already is left as it is. `starting` runs just before a
  // seal does (the API logs the request there, as it logged it before).
  Result<BuildSeal> SealBuild(const std::string& scope, const std::string& by, BuildResult result,
                              const std::function<void()>& starting = {});

  // The stored status JSON of `username`'s seal, for its own master only.
  Result<std::string> StatusJson(const std::string& username, const std::string& master) const;

 private:
  void Run(SealStatus* status);
  // Counts, logs and stores the outcome of a seal.
  void Finish(const SealStatus& status, const std::string& reason, std::chrono::steady_clock::time_point start);
  void WriteStatus(const SealStatus& status);
  void Loop();

  TokenStore& store_;
  Builds& builds_;
  const Clock& clock_;
  EventLog& log_;
  Metrics* metrics_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<SealStatus> queue_;
  bool stop_ = false;
  bool started_ = false;
  std::thread thread_;
};

}  // namespace artifact
