// Removes expired tokens while `serve` runs, within a second of their
// expiry: a thread sleeps until the earliest expiry it knows of (not a busy
// poll), wakes early when this process issues or renews a token, and sweeps
// the whole store every `rescan` seconds (the first time after
// `first_sweep_delay`) to learn of tokens other processes (other serve
// processes, other nodes) issued. Every removal re-reads the record
// first, so processes racing on one token cannot remove a renewed one, and
// removing twice is harmless.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "clock.h"
#include "event_log.h"
#include "metrics.h"
#include "token_store.h"

namespace artifact {

class ExpiryTimer {
 public:
  ExpiryTimer(TokenStore& store, const Clock& clock, EventLog& log, int64_t rescan_seconds = 60,
              Metrics* metrics = nullptr, int64_t first_sweep_delay = 0);
  ~ExpiryTimer();
  ExpiryTimer(const ExpiryTimer&) = delete;
  ExpiryTimer& operator=(const ExpiryTimer&) = delete;

  // Starts the thread; call with the stop signals blocked so they stay with
  // the accept loop.
  void Start();
  void Stop();

  // Called on the timer's thread for every token it expired (serve seals
  // the token's builds with result `expired`). Set before Start().
  void OnExpired(std::function<void(const TokenInfo&)> on_expired) { on_expired_ = std::move(on_expired); }

  // A token of this process now expires at `expires`.
  void Schedule(const std::string& username, int64_t expires);

  // One round of work as the thread does it, for tests: handles every due
  // entry and, when `sweep`, the whole store. Returns the expired tokens.
  std::vector<TokenInfo> RunDue(bool sweep);

 private:
  void Loop();

  using Entry = std::pair<int64_t, std::string>;  // (expires, username)
  TokenStore& store_;
  const Clock& clock_;
  EventLog& log_;
  const int64_t rescan_seconds_;
  const int64_t first_sweep_delay_;
  Metrics* metrics_;
  std::function<void(const TokenInfo&)> on_expired_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> due_;
  bool sweeping_ = false;                  // a sweep is reading the store
  std::vector<Entry> scheduled_in_sweep_;  // Schedule() calls while it does
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace artifact
