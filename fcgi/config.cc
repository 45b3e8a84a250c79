#include "config.h"

#include <Poco/Exception.h>
#include <Poco/Util/PropertyFileConfiguration.h>
#include <unistd.h>

#include <fstream>

#include "retention.h"
#include "split.h"

extern char** environ;

namespace artifact {
namespace {

Result<int64_t> ParseInt(const std::string& s, int64_t min, int64_t max) {
  auto parsed = ParseDigits(s, 12);
  if (!parsed) return Error{ErrorCode::kBadRequest, "not a non-negative integer"};
  const int64_t v = *parsed;
  if (v < min || v > max) {
    return Error{ErrorCode::kBadRequest, "must be between " + std::to_string(min) + " and " + std::to_string(max)};
  }
  return v;
}

Status CheckAbsolutePath(const std::string& v) {
  if (v.empty() || v[0] != '/') return Error{ErrorCode::kBadRequest, "must be an absolute path"};
  for (char c : v) {
    // The path is written into nginx's config: keep it free of quoting trouble.
    if (c <= ' ' || c > '~' || c == '"' || c == '\'' || c == ';' || c == '$' || c == '{' || c == '}' ||
        c == '\\') {
      return Error{ErrorCode::kBadRequest, "must be a plain path (no spaces, quotes, ';', '$', braces)"};
    }
  }
  while (v.size() > 1 && v.back() == '/') return Error{ErrorCode::kBadRequest, "must not end with '/'"};
  return Ok{};
}

Status CheckPublicUrl(const std::string& v) {
  if (v.empty()) return Ok{};
  if (v.rfind("http://", 0) != 0 && v.rfind("https://", 0) != 0) {
    return Error{ErrorCode::kBadRequest, "must start with http:// or https://"};
  }
  if (v.back() == '/') return Error{ErrorCode::kBadRequest, "must not end with '/'"};
  for (char c : v) {
    if (c <= ' ' || c > '~' || c == '"' || c == '\\') return Error{ErrorCode::kBadRequest, "must be a plain URL"};
  }
  return Ok{};
}

}  // namespace

const std::vector<ConfigKey>& ConfigKeys() {
  static const std::vector<ConfigKey> keys = {
      {"tokens_dir", "ARTIFACT_TOKENS_DIR", "--tokens-dir",
       "directory of the token password files (the tokens volume)"},
      {"artifacts_dir", "ARTIFACT_ARTIFACTS_DIR", "--artifacts-dir",
       "root of the public artifact tree (the artifacts volume)"},
      {"masters_file", "ARTIFACT_MASTERS_FILE", "--masters-file", "htpasswd file of the masters (htpasswd -B)"},
      {"scope_depth", "ARTIFACT_SCOPE_DEPTH", "--scope-depth", "segments in a scope, 1..8 (default 4)"},
      {"default_ttl", "ARTIFACT_DEFAULT_TTL", "--default-ttl", "token lifetime in seconds when none is asked"},
      {"max_ttl", "ARTIFACT_MAX_TTL", "--max-ttl", "longest token lifetime in seconds"},
      {"public_url", "ARTIFACT_PUBLIC_URL", "--public-url",
       "base URL in responses, e.g. https://repo.example (default: from the request)"},
      {"processes", "ARTIFACT_PROCESSES", "--processes",
       "`serve` processes answering on the socket, 1..64 (default 4)"},
      {"retention", "ARTIFACT_RETENTION", "--retention",
       "builds `retention` keeps per builder, e.g. 'dpkg/:keep=10,days=30; rpm/x/:keep=3' (default: all)"},
  };
  return keys;
}

Status Config::Set(const std::string& key, const std::string& value, const std::string& origin) {
  auto fail = [&](const Error& e) -> Status {
    return Error{ErrorCode::kBadRequest, origin + ": " + key + " " + e.message};
  };
  if (key == "tokens_dir" || key == "artifacts_dir" || key == "masters_file") {
    if (auto st = CheckAbsolutePath(value); !st) return fail(st.error());
    (key == "tokens_dir" ? tokens_dir : key == "artifacts_dir" ? artifacts_dir : masters_file) = value;
  } else if (key == "scope_depth") {
    auto v = ParseInt(value, 1, 8);
    if (!v) return fail(v.error());
    scope_depth = static_cast<int>(v.value());
  } else if (key == "processes") {
    auto v = ParseInt(value, 1, 64);
    if (!v) return fail(v.error());
    processes = static_cast<int>(v.value());
  } else if (key == "default_ttl" || key == "max_ttl") {
    auto v = ParseInt(value, 1, 366 * 24 * 3600);
    if (!v) return fail(v.error());
    (key == "default_ttl" ? default_ttl : max_ttl) = v.value();
  } else if (key == "retention") {
    auto rules = ParseRetention(value);
    if (!rules) return fail(rules.error());
    retention = value;
  } else if (key == "public_url") {
    if (auto st = CheckPublicUrl(value); !st) return fail(st.error());
    public_url = value;
  } else {
    return Error{ErrorCode::kBadRequest, origin + ": unknown key " + key};
  }
  return Ok{};
}

Status Config::Validate() const {
  if (default_ttl > max_ttl) return Error{ErrorCode::kBadRequest, "default_ttl must not exceed max_ttl"};
  return Ok{};
}

std::map<std::string, std::string> ProcessEnvironment() {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return env;
}

Result<LoadedConfig> LoadConfig(const std::vector<std::string>& args, const std::map<std::string, std::string>& env) {
  LoadedConfig out;
  const ConfigKey* pending = nullptr;
  bool pending_config = false;
  std::vector<std::pair<const ConfigKey*, std::string>> flags;
  std::string path;
  bool explicit_path = false;
  if (auto it = env.find("ARTIFACT_CONFIG"); it != env.end() && !it->second.empty()) {
    path = it->second;
    explicit_path = true;
  }

  for (const auto& arg : args) {
    if (pending != nullptr || pending_config) {
      if (pending_config) {
        path = arg;
        explicit_path = true;
      } else {
        flags.emplace_back(pending, arg);
      }
      pending = nullptr;
      pending_config = false;
      continue;
    }
    std::string name = arg, value;
    bool has_value = false;
    if (auto eq = arg.find('='); arg.rfind("--", 0) == 0 && eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    if (name == "--config") {
      if (has_value) {
        path = value;
        explicit_path = true;
      } else {
        pending_config = true;
      }
      continue;
    }
    const ConfigKey* key = nullptr;
    for (const auto& k : ConfigKeys()) {
      if (name == k.flag) key = &k;
    }
    if (key == nullptr) {
      out.rest.push_back(arg);
      continue;
    }
    if (has_value) {
      flags.emplace_back(key, value);
    } else {
      pending = key;
    }
  }
  if (pending != nullptr || pending_config) {
    return Error{ErrorCode::kBadRequest, "flag " + args.back() + " needs a value"};
  }

  if (path.empty()) path = kDefaultConfigPath;
  if (::access(path.c_str(), F_OK) == 0 || explicit_path) {
    std::ifstream in(path);
    if (!in) return Error{ErrorCode::kBadRequest, "cannot read config file " + path};
    try {
      Poco::AutoPtr<Poco::Util::PropertyFileConfiguration> file(new Poco::Util::PropertyFileConfiguration(in));
      Poco::Util::AbstractConfiguration::Keys keys;
      file->keys(keys);
      for (const auto& k : keys) {
        std::string value;
        if (!file->has(k)) {
          return Error{ErrorCode::kBadRequest, path + ": unknown key " + k};
        }
        value = file->getRawString(k);
        if (auto st = out.config.Set(k, value, path); !st) return st.error();
      }
    } catch (const Poco::Exception& e) {
      return Error{ErrorCode::kBadRequest, path + ": " + e.displayText()};
    }
    out.path = path;
  }
  for (const auto& k : ConfigKeys()) {
    if (auto it = env.find(k.env); it != env.end()) {
      if (auto st = out.config.Set(k.name, it->second, std::string("environment ") + k.env); !st) return st.error();
    }
  }
  for (const auto& [key, value] : flags) {
    if (auto st = out.config.Set(key->name, value, std::string("flag ") + key->flag); !st) return st.error();
  }
  if (auto st = out.config.Validate(); !st) return st.error();
  return out;
}

}  // namespace artifact
