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

std::string SealStatus::ToJson() const {
  Poco::JSON::Object obj(Poco::JSON_PRESERVE_KEY_ORDER);
  obj.set("username", username);
  obj.set("issued_by", issued_by);
  obj.set("state", state);
  obj.set("result", std::string(success ? "success" : "failure"));
  int64_t files = 0, bytes = 0;
  Poco::JSON::Array list, all_mismatches;
  for (const auto& s : scopes) {
    Poco::JSON::Object one(Poco::JSON_PRESERVE_KEY_ORDER);
    one.set("scope", s.scope);
    one.set("files", static_cast<Poco::Int64>(s.report.files));
    one.set("bytes", static_cast<Poco::Int64>(s.report.bytes));
    Poco::JSON::Array mismatches;
    for (const auto& m : s.report.mismatches) {
      mismatches.add(m);
      all_mismatches.add(s.scope + "/" + m);
    }
    one.set("mismatches", mismatches);
    list.add(one);
    files += s.report.files;
    bytes += s.report.bytes;
  }
  obj.set("files", static_cast<Poco::Int64>(files));
  obj.set("bytes", static_cast<Poco::Int64>(bytes));
  obj.set("mismatches", all_mismatches);
  obj.set("scopes", list);
  if (!error.empty()) obj.set("error", error);
  return artifact::ToJson(obj);
}

Sealer::Sealer(std::string tokens_dir, Builds& builds, const Clock& clock, EventLog& log, Metrics* metrics)
    : tokens_dir_(std::move(tokens_dir)),
      builds_(builds),
      status_dir_(tokens_dir_ + "/.seals"),
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
  if (auto st = MakeDirs(tokens_dir_, ".seals", 0750); !st) return;
  (void)ReplaceFile(Disk::Default(), status_dir_, status.username, status.ToJson() + "\n", 0640);
}

void Sealer::Run(SealStatus* status) {
  const auto start = std::chrono::steady_clock::now();
  for (auto& s : status->scopes) {
    auto report = builds_.Seal(s.scope);
    if (!report) {
      status->state = "failed";
      status->error = "sealing " + s.scope + " failed: " + report.error().message;
      break;
    }
    s.report = report.value();
    // Only a build that published something can become latest.
    if (status->success && report->mismatches.empty() && report->files > 0) {
      if (auto st = builds_.UpdateLatest(s.scope); !st) {
        log_.Write(Rfc3339(clock_.Now()) + " latest scope=" + s.scope + " failed: " + st.error().message,
                   Priority::kWarning);
      }
    }
  }
  if (status->state != "failed") status->state = "done";
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  int64_t files = 0, bytes = 0;
  for (const auto& s : status->scopes) {
    files += s.report.files;
    bytes += s.report.bytes;
  }
  if (metrics_ != nullptr && status->state == "done") {
    metrics_->Add(Metrics::kSeals);
    metrics_->Add(Metrics::kSealFiles, static_cast<uint64_t>(files));
    metrics_->Add(Metrics::kSealBytes, static_cast<uint64_t>(bytes));
    metrics_->Add(Metrics::kSealMicros, static_cast<uint64_t>(micros.count()));
  }
  size_t mismatches = 0;
  for (const auto& s : status->scopes) mismatches += s.report.mismatches.size();
  log_.Write(Rfc3339(clock_.Now()) + " seal master=" + status->issued_by + " username=" + status->username +
             " files=" + std::to_string(files) + " bytes=" + std::to_string(bytes) +
             " mismatches=" + std::to_string(mismatches) + " result=" + (status->success ? "success" : "failure") +
             " outcome=" + status->state + (status->error.empty() ? "" : " reason=\"" + status->error + "\""),
             status->state == "failed" ? Priority::kError : Priority::kInfo);
  if (files > 0 || status->state != "done") WriteStatus(*status);
}

SealStatus Sealer::Seal(const TokenInfo& token, bool success) {
  SealStatus status;
  status.username = token.username;
  status.issued_by = token.issued_by;
  status.success = success;
  status.state = "running";
  int64_t total = 0;
  for (const auto& scope : token.scopes) {
    status.scopes.push_back({scope, {}});
    auto bytes = builds_.Bytes(scope);
    if (bytes) total += bytes.value();
  }
  if (!started_ || total <= kInlineSealBytes) {
    Run(&status);
    return status;
  }
  WriteStatus(status);
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
  auto text = ReadSmallFile(status_dir_ + "/" + username, 1 << 20);
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
