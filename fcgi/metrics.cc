#include "metrics.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <sstream>

#include "posix_file.h"

namespace artifact {
namespace {

static_assert(std::atomic<uint64_t>::is_always_lock_free, "shared counters need lock-free atomics");

struct Description {
  const char* name;
  const char* help;
  const char* reason;  // label of artifact_refusals_total, or nullptr
};

const Description kDescriptions[Metrics::kCount] = {
    {"artifact_tokens_issued_total", "Tokens issued.", nullptr},
    {"artifact_tokens_revoked_total", "Tokens revoked by their master or an admin.", nullptr},
    {"artifact_tokens_renewed_total", "Token renewals.", nullptr},
    {"artifact_tokens_expired_total", "Tokens removed at their expiry by serve.", nullptr},
    {"artifact_seals_total", "Builds sealed with a SHA256SUMS manifest.", nullptr},
    {"artifact_seal_files_total", "Files listed in SHA256SUMS manifests.", nullptr},
    {"artifact_seal_bytes_total", "Bytes hashed while sealing.", nullptr},
    {"artifact_seal_seconds_total", "Seconds spent sealing.", nullptr},
    {"artifact_refusals_total", "Refused /token requests by reason.", "bad_request"},
    {nullptr, nullptr, "unauthorized"},
    {nullptr, nullptr, "forbidden"},
    {nullptr, nullptr, "not_found"},
    {nullptr, nullptr, "method_not_allowed"},
    {nullptr, nullptr, "conflict"},
    {nullptr, nullptr, "payload_too_large"},
    {nullptr, nullptr, "unsupported_media_type"},
    {nullptr, nullptr, "internal"},
    {nullptr, nullptr, "unavailable"},
    {nullptr, nullptr, "insufficient_storage"},
};

}  // namespace

Result<Metrics*> Metrics::Open(bool shared) {
  const size_t size = sizeof(std::atomic<uint64_t>) * kCount;
  if (!shared) {
    auto* counters = new std::atomic<uint64_t>[kCount];
    for (size_t i = 0; i < kCount; ++i) counters[i] = 0;
    return new Metrics(counters, 0);
  }
  // Zero-filled by the kernel; std::atomic<uint64_t> is lock-free here, so
  // zero bytes are zero counters.
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return ErrnoError("mmap", "metrics counters", errno);
  return new Metrics(static_cast<std::atomic<uint64_t>*>(p), size);
}

Metrics::~Metrics() {
  if (mapped_ == 0) {
    delete[] counters_;
  } else {
    ::munmap(static_cast<void*>(counters_), mapped_);
  }
}

Metrics::Counter Metrics::RefusalCounter(ErrorCode code) {
  switch (code) {
    case ErrorCode::kBadRequest: return kRefusedBadRequest;
    case ErrorCode::kUnauthorized: return kRefusedUnauthorized;
    case ErrorCode::kForbidden: return kRefusedForbidden;
    case ErrorCode::kNotFound: return kRefusedNotFound;
    case ErrorCode::kMethodNotAllowed: return kRefusedMethod;
    case ErrorCode::kConflict: return kRefusedConflict;
    case ErrorCode::kPayloadTooLarge: return kRefusedTooLarge;
    case ErrorCode::kUnsupportedMediaType: return kRefusedMediaType;
    case ErrorCode::kInternal: return kRefusedInternal;
    case ErrorCode::kUnavailable: return kRefusedUnavailable;
    case ErrorCode::kInsufficientStorage: return kRefusedFull;
  }
  return kRefusedInternal;
}

std::string Metrics::Render(int64_t live_tokens) const {
  std::ostringstream out;
  out << "# HELP artifact_live_tokens Tokens with a record in the store now.\n"
      << "# TYPE artifact_live_tokens gauge\n"
      << "artifact_live_tokens " << live_tokens << "\n";
  for (int i = 0; i < kCount; ++i) {
    const Description& d = kDescriptions[i];
    if (d.name != nullptr) {
      out << "# HELP " << d.name << " " << d.help << "\n# TYPE " << d.name << " counter\n";
    }
    const char* name = d.reason != nullptr ? "artifact_refusals_total" : d.name;
    out << name;
    if (d.reason != nullptr) out << "{reason=\"" << d.reason << "\"}";
    if (i == kSealMicros) {
      out << " " << static_cast<double>(Get(static_cast<Counter>(i))) / 1e6 << "\n";
    } else {
      out << " " << Get(static_cast<Counter>(i)) << "\n";
    }
  }
  return out.str();
}

}  // namespace artifact
