#include "sealer.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>

#include "api.h"
#include "disk.h"
#include "posix_file.h"

namespace artifact {

SealReport SealStatus::Total() const {
  SealReport total;
  for (const auto& s : scopes) {
    total.files += s.report.files;
    total.bytes += s.report.bytes;
    for (const auto& m : s.report.mismatches) total.mismatches.push_back(s.scope + "/" + m);
  }
  return total;
}

std::string SealStatus::ToJson() const {
  Poco::JSON::Object obj(Poco::JSON_PRESERVE_KEY_ORDER);
  obj.set("username", username);
  obj.set("issued_by", issued_by);
  obj.set("state", state);
  obj.set("result", std::string(BuildResultName(result)));
  Poco::JSON::Array list, all_mismatches;
  for (const auto& s : scopes) {
    Poco::JSON::Object one(Poco::JSON_PRESERVE_KEY_ORDER);
    one.set("scope", s.scope);
    one.set("files", static_cast<Poco::Int64>(s.report.files));
    one.set("bytes", static_cast<Poco::Int64>(s.report.bytes));
    Poco::JSON::Array mismatches;
    for (const auto& m : s.report.mismatches) mismatches.add(m);
    one.set("mismatches", mismatches);
    list.add(one);
  }
  const SealReport total = Total();
  for (const auto& m : total.mismatches) all_mismatches.add(m);
  obj.set("files", static_cast<Poco::Int64>(total.files));
  obj.set("bytes", static_cast<Poco::Int64>(total.bytes));
  obj.set("mismatches", all_mismatches);
  obj.set("scopes", list);
  if (!error.empty()) obj.set("error", error);
  return artifact::ToJson(obj);
}

Sealer::Sealer(TokenStore& store, Builds& builds, const Clock& clock, EventLog& log, Metrics* metrics)
    : store_(store),
      builds_(builds),
      clock_(clock),
      log_(log),
      metrics_(metrics) {}

Sealer::~Sealer() { Stop(); }

void Sealer::Start() {
  started_ = true;
  thread_ = std::thread([this] { Loop(); });
}

void Sealer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Sealer::WriteStatus(const SealStatus& status) {
  if (auto st = store_.WriteSealStatus(status.username, status.ToJson() + "\n"); !st) {
    log_.Write(Rfc3339(clock_.Now()) + " seal username=" + status.username +
                   " status not stored: " + st.error().message,
               Priority::kWarning);
  }
}

void Sealer::Run(SealStatus* status) {
  const auto start = std::chrono::steady_clock::now();
  std::string reason;  // the whole error, for the log
  for (auto& s : status->scopes) {
    BuildRecord record;
    record.result = status->result;
    record.issued_by = status->issued_by;
    record.username = status->username;
    {
      auto lock = builds_.Lock(s.scope);
      if (!lock) {
        reason = lock.error().message;
        status->error = "cannot lock the build " + s.scope;
        break;
      }
      auto sealed = builds_.Seal(s.scope, status->ticket, &record);
      if (!sealed && sealed.error().code == ErrorCode::kConflict) {
        // Reopened (or frozen by a newer seal) since this seal froze it:
        // that one's seal decides, not this stale one.
        log_.Write(Rfc3339(clock_.Now()) + " seal scope=" + s.scope + " username=" + status->username +
                   " skipped: " + sealed.error().message);
        continue;
      }
      s.report = record.report;
      if (!sealed) {
        reason = sealed.error().message;
        status->error = "sealing " + s.scope + " failed: " + sealed.error().public_message;
        break;
      }
    }
    if (record.LatestEligible()) {
      if (auto st = builds_.UpdateLatest(s.scope); !st) {
        log_.Write(Rfc3339(clock_.Now()) + " latest scope=" + s.scope + " failed: " + st.error().message,
                   Priority::kWarning);
      }
    }
  }
  status->state = status->error.empty() ? "done" : "failed";
  Finish(*status, reason, start);
}

void Sealer::Finish(const SealStatus& status, const std::string& reason,
                    std::chrono::steady_clock::time_point start) {
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  const SealReport total = status.Total();
  const int64_t files = total.files, bytes = total.bytes;
  const size_t mismatches = total.mismatches.size();
  if (metrics_ != nullptr && status.state == "done") {
    metrics_->Add(Metrics::kSeals);
    metrics_->Add(Metrics::kSealFiles, static_cast<uint64_t>(files));
    metrics_->Add(Metrics::kSealBytes, static_cast<uint64_t>(bytes));
    metrics_->Add(Metrics::kSealMicros, static_cast<uint64_t>(micros.count()));
  }
  log_.Write(Rfc3339(clock_.Now()) + " seal master=" + status.issued_by + " username=" + status.username +
                 " files=" + std::to_string(files) + " bytes=" + std::to_string(bytes) +
                 " mismatches=" + std::to_string(mismatches) + " result=" + BuildResultName(status.result) +
                 " outcome=" + status.state + (reason.empty() ? "" : " reason=\"" + reason + "\""),
             status.state == "failed" ? Priority::kError : Priority::kInfo);
  if (status.username != "-" && (files > 0 || status.state != "done")) WriteStatus(status);
}

Result<BuildSeal> Sealer::SealBuild(const std::string& scope, const std::string& by, BuildResult result,
                                    const std::function<void()>& starting) {
  if (store_.HoldsScope(scope)) {
    return Error{ErrorCode::kConflict, "build " + scope + " has a live token: revoke it (that seals it)"};
  }
  auto frozen = builds_.IsFrozen(scope);
  if (!frozen) return frozen.error();
  BuildSeal out;
  if (frozen.value()) {
    // Sealed already: the record it wrote (a freeze without one is a seal
    // that failed or was cut short, and is done again).
    if (auto record = builds_.RecordJson(scope)) {
      out.record_json = std::move(record.value());
      return out;
    }
  } else if (::access(builds_.PathOf(scope).c_str(), F_OK) != 0) {
    return Error{ErrorCode::kNotFound, "no build " + scope};
  }
  TokenInfo none;
  none.username = "-";
  none.issued_by = by;
  none.scopes = {scope};
  if (starting) starting();
  out.status = Seal(none, result);
  return out;
}

SealStatus Sealer::Seal(const TokenInfo& token, BuildResult result, bool queue_all) {
  const auto start = std::chrono::steady_clock::now();
  SealStatus status;
  status.username = token.username;
  status.issued_by = token.issued_by;
  status.result = result;
  status.state = "running";
  // This freeze's name: the seal queued for it runs only while it is the
  // build's latest freeze (Builds::Freeze).
  status.ticket = token.username + "-" + std::to_string(clock_.NowNanos());
  // Freeze every build first, whatever happens to the hashing: from here on
  // no upload in flight can land (builds.h).
  TreeCount total;
  std::string reason;
  for (const auto& scope : token.scopes) {
    auto lock = builds_.Lock(scope);
    if (!lock) {
      reason = lock.error().message;
      status.error = "cannot lock the build " + scope;
      break;
    }
    // A seal without a token (an operator's, a master's) must not freeze a
    // build a token was issued for meanwhile: checked under the lock that
    // an issue takes too.
    if (token.username == "-" && store_.HoldsScope(scope)) {
      status.error = "build " + scope + " has a live token: revoke it (that seals it)";
      status.conflict = true;
      break;
    }
    auto count = builds_.Freeze(scope, status.ticket);
    if (!count) {
      if (count.error().code == ErrorCode::kNotFound) continue;  // no directory: nothing to seal
      reason = count.error().message;
      status.error = "sealing " + scope + " failed: " + count.error().public_message;
      break;
    }
    status.scopes.push_back({scope, {}});
    total.files += count->files;
    total.bytes += count->bytes;
  }
  if (!status.error.empty()) {
    status.state = "failed";
    Finish(status, reason, start);
    return status;
  }
  const bool small = total.bytes <= kInlineSealBytes && total.files <= kInlineSealFiles;
  if (!started_ || (small && !queue_all)) {
    Run(&status);
    return status;
  }
  if (status.username != "-") WriteStatus(status);
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(status);
  }
  cv_.notify_all();
  return status;
}

void Sealer::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    // Queued seals are finished even when stopping: the build is already
    // read-only, and its manifest is owed.
    if (queue_.empty()) return;
    SealStatus status = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    Run(&status);
    lock.lock();
  }
}

Result<std::string> Sealer::StatusJson(const std::string& username, const std::string& master) const {
  const Error missing{ErrorCode::kNotFound, "no seal for this token"};
  if (!IsValidUsername(username)) return missing;
  auto text = store_.ReadSealStatus(username);
  if (!text) return text.error().code == ErrorCode::kNotFound ? Result<std::string>(missing) : text.error();
  try {
    Poco::JSON::Parser parser;
    auto obj = parser.parse(text.value()).extract<Poco::JSON::Object::Ptr>();
    if (obj->getValue<std::string>("issued_by") != master) return missing;
  } catch (const std::exception&) {
    return Error{ErrorCode::kUnavailable, "seal status of " + username + " is corrupt"};
  }
  return text.value();
}

}  // namespace artifact
