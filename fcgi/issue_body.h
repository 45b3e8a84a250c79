// The body of POST /token, as JSON or as application/x-www-form-urlencoded
// (for `curl -d`). Strict: unknown keys, wrong types and both `scope` and
// `scopes` are 400; 415 for any other content type.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "result.h"

namespace artifact {

struct IssueBody {
  std::vector<std::string> scopes;  // unvalidated text; Scope::Parse checks them
  std::optional<int64_t> ttl;
  std::optional<std::string> request_id;  // unvalidated; IsValidRequestId checks it
  bool reopen = false;
};

Result<IssueBody> ParseIssueBody(const std::string& content_type, const std::string& body);

// Parses {"ttl": n} or ttl=n, for renew.
Result<std::optional<int64_t>> ParseTtlBody(const std::string& content_type, const std::string& body);

}  // namespace artifact
