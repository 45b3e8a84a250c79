// One line per event (issue, revoke, renew, expiry, refusal) to a stream,
// stderr in production, where journald or the container runtime picks it up.
// Safe to use from the accept loop and the expiry thread at once. Callers
// never pass a secret: lines carry names, scopes and outcomes only.
#pragma once

#include <mutex>
#include <ostream>
#include <string>

namespace artifact {

class EventLog {
 public:
  explicit EventLog(std::ostream& out) : out_(out) {}

  void Write(const std::string& line) {
    std::lock_guard<std::mutex> lock(mu_);
    out_ << line << '\n';
    out_.flush();
  }

 private:
  std::mutex mu_;
  std::ostream& out_;
};

}  // namespace artifact
