#include "expiry_timer.h"

#include <chrono>

#include "api.h"

namespace artifact {
ExpiryTimer::ExpiryTimer(TokenStore& store, const Clock& clock, EventLog& log, int64_t rescan_seconds,
                         Metrics* metrics, int64_t first_sweep_delay)
    : store_(store),
      clock_(clock),
      log_(log),
      rescan_seconds_(rescan_seconds),
      first_sweep_delay_(first_sweep_delay),
      metrics_(metrics) {}

ExpiryTimer::~ExpiryTimer() { Stop(); }

void ExpiryTimer::Start() { thread_ = std::thread([this] { Loop(); }); }

void ExpiryTimer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ExpiryTimer::Schedule(const std::string& username, int64_t expires) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    due_.emplace(expires, username);
    if (sweeping_) scheduled_in_sweep_.emplace_back(expires, username);
  }
  cv_.notify_all();
}

std::vector<TokenInfo> ExpiryTimer::RunDue(bool sweep) {
  std::vector<TokenInfo> expired;
  auto report = [&](const TokenInfo& t) {
    log_.Write(Rfc3339(clock_.Now()) + " expire master=" + t.issued_by + " username=" + t.username +
               " scopes=" + JoinScopes(t.scopes) + " outcome=removed");
    expired.push_back(t);
    if (metrics_ != nullptr) metrics_->Add(Metrics::kExpired);
  };
  if (sweep) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      sweeping_ = true;
      scheduled_in_sweep_.clear();
    }
    auto result = store_.ExpireAll();
    {
      std::lock_guard<std::mutex> lock(mu_);
      sweeping_ = false;
      if (result) {
        // The queue becomes what the sweep found live plus what was scheduled
        // while it ran: a token issued after the sweep listed the records is
        // in the second set only. (Entries known before the sweep and not
        // found live by it are gone: dropping them bounds the queue.)
        due_ = {};
        for (const auto& e : result->live) due_.push(e);
        for (const auto& e : scheduled_in_sweep_) due_.push(e);
      }
      scheduled_in_sweep_.clear();
    }
    if (!result) {
      log_.Write(Rfc3339(clock_.Now()) + " expire sweep failed: " + result.error().message,
                 Priority::kError);
    } else {
      for (const auto& t : result->expired) report(t);
    }
  }
  while (true) {
    Entry entry;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (due_.empty() || due_.top().first > clock_.Now()) break;
      entry = due_.top();
      due_.pop();
    }
    int64_t next = 0;
    auto r = store_.ExpireIfDue(entry.second, &next);
    if (!r) {
      log_.Write(Rfc3339(clock_.Now()) + " expire username=" + entry.second + " failed: " + r.error().message,
                 Priority::kError);
      // Retry in a second rather than spin.
      Schedule(entry.second, clock_.Now() + 1);
    } else if (r.value()) {
      report(*r.value());
    } else if (next > 0) {
      Schedule(entry.second, next);  // renewed meanwhile
    }
  }
  return expired;
}

void ExpiryTimer::Loop() {
  using std::chrono::system_clock;
  int64_t next_sweep = clock_.Now() + first_sweep_delay_;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const int64_t now = clock_.Now();
    const bool sweep = now >= next_sweep;
    lock.unlock();
    for (const auto& t : RunDue(sweep)) {
      if (on_expired_) on_expired_(t);
    }
    lock.lock();
    if (sweep) next_sweep = clock_.Now() + rescan_seconds_;
    int64_t wake = next_sweep;
    if (!due_.empty() && due_.top().first < wake) wake = due_.top().first;
    // Expiry is in whole seconds: wake at the second it is reached.
    cv_.wait_until(lock, system_clock::from_time_t(static_cast<std::time_t>(wake)), [&] {
      return stop_ || (!due_.empty() && due_.top().first < wake);
    });
  }
}

}  // namespace artifact
