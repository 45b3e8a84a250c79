// Token password files: the htpasswd lines nginx's auth_basic reads.
//
//   username:{SSHA}base64(sha1(password + salt) + salt):expires=...;issued=...;...
//
// nginx stops reading the password at the second ':' and ignores the rest, so
// the third field carries the app's metadata. {SSHA} is the default because
// nginx hashes on every request and the password is 32 random bytes: a slow
// hash would cost every upload and buy nothing (DESIGN.md, measured).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "clock.h"
#include "result.h"

namespace artifact {

// Token usernames: same alphabet as a scope segment, at most 64 characters.
bool IsValidUsername(const std::string& s);

// 32 random bytes, base64url without padding (43 characters), never
// starting with '-' (a draw that would is discarded).
Result<std::string> GeneratePassword(RandomSource& random);

// A fresh username "t" + 20 hex digits (80 random bits).
Result<std::string> GenerateUsername(RandomSource& random);

// Request ids (the idempotency key): the alphabet of a scope segment.
bool IsValidRequestId(const std::string& s);

// The name of the token a master issues with `request_id`: "r" + the first
// 40 hex digits of SHA-256(master + "\n" + request_id). A master can compute
// it before asking (to journal a revoke it may owe) and a retry gets the same
// name, while two masters never meet in one name space: no master can choose
// a name another master's request makes (160 bits; master names hold no
// newline), so a refusal never tells one master about another's tokens.
// Never equal to a generated name ("t" + 20 digits).
std::string TokenNameFor(const std::string& master, const std::string& request_id);

// {SSHA} with an 8-byte random salt, exactly as nginx's ngx_crypt_ssha checks.
Result<std::string> SshaHash(const std::string& password, RandomSource& random);
// Constant-time check of `password` against an {SSHA} hash.
bool SshaVerify(const std::string& password, const std::string& hash);

// Metadata of a token, kept in the third field of each of its lines.
struct TokenInfo {
  std::string username;
  std::string issued_by;   // master name
  int64_t issued = 0;      // unix time
  int64_t expires = 0;     // unix time
  std::vector<std::string> scopes;  // every scope of the token
};

// "a/b/c/d,e/f/g/h": scopes as the metadata field and the log lines list them.
std::string JoinScopes(const std::vector<std::string>& scopes);

struct PasswordLine {
  TokenInfo info;
  std::string hash;

  // "user:hash:meta\n". Fails (never produces a second line) when any field
  // holds a byte that could end or split a line or a field.
  Result<std::string> Format() const;
  // Parses one line as Format() writes it; strict.
  static Result<PasswordLine> Parse(const std::string& line);
};

}  // namespace artifact
