// Counters for GET /token/metrics (Prometheus text format). They live in an
// anonymous MAP_SHARED mapping the supervisor makes before it forks, so the
// several `serve` processes under one socket add up to one set of numbers;
// lock-free atomics make concurrent increments exact. No file backs them: a
// mapping of a file on a shared volume turns any I/O error of that volume
// into SIGBUS (seen on GlusterFS), and a file named after the host is shared
// by accident between nodes of one name. Like any Prometheus counter they
// start from zero when the service restarts.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "result.h"

namespace artifact {

class Metrics {
 public:
  enum Counter {
    kIssued,
    kRevoked,
    kRenewed,
    kExpired,
    kSeals,
    kSealFiles,
    kSealBytes,
    kSealMicros,
    kRefusedBadRequest,
    kRefusedUnauthorized,
    kRefusedForbidden,
    kRefusedNotFound,
    kRefusedMethod,
    kRefusedConflict,
    kRefusedTooLarge,
    kRefusedMediaType,
    kRefusedInternal,
    kRefusedUnavailable,
    kRefusedFull,
    kCount
  };

  // Counters shared with the processes this one forks after the call
  // (`shared`), or in this process only.
  static Result<Metrics*> Open(bool shared);
  ~Metrics();
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  void Add(Counter c, uint64_t n = 1) { counters_[c].fetch_add(n, std::memory_order_relaxed); }
  uint64_t Get(Counter c) const { return counters_[c].load(std::memory_order_relaxed); }
  // The counter for a refusal with this error code.
  static Counter RefusalCounter(ErrorCode code);

  // The exposition text; `live_tokens` is measured by the caller.
  std::string Render(int64_t live_tokens) const;

 private:
  Metrics(std::atomic<uint64_t>* counters, size_t mapped) : counters_(counters), mapped_(mapped) {}
  std::atomic<uint64_t>* counters_;
  size_t mapped_;  // 0: heap
};

}  // namespace artifact
