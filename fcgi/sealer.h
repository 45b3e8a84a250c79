// Seals the scopes of a revoked token (SHA256SUMS, then `latest` when the
// build succeeded). Builds up to kInlineSealBytes are sealed within the
// revoke request; larger ones on a thread of their own, so a 1 GiB build
// never holds up the FastCGI loop: the revoke answers 202 and the status is
// kept in tokens_dir/.seals/<username> for GET /token/<username>/seal, where
// any process or node can read it.
#pragma once

#include <condition_variable>
#include <deque>
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

namespace artifact {

inline constexpr int64_t kInlineSealBytes = 16 << 20;

struct ScopeSeal {
  std::string scope;
  SealReport report;
};

struct SealStatus {
  std::string username;
  std::string issued_by;
  std::string state;  // "running", "done" or "failed"
  bool success = true;  // the build's result as its master reported it
  std::vector<ScopeSeal> scopes;
  std::string error;

  std::string ToJson() const;
};

class Sealer {
 public:
  // The seal statuses are kept in tokens_dir; the builds are sealed through `builds`.
  Sealer(std::string tokens_dir, Builds& builds, const Clock& clock, EventLog& log, Metrics* metrics);
  ~Sealer();
  Sealer(const Sealer&) = delete;
  Sealer& operator=(const Sealer&) = delete;

  // Starts the thread for large builds; without it every seal is inline.
  void Start();
  void Stop();

  // Seals the token's scopes now when they are small (state "done" or
  // "failed"), else queues them (state "running").
  SealStatus Seal(const TokenInfo& token, bool success);

  // The stored status JSON of `username`'s seal, for its own master only.
  Result<std::string> StatusJson(const std::string& username, const std::string& master) const;

 private:
  void Run(SealStatus* status);
  void WriteStatus(const SealStatus& status);
  void Loop();

  std::string tokens_dir_;
  Builds& builds_;
  std::string status_dir_;
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
