#include "cli.h"

#include <iostream>

#include "api.h"
#include "config.h"
#include "fcgi_loop.h"

namespace artifact {
namespace {

std::string ConfigHelp() {
  std::string out = "Configuration (file " + std::string(kDefaultConfigPath) +
                    ", --config FILE or ARTIFACT_CONFIG to change;\n"
                    "each key is overridden by its environment variable, which is overridden by its flag):\n";
  for (const auto& k : ConfigKeys()) {
    out += "  " + std::string(k.flag) + " / " + k.env + "\n      " + k.name + ": " + k.help + "\n";
  }
  return out;
}

bool WantsHelp(const std::vector<std::string>& args) {
  for (const auto& a : args) {
    if (a == "--help" || a == "-h") return true;
  }
  return false;
}

// Loads the configuration; prints the error and returns nullopt-like false.
bool Load(const std::string& cmd, const std::vector<std::string>& args, LoadedConfig* out) {
  auto loaded = LoadConfig(args, ProcessEnvironment());
  if (!loaded) {
    std::cerr << "artifact-token " << cmd << ": " << loaded.error().message << "\n";
    return false;
  }
  if (!loaded->rest.empty()) {
    std::cerr << "artifact-token " << cmd << ": unexpected argument " << loaded->rest.front()
              << " (see --help)\n";
    return false;
  }
  *out = std::move(loaded.value());
  return true;
}

}  // namespace

std::string ProgramUsage() {
  return "Usage: artifact-token COMMAND [OPTIONS]\n"
         "\n"
         "Issues and revokes the ephemeral upload tokens of an artifact repository.\n"
         "\n"
         "Commands:\n"
         "  serve       the FastCGI application behind nginx's /token (started by spawn-fcgi)\n"
         "  nginx-map   print the nginx map that selects a request's scope file\n"
         "\n"
         "Run 'artifact-token COMMAND --help' for a command's options.\n";
}

int RunServe(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::cout << "Usage: spawn-fcgi -s SOCKET -n -- artifact-token serve [OPTIONS]\n\n"
                 "Answers /token requests on the FastCGI socket passed as file descriptor 0.\n"
                 "Logs one line per issue, revoke and refusal to standard error; never a secret.\n\n"
              << ConfigHelp();
    return 0;
  }
  LoadedConfig loaded;
  if (!Load("serve", args, &loaded)) return 2;
  const Config& config = loaded.config;
  SystemClock clock;
  OpenSslRandom random;
  TokenStore store(config.tokens_dir, config.artifacts_dir, clock, random);
  MastersFile masters(config.masters_file, &std::cerr);
  Api api(config, store, masters, clock, std::cerr);
  std::cerr << "artifact-token serve: tokens in " << config.tokens_dir << ", artifacts in " << config.artifacts_dir
            << ", scope_depth " << config.scope_depth << "\n";
  return RunFastCgiLoop(api);
}

int RunNginxMap(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::cout << "Usage: artifact-token nginx-map [OPTIONS]\n\n"
                 "Prints the nginx `map` that derives a write's password file from its URI, for\n"
                 "the configured scope_depth and tokens_dir: the one source of truth nginx and\n"
                 "the app share. Include its output in nginx's http context.\n\n"
              << ConfigHelp();
    return 0;
  }
  LoadedConfig loaded;
  if (!Load("nginx-map", args, &loaded)) return 2;
  std::cout << NginxMapSnippet(loaded.config.scope_depth, loaded.config.tokens_dir);
  return 0;
}

}  // namespace artifact
