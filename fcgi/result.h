// Errors as values: every expected failure at a boundary (bad input, missing
// token, full disk) travels as an Error and is turned into an HTTP status in
// exactly one place (api.cc). Exceptions never cross the accept loop.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace artifact {

enum class ErrorCode {
  kBadRequest,            // 400 invalid scope, ttl, JSON, ...
  kUnauthorized,          // 401 missing or wrong master credentials
  kForbidden,             // 403 master not allowed for this scope
  kNotFound,              // 404 no such live token / route
  kMethodNotAllowed,      // 405
  kConflict,              // 409 scope already has a live token, or is published
  kPayloadTooLarge,       // 413
  kUnsupportedMediaType,  // 415
  kInternal,              // 500
  kUnavailable,           // 503 token store or masters file unusable
  kInsufficientStorage,   // 507 disk full
};

struct Error {
  ErrorCode code;
  std::string message;  // for the log and, below 500, for the client
  // For a 5xx, what the client may read: what failed, in words an operator
  // can act on, never a path or errno. Empty: a generic sentence.
  std::string public_message{};
};

// `e` with what failed, for a 5xx answer, in front of the cause's words.
inline Error Explained(Error e, const std::string& what) {
  e.public_message = e.public_message.empty() ? what : what + ": " + e.public_message;
  return e;
}

// The HTTP status and the stable machine-readable code of an error.
int HttpStatus(ErrorCode code);
const char* ErrorName(ErrorCode code);

// The reason phrase of an HTTP status (RFC 9110 section 15) for the status
// line; a status missing from the table gets the name of its class
// ("Client Error"), never a misleading word.
const char* ReasonPhrase(int status);

// A value or an Error. Deliberately tiny: `if (!r) return r.error();`.
template <typename T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}  // NOLINT(google-explicit-constructor)

  explicit operator bool() const { return v_.index() == 0; }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result<void>: success carries nothing.
struct Ok {};
using Status = Result<Ok>;

}  // namespace artifact
