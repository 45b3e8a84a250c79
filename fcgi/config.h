// One Config: defaults, then the file, then ARTIFACT_* environment variables,
// then command-line flags. Every key is validated where it enters; an unknown
// key or a bad value is an error that names the key and where it came from.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "result.h"

namespace artifact {

inline constexpr const char* kDefaultConfigPath = "/etc/artifact-repository/artifact-token.conf";

struct Config {
  std::string tokens_dir = "/var/lib/artifact-repository/tokens";
  std::string artifacts_dir = "/var/lib/artifact-repository/artifacts";
  std::string masters_file = "/etc/artifact-repository/masters";
  int scope_depth = 4;
  int64_t default_ttl = 3 * 3600;
  int64_t max_ttl = 24 * 3600;
  std::string public_url;  // e.g. https://repo.example; empty: from the request's Host
  std::string retention;   // rules for `artifact-token retention`, see retention.h
  // `serve` processes on the FastCGI socket. Several, because a /token
  // request mostly waits for fsync: with one, concurrent requests queue
  // behind each other's (bench/FINDINGS.md, figure 3).
  int processes = 4;

  // Sets one key from text; `origin` names the source for the message.
  Status Set(const std::string& key, const std::string& value, const std::string& origin);
  // Cross-key rules (default_ttl <= max_ttl).
  Status Validate() const;
};

struct ConfigKey {
  const char* name;         // in the file: scope_depth = 4
  const char* env;          // ARTIFACT_SCOPE_DEPTH
  const char* flag;         // --scope-depth
  const char* help;
};
const std::vector<ConfigKey>& ConfigKeys();

// The result of reading argv: the config plus the arguments that were not
// configuration flags (subcommand arguments), in order.
struct LoadedConfig {
  Config config;
  std::string path;                // the file read, or "" when none
  std::vector<std::string> rest;
};

// `args` excludes the program and subcommand names. `--config PATH` (or
// ARTIFACT_CONFIG) picks the file; a missing default file is not an error,
// a missing explicit one is. `env` is the process environment as a map.
Result<LoadedConfig> LoadConfig(const std::vector<std::string>& args, const std::map<std::string, std::string>& env);

// The process environment, for LoadConfig.
std::map<std::string, std::string> ProcessEnvironment();

}  // namespace artifact
