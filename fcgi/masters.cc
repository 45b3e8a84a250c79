#include "masters.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <cerrno>
#include <cstring>
#include <sstream>

#include "posix_file.h"

namespace artifact {
namespace {

constexpr size_t kMaxCachedCredentials = 4096;

bool IsSupportedHash(const std::string& h) {
  for (const char* prefix : {"$2y$", "$2b$", "$2a$", "$y$", "$6$", "$5$"}) {
    if (h.compare(0, std::strlen(prefix), prefix) == 0) return true;
  }
  return false;
}

std::vector<std::string> SplitOn(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}

bool IsValidPrefix(const std::string& p) {
  std::string t = p;
  if (!t.empty() && t.back() == '/') t.pop_back();
  if (t.empty()) return false;
  for (const auto& seg : SplitOn(t, '/')) {
    if (!IsValidSegment(seg)) return false;
  }
  return true;
}

}  // namespace

bool Master::MayIssue(const Scope& scope) const {
  if (allow.empty()) return true;
  for (const auto& prefix : allow) {
    if (scope.IsUnder(prefix)) return true;
  }
  return false;
}

MastersParse ParseMasters(const std::string& text) {
  MastersParse out;
  std::istringstream in(text);
  std::string line;
  int lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    auto where = "line " + std::to_string(lineno) + ": ";
    auto fields = SplitOn(line, ':');
    if (fields.size() < 2 || fields.size() > 3 || fields[0].empty()) {
      out.problems.push_back(where + "expected name:hash[:allow=prefix,...]");
      continue;
    }
    MasterEntry e;
    e.master.name = fields[0];
    e.hash = fields[1];
    bool ok = true;
    for (char c : e.master.name) {
      if (c <= ' ' || c > '~' || c == ';' || c == '=' || c == ',') ok = false;
    }
    if (!ok) {
      out.problems.push_back(where + "master name has a forbidden character");
      continue;
    }
    if (!IsSupportedHash(e.hash)) {
      out.problems.push_back(where + "unsupported hash for " + e.master.name +
                             " (make it with htpasswd -B: bcrypt; or sha256/512crypt, yescrypt)");
      continue;
    }
    if (fields.size() == 3) {
      for (const auto& kv : SplitOn(fields[2], ';')) {
        auto eq = kv.find('=');
        std::string key = kv.substr(0, eq), value = eq == std::string::npos ? "" : kv.substr(eq + 1);
        if (key == "allow" && eq != std::string::npos) {
          for (const auto& p : SplitOn(value, ',')) {
            if (!IsValidPrefix(p)) ok = false;
            e.master.allow.push_back(p);
          }
          if (e.master.allow.empty()) ok = false;
        } else if (key == "reopen" && (value == "yes" || value == "no")) {
          e.master.may_reopen = value == "yes";
        } else {
          ok = false;
        }
      }
      if (!ok) {
        out.problems.push_back(where + "bad options for " + e.master.name +
                               " (expected allow=prefix/,prefix/ and/or reopen=yes|no, separated by ';')");
        continue;
      }
    }
    out.entries.push_back(std::move(e));
  }
  return out;
}

struct MastersFile::CryptState {
  struct crypt_data data;
};

MastersFile::MastersFile(std::string path, std::ostream* log)
    : path_(std::move(path)), log_(log), crypt_(std::make_unique<CryptState>()) {
  std::memset(&crypt_->data, 0, sizeof crypt_->data);
  // A bcrypt hash at htpasswd -B's default cost, checked for unknown names so
  // that an unknown master costs the same as a known one (no enumeration by
  // timing).
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn("$2y$", 5, nullptr, 0, salt, sizeof salt) != nullptr) {
    const char* h = crypt_r("not a password", salt, &crypt_->data);
    if (h != nullptr && h[0] != '*') dummy_hash_ = h;
  }
  if (RAND_bytes(hmac_key_.data(), static_cast<int>(hmac_key_.size())) != 1) {
    // Without a key the cache would be guessable: leave it unused.
    hmac_key_.fill(0);
  }
}

MastersFile::~MastersFile() {
  OPENSSL_cleanse(&crypt_->data, sizeof crypt_->data);
  OPENSSL_cleanse(hmac_key_.data(), hmac_key_.size());
}

Status MastersFile::Reload() {
  auto text = ReadSmallFile(path_, 1 << 20, /*follow_symlinks=*/true);
  if (!text) {
    Error e{ErrorCode::kUnavailable, "masters file unusable, refusing every master: " + text.error().message};
    if (loaded_ && log_ != nullptr) *log_ << e.message << "\n" << std::flush;
    loaded_ = false;
    verified_.clear();
    return e;
  }
  if (loaded_ && text.value() == content_) return Ok{};
  parsed_ = ParseMasters(text.value());
  if (log_ != nullptr) {
    for (const auto& p : parsed_.problems) *log_ << "masters file " << path_ << " " << p << "\n";
    log_->flush();
  }
  content_ = std::move(text.value());
  loaded_ = true;
  verified_.clear();
  return Ok{};
}

Result<Master> MastersFile::Verify(const std::string& name, const std::string& password) {
  if (auto st = Reload(); !st) return st.error();
  const MasterEntry* entry = nullptr;
  for (const auto& e : parsed_.entries) {
    if (e.master.name == name) entry = &e;
  }

  std::string key_input = name;
  key_input.push_back('\0');
  key_input += password;
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), hmac_key_.data(), static_cast<int>(hmac_key_.size()),
       reinterpret_cast<const unsigned char*>(key_input.data()), key_input.size(), mac, &mac_len);
  OPENSSL_cleanse(key_input.data(), key_input.size());
  std::string cache_key(reinterpret_cast<const char*>(mac), mac_len);
  if (entry != nullptr && verified_.count(cache_key) != 0) return entry->master;

  const std::string& hash = entry != nullptr ? entry->hash : dummy_hash_;
  const char* out = crypt_r(password.c_str(), hash.c_str(), &crypt_->data);
  bool good = out != nullptr && out[0] != '*' && std::strlen(out) == hash.size() &&
              CRYPTO_memcmp(out, hash.data(), hash.size()) == 0;
  if (!good || entry == nullptr) return Error{ErrorCode::kUnauthorized, "wrong master credentials"};
  if (verified_.size() >= kMaxCachedCredentials) verified_.clear();
  verified_.insert(cache_key);
  return entry->master;
}

}  // namespace artifact
