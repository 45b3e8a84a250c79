// Counters for GET /token/metrics (Prometheus text format). They live in a
// small file mapped MAP_SHARED, one per host, so the several `serve`
// processes under one socket add up to one set of numbers that survives a
// restart; lock-free atomics make concurrent increments exact.
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

  // Maps `path` (created when missing); an empty path keeps the counters in
  // this process only (tests).
  static Result<Metrics*> Open(const std::string& path);
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
