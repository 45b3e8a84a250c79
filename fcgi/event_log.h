// One line per event (issue, revoke, renew, expiry, refusal) to a stream,
// stderr in production, where journald or the container runtime picks it up.
// Safe to use from the accept loop and the expiry thread at once. Callers
// never pass a secret: lines carry names, scopes and outcomes only.
#pragma once

#include <mutex>
#include <ostream>
#include <string>

namespace artifact {

// syslog(3) priorities, the ones the app uses.
enum class Priority { kError = 3, kWarning = 4, kInfo = 6 };

// "<N>": what journald reads as a line's priority (SyslogLevelPrefix=).
inline std::string SyslogPrefix(Priority priority) {
  return "<" + std::to_string(static_cast<int>(priority)) + ">";
}

class EventLog {
 public:
  // With `syslog_prefix`, every line starts with "<N>", which journald reads
  // as the line's priority (SyslogLevelPrefix=, on by default), so a 5xx
  // cause shows in `journalctl -p warning`. Off for plain files and ttys.
  explicit EventLog(std::ostream& out, bool syslog_prefix = false) : out_(out), syslog_prefix_(syslog_prefix) {}

  void Write(const std::string& line, Priority priority = Priority::kInfo) {
    // One write per line: the serve processes share one stderr, and journald
    // takes a line's priority and process from the write that starts it.
    std::string text;
    if (syslog_prefix_) text = SyslogPrefix(priority);
    text += line;
    text += '\n';
    std::lock_guard<std::mutex> lock(mu_);
    out_.write(text.data(), static_cast<std::streamsize>(text.size()));
    out_.flush();
  }

 private:
  std::mutex mu_;
  std::ostream& out_;
  const bool syslog_prefix_;
};

}  // namespace artifact
