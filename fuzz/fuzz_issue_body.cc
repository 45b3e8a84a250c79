// libFuzzer: the POST /token and renew body parsers never crash and never
// accept a body without a scope.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "issue_body.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const char* types[] = {"application/json", "application/x-www-form-urlencoded", "application/json; charset=utf-8",
                         "text/plain"};
  const std::string type = types[data[0] % 4];
  const std::string body(reinterpret_cast<const char*>(data + 1), size - 1);
  auto issue = artifact::ParseIssueBody(type, body);
  if (issue && issue->scopes.empty()) std::abort();
  if (issue && issue->ttl && *issue->ttl <= 0) std::abort();
  auto ttl = artifact::ParseTtlBody(type, body);
  if (ttl && ttl.value() && *ttl.value() <= 0) std::abort();
  return 0;
}
