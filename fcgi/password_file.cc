#include "password_file.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <array>
#include <cstdio>

#include "base64.h"
#include "scope.h"
#include "split.h"

namespace artifact {
namespace {

constexpr size_t kPasswordBytes = 32;
constexpr size_t kSaltBytes = 8;
constexpr const char* kSshaPrefix = "{SSHA}";

// Bytes allowed in a metadata value or a master name: printable ASCII without
// the separators of the line (':'), of the metadata (';', '=') and lists (',').
bool IsSafeField(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c <= ' ' || c > '~' || c == ':' || c == ';' || c == '=' || c == ',') return false;
  }
  return true;
}

bool IsSafeHash(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c <= ' ' || c > '~' || c == ':') return false;
  }
  return true;
}

Result<int64_t> ParseUnixTime(const std::string& s) {
  auto v = ParseDigits(s, 18);
  if (!v) return Error{ErrorCode::kBadRequest, "bad time"};
  return *v;
}

bool IsScopeText(const std::string& s) {
  if (s.empty()) return false;
  for (const auto& seg : SplitFields(s, '/')) {
    if (!IsValidSegment(seg)) return false;
  }
  return true;
}

}  // namespace

std::string JoinScopes(const std::vector<std::string>& scopes) {
  std::string out;
  for (const auto& s : scopes) out += (out.empty() ? "" : ",") + s;
  return out;
}

bool IsValidUsername(const std::string& s) { return s.size() <= 64 && IsValidSegment(s); }

Result<std::string> GeneratePassword(RandomSource& random) {
  // A password that starts with '-' reads as an option to the programs that
  // take it as an argument (litmus URL USER PASS failed on one in CI): such
  // a draw is thrown away, which costs 0.02 of the 256 bits. A source that
  // gives nothing else is broken.
  constexpr unsigned char kDashSextet = 62;  // base64 '+', base64url '-'
  std::array<unsigned char, kPasswordBytes> bytes{};
  for (int attempt = 0;; ++attempt) {
    if (attempt == 16) {
      OPENSSL_cleanse(bytes.data(), bytes.size());
      return Error{ErrorCode::kUnavailable, "the random source gives no usable password"};
    }
    if (!random.Fill(bytes.data(), bytes.size())) {
      return Error{ErrorCode::kUnavailable, "no randomness available"};
    }
    if ((bytes[0] >> 2) != kDashSextet) break;
  }
  std::string b64 = Base64Encode(bytes.data(), bytes.size());
  OPENSSL_cleanse(bytes.data(), bytes.size());
  for (char& c : b64) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  while (!b64.empty() && b64.back() == '=') b64.pop_back();
  return b64;
}

Result<std::string> GenerateUsername(RandomSource& random) {
  std::array<unsigned char, 10> bytes{};
  if (!random.Fill(bytes.data(), bytes.size())) {
    return Error{ErrorCode::kUnavailable, "no randomness available"};
  }
  std::string name = "t";
  char hex[3];
  for (unsigned char b : bytes) {
    std::snprintf(hex, sizeof hex, "%02x", b);
    name += hex;
  }
  return name;
}

bool IsValidRequestId(const std::string& s) { return IsValidSegment(s); }

std::string TokenNameFor(const std::string& master, const std::string& request_id) {
  const std::string input = master + "\n" + request_id;
  std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
  SHA256(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest.data());
  std::string name = "r";
  char hex[3];
  for (size_t i = 0; i < 20; ++i) {
    std::snprintf(hex, sizeof hex, "%02x", digest[i]);
    name += hex;
  }
  return name;
}

Result<std::string> SshaHash(const std::string& password, RandomSource& random) {
  std::array<unsigned char, SHA_DIGEST_LENGTH + kSaltBytes> buf{};
  unsigned char* salt = buf.data() + SHA_DIGEST_LENGTH;
  if (!random.Fill(salt, kSaltBytes)) return Error{ErrorCode::kUnavailable, "no randomness available"};
  std::string input = password;
  input.append(reinterpret_cast<const char*>(salt), kSaltBytes);
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), buf.data());
  OPENSSL_cleanse(input.data(), input.size());
  return std::string(kSshaPrefix) + Base64Encode(buf.data(), buf.size());
}

bool SshaVerify(const std::string& password, const std::string& hash) {
  const std::string prefix = kSshaPrefix;
  if (hash.compare(0, prefix.size(), prefix) != 0) return false;
  std::string raw = Base64Decode(hash.substr(prefix.size()));
  if (raw.size() <= SHA_DIGEST_LENGTH) return false;
  std::string input = password + raw.substr(SHA_DIGEST_LENGTH);
  std::array<unsigned char, SHA_DIGEST_LENGTH> digest{};
  SHA1(reinterpret_cast<const unsigned char*>(input.data()), input.size(), digest.data());
  OPENSSL_cleanse(input.data(), input.size());
  return CRYPTO_memcmp(digest.data(), raw.data(), SHA_DIGEST_LENGTH) == 0;
}

Result<std::string> PasswordLine::Format() const {
  if (!IsValidUsername(info.username)) return Error{ErrorCode::kBadRequest, "invalid username"};
  if (!IsSafeHash(hash)) return Error{ErrorCode::kInternal, "invalid password hash"};
  if (!IsSafeField(info.issued_by)) return Error{ErrorCode::kInternal, "invalid master name"};
  if (info.scopes.empty()) return Error{ErrorCode::kInternal, "a token needs a scope"};
  for (const auto& s : info.scopes) {
    if (!IsScopeText(s)) return Error{ErrorCode::kInternal, "invalid scope in token"};
  }
  const std::string scopes = JoinScopes(info.scopes);
  return info.username + ":" + hash + ":issued_by=" + info.issued_by + ";issued=" + std::to_string(info.issued) +
         ";expires=" + std::to_string(info.expires) + ";scopes=" + scopes + "\n";
}

Result<PasswordLine> PasswordLine::Parse(const std::string& text) {
  const Error bad{ErrorCode::kInternal, "malformed password line"};
  std::string line = text;
  if (!line.empty() && line.back() == '\n') line.pop_back();
  auto fields = SplitFields(line, ':');
  if (fields.size() != 3) return bad;
  PasswordLine pl;
  pl.info.username = fields[0];
  pl.hash = fields[1];
  if (!IsValidUsername(pl.info.username) || !IsSafeHash(pl.hash)) return bad;
  bool have_by = false, have_issued = false, have_expires = false, have_scopes = false;
  for (const auto& kv : SplitFields(fields[2], ';')) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) return bad;
    std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
    if (key == "issued_by" && !have_by && IsSafeField(value)) {
      pl.info.issued_by = value;
      have_by = true;
    } else if (key == "issued" && !have_issued) {
      auto t = ParseUnixTime(value);
      if (!t) return bad;
      pl.info.issued = t.value();
      have_issued = true;
    } else if (key == "expires" && !have_expires) {
      auto t = ParseUnixTime(value);
      if (!t) return bad;
      pl.info.expires = t.value();
      have_expires = true;
    } else if (key == "scopes" && !have_scopes) {
      for (const auto& s : SplitFields(value, ',')) {
        if (!IsScopeText(s)) return bad;
        pl.info.scopes.push_back(s);
      }
      have_scopes = true;
    } else {
      return bad;
    }
  }
  if (!(have_by && have_issued && have_expires && have_scopes)) return bad;
  return pl;
}

}  // namespace artifact
