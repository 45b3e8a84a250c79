#include "cli.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <memory>
#include <optional>
#include <iomanip>
#include <iostream>

#include "api.h"
#include "build_tree.h"
#include "config.h"
#include "fcgi_loop.h"
#include "masters.h"
#include "serve.h"
#include "split.h"
#include "supervisor.h"
#include "posix_file.h"
#include "retention.h"
#include "sealer.h"

namespace artifact {
namespace {

// The priority prefix of a line on stderr when stderr goes to journald (see
// EventLog), so `journalctl -p warning` shows why a unit failed; "" else.
std::string ErrorPrefix(Priority priority = Priority::kError) {
  return StderrIsJournal() ? SyslogPrefix(priority) : "";
}


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

// Loads the configuration; on error prints it and returns false.
bool Load(const std::string& cmd, const std::vector<std::string>& args, LoadedConfig* out) {
  auto loaded = LoadConfig(args, ProcessEnvironment());
  if (!loaded) {
    std::cerr << ErrorPrefix() << "artifact-token " << cmd << ": " << loaded.error().message << "\n";
    return false;
  }
  *out = std::move(loaded.value());
  return true;
}

int Usage(const std::string& cmd, const std::string& message) {
  std::cerr << "artifact-token " << cmd << ": " << message << " (see --help)\n";
  return 2;
}

// Pulls "--name VALUE" / "--name=VALUE" out of `rest`; repeatable.
std::vector<std::string> TakeOption(std::vector<std::string>& rest, const std::string& name, bool* missing_value) {
  std::vector<std::string> values, kept;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == name) {
      if (i + 1 >= rest.size()) {
        *missing_value = true;
      } else {
        values.push_back(rest[++i]);
      }
    } else if (rest[i].rfind(name + "=", 0) == 0) {
      values.push_back(rest[i].substr(name.size() + 1));
    } else {
      kept.push_back(rest[i]);
    }
  }
  rest = kept;
  return values;
}

bool TakeFlag(std::vector<std::string>& rest, const std::string& name) {
  bool found = false;
  std::vector<std::string> kept;
  for (const auto& a : rest) {
    if (a == name) {
      found = true;
    } else {
      kept.push_back(a);
    }
  }
  rest = kept;
  return found;
}

// Run as root (sudo), the admin commands and `check` become the owner of
// tokens_dir first, with the groups the service runs with (systemd unit:
// Group= the directory's group, www-data; SupplementaryGroups= the owner's
// own group, which reads the masters file). So the files they write are the
// service's (nginx can read them), root does nothing on the volume the
// service could not, and `check` judges access as the service would.
// `owner` is tokens_dir's stat; false (said on stderr) when a switch failed.
bool BecomeOwnerOf(const std::string& cmd, const std::string& tokens_dir, const struct stat& owner) {
  std::vector<gid_t> groups{owner.st_gid};
  if (const struct passwd* pw = ::getpwuid(owner.st_uid); pw != nullptr && pw->pw_gid != owner.st_gid) {
    groups.push_back(pw->pw_gid);
  }
  if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(owner.st_gid) != 0 ||
      ::setuid(owner.st_uid) != 0) {
    std::cerr << "artifact-token " << cmd << ": cannot switch to the owner of " << tokens_dir << ": "
              << std::strerror(errno) << "\n";
    return false;
  }
  return true;
}

bool DropToStoreOwner(const std::string& cmd, const std::string& tokens_dir) {
  if (::geteuid() != 0) return true;
  struct stat st{};
  if (::stat(tokens_dir.c_str(), &st) != 0 || st.st_uid == 0) return true;
  return BecomeOwnerOf(cmd, tokens_dir, st);
}

// The shared environment of the admin commands: same files, no HTTP.
struct Admin {
  LoadedConfig loaded;
  SystemClock clock;
  OpenSslRandom random;
  std::unique_ptr<TokenStore> store;
  std::unique_ptr<Builds> builds;
  EventLog log{std::cerr, StderrIsJournal()};
  std::unique_ptr<artifact::Sealer> sealer;

  bool Init(const std::string& cmd, const std::vector<std::string>& args) {
    if (!Load(cmd, args, &loaded)) return false;
    if (!DropToStoreOwner(cmd, loaded.config.tokens_dir)) return false;
    store = std::make_unique<TokenStore>(loaded.config.tokens_dir, clock, random);
    builds = std::make_unique<Builds>(loaded.config.artifacts_dir, clock);
    return true;
  }

  // Seals `token`'s builds within this command (no background thread),
  // logging like serve does; prints one line per build. True when sealed.
  bool Seal(const TokenInfo& token, BuildResult result) { return Report(Sealer().Seal(token, result)); }

  // A sealer that logs to stderr (the journal under systemd).
  artifact::Sealer& Sealer() {
    if (!sealer) sealer = std::make_unique<artifact::Sealer>(*store, *builds, clock, log, nullptr);
    return *sealer;
  }

  // Prints a finished seal; false when it failed.
  bool Report(const SealStatus& status) {
    const BuildResult result = status.result;
    if (status.state != "done") {
      std::cerr << ErrorPrefix() << "artifact-token: sealing failed: " << status.error << "\n";
      return false;
    }
    for (const auto& s : status.scopes) {
      std::cout << "sealed " << s.scope << ": " << s.report.files << " files, " << s.report.bytes
                << " bytes, result " << BuildResultName(result)
                << (s.report.mismatches.empty() ? "" : ", " + std::to_string(s.report.mismatches.size()) +
                                                           " checksum mismatches")
                << "\n";
    }
    return true;
  }
};

// The --result option of revoke and seal: `fallback` when absent.
std::optional<BuildResult> TakeResult(std::vector<std::string>& rest, BuildResult fallback, bool* bad) {
  bool missing = false;
  auto values = TakeOption(rest, "--result", &missing);
  if (missing || values.size() > 1) {
    *bad = true;
    return std::nullopt;
  }
  if (values.empty()) return fallback;
  auto r = ParseBuildResult(values[0]);
  if (!r) *bad = true;
  return r;
}



}  // namespace

std::string ProgramUsage() {
  return "Usage: artifact-token COMMAND [OPTIONS]\n"
         "\n"
         "Issues and revokes the ephemeral upload tokens of an artifact repository.\n"
         "\n"
         "Commands:\n"
         "  serve       the FastCGI application behind nginx's /token (started by spawn-fcgi)\n"
         "  issue       issue a token without HTTP (prints its password once)\n"
         "  revoke      revoke tokens by username\n"
         "  list        list live tokens (a table, or --json)\n"
         "  prune       remove expired tokens and files left by a crash\n"
         "  seal        seal builds whose token is gone without a seal\n"
         "  retention   delete old builds the retention rules no longer keep\n"
         "  check       validate the configuration, directories and masters file\n"
         "  nginx-map   print the nginx map that selects a request's scope file\n"
         "\n"
         "Run 'artifact-token COMMAND --help' for a command's options.\n";
}

int RunServe(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::cout << "Usage: spawn-fcgi -s SOCKET -n -- artifact-token serve [OPTIONS]\n\n"
                 "Answers /token requests on the FastCGI socket passed as file descriptor 0, and\n"
                 "removes each expired token within a second of its expiry. Runs `processes`\n"
                 "copies of itself on that socket (default 4) and stops them all when one ends.\n"
                 "Logs one line per issue, revoke, renew, expiry and refusal to standard error;\n"
                 "never a secret.\n\n"
              << ConfigHelp();
    return 0;
  }
  LoadedConfig loaded;
  if (!Load("serve", args, &loaded)) return 2;
  if (!loaded.rest.empty()) return Usage("serve", "unexpected argument " + loaded.rest.front());
  const Config& config = loaded.config;
  if (!FastCgiSocketOnStdin()) return 2;
  // Made before the fork, so every serve process adds to the same counters.
  auto metrics = Metrics::Open(/*shared=*/config.processes > 1);
  if (!metrics) {
    std::cerr << "artifact-token serve: " << metrics.error().message << "\n";
    return 1;
  }
  std::unique_ptr<Metrics> owned(metrics.value());
  if (config.processes == 1) return ServeProcess(config, 0, owned.get());
  return RunProcesses(
      config.processes, [&config, &owned](int index) { return ServeProcess(config, index, owned.get()); }, std::cerr);
}

int RunIssue(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::cout << "Usage: artifact-token issue --scope SCOPE [--scope SCOPE...] [--ttl SECONDS]\n"
                 "                            [--request-id ID] [--master NAME] [--reopen] [OPTIONS]\n\n"
                 "Issues a token on the token store directly, without HTTP, as the API does, and\n"
                 "prints it as JSON (the password is shown this once). --master (default 'admin')\n"
                 "is recorded as the issuer: that master can then see and revoke the token.\n"
                 "--request-id makes the issue repeatable: the token's name follows from the\n"
                 "master and the id, and issuing again with both while the token lives (same\n"
                 "scopes) replaces its password instead of answering that the scope is taken.\n"
                 "A running `serve` expires it on its next sweep; `prune` does too.\n\n"
              << ConfigHelp();
    return 0;
  }
  Admin admin;
  if (!admin.Init("issue", args)) return 2;
  auto& rest = admin.loaded.rest;
  bool missing = false;
  auto scopes = TakeOption(rest, "--scope", &missing);
  auto ttls = TakeOption(rest, "--ttl", &missing);
  auto request_ids = TakeOption(rest, "--request-id", &missing);
  auto masters = TakeOption(rest, "--master", &missing);
  bool reopen = TakeFlag(rest, "--reopen");
  if (missing) return Usage("issue", "an option needs a value");
  if (!rest.empty()) return Usage("issue", "unexpected argument " + rest.front());
  if (scopes.empty()) return Usage("issue", "--scope is required");
  if (ttls.size() > 1 || request_ids.size() > 1 || masters.size() > 1) {
    return Usage("issue", "--ttl, --request-id and --master may be given once");
  }
  const Config& config = admin.loaded.config;
  IssueRequest req;
  req.master = masters.empty() ? "admin" : masters[0];
  if (!request_ids.empty()) req.request_id = request_ids[0];
  if (req.request_id && !IsValidRequestId(*req.request_id)) {
    return Usage("issue", "--request-id must match [A-Za-z0-9_][A-Za-z0-9._-]{0,127}");
  }
  req.reopen = reopen;
  req.ttl = config.default_ttl;
  if (!ttls.empty()) {
    const std::string& t = ttls[0];
    auto ttl = ParseDigits(t, 10);
    if (!ttl || *ttl <= 0) return Usage("issue", "--ttl must be a positive number of seconds");
    req.ttl = *ttl;
  }
  req.ttl = std::min(req.ttl, config.max_ttl);
  req.max_ttl = config.max_ttl;
  for (const auto& text : scopes) {
    auto scope = Scope::Parse(text, config.scope_depth);
    if (!scope) return Usage("issue", "scope " + text + ": " + scope.error().message);
    req.scopes.push_back(scope.value());
  }
  auto token = IssueToken(*admin.store, *admin.builds, req);
  if (!token) {
    std::cerr << "artifact-token issue: " << token.error().message << "\n";
    return 1;
  }
  Poco::JSON::Object obj = TokenJson(token->info, admin.clock.Now());
  obj.set("password", token->password);
  std::cout << ToJson(obj) << "\n";
  return 0;
}

int RunRevoke(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::cout << "Usage: artifact-token revoke USERNAME... [--result success|failure|expired] [--no-seal]\n"
                 "                            [OPTIONS]\n\n"
                 "Revokes tokens of any master at once: removes every scope file and the record,\n"
                 "then seals the token's builds with --result (default failure: never latest),\n"
                 "unless --no-seal. Exit 0 when all were revoked and sealed, 1 otherwise.\n\n"
              << ConfigHelp();
    return 0;
  }
  Admin admin;
  if (!admin.Init("revoke", args)) return 2;
  bool bad = false;
  const bool no_seal = TakeFlag(admin.loaded.rest, "--no-seal");
  const auto result = TakeResult(admin.loaded.rest, BuildResult::kFailure, &bad);
  if (bad) return Usage("revoke", "--result is success, failure or expired");
  if (admin.loaded.rest.empty()) return Usage("revoke", "name at least one token username");
  int rc = 0;
  for (const auto& name : admin.loaded.rest) {
    auto st = admin.store->Revoke(name);  // any master's
    if (st) {
      std::cout << "revoked " << name << "\n";
      if (!no_seal && !admin.Seal(st.value(), *result)) rc = 1;
    } else {
      std::cerr << "artifact-token revoke: " << name << ": " << st.error().message << "\n";
      rc = 1;
    }
  }
  return rc;
}

int RunList(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::cout << "Usage: artifact-token list [--json] [OPTIONS]\n\n"
                 "Lists the live tokens of every master, without secrets: a table for people, or\n"
                 "with --json an object {\"tokens\": [...]} for scripts.\n\n"
              << ConfigHelp();
    return 0;
  }
  Admin admin;
  if (!admin.Init("list", args)) return 2;
  bool json = TakeFlag(admin.loaded.rest, "--json");
  if (!admin.loaded.rest.empty()) return Usage("list", "unexpected argument " + admin.loaded.rest.front());
  auto tokens = admin.store->List();
  if (!tokens) {
    std::cerr << "artifact-token list: " << tokens.error().message << "\n";
    return 1;
  }
  std::sort(tokens->begin(), tokens->end(),
            [](const TokenInfo& a, const TokenInfo& b) { return a.expires < b.expires; });
  if (json) {
    Poco::JSON::Array list;
    for (const auto& t : tokens.value()) list.add(TokenJson(t, admin.clock.Now()));
    Poco::JSON::Object obj;
    obj.set("tokens", list);
    std::cout << ToJson(obj) << "\n";
    return 0;
  }
  std::cout << std::left << std::setw(24) << "USERNAME" << std::setw(16) << "MASTER" << std::setw(22) << "EXPIRES"
            << "SCOPES\n";
  for (const auto& t : tokens.value()) {
    std::cout << std::setw(24) << t.username << std::setw(16) << t.issued_by << std::setw(22) << Rfc3339(t.expires)
              << JoinScopes(t.scopes) << "\n";
  }
  return 0;
}

// A tree upload staged and left this long by a crash is removed by prune.
constexpr int64_t kStaleUploadSeconds = 3600;

int RunPrune(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::cout << "Usage: artifact-token prune [--stale-after SECONDS] [OPTIONS]\n\n"
                 "Removes expired tokens, temp files older than --stale-after (default 60 s; younger\n"
                 "ones may be a write in flight) left by a crash, scope files without a matching\n"
                 "record, unreadable records, and tree uploads a crash left staged beside their\n"
                 "builds over an hour ago. Prints one line per removal; exit 0 also when\n"
                 "there was nothing to do. Safe while `serve` runs. Run every minute by\n"
                 "artifact-token-prune.timer.\n\n"
              << ConfigHelp();
    return 0;
  }
  Admin admin;
  if (!admin.Init("prune", args)) return 2;
  bool missing = false;
  auto stale = TakeOption(admin.loaded.rest, "--stale-after", &missing);
  if (missing || stale.size() > 1) return Usage("prune", "--stale-after needs one value");
  if (!admin.loaded.rest.empty()) return Usage("prune", "unexpected argument " + admin.loaded.rest.front());
  int64_t stale_after = 60;
  if (!stale.empty()) {
    auto seconds = ParseDigits(stale[0], 9);
    if (!seconds) return Usage("prune", "--stale-after must be a number of seconds");
    stale_after = *seconds;
  }
  std::vector<TokenInfo> expired;
  auto removed = admin.store->Prune(stale_after, &expired);
  if (!removed) {
    std::cerr << ErrorPrefix() << "artifact-token prune: " << removed.error().message << "\n";
    return 1;
  }
  // Tree uploads a crash left staged beside their builds (build_tree.h).
  const int depth = admin.loaded.config.scope_depth;
  std::vector<std::string> builders = depth > 1 ? admin.builds->Builders(depth) : std::vector<std::string>{""};
  for (const auto& builder : builders) {
    std::vector<std::string> staged;
    auto st = StagedTree::RemoveStale(admin.loaded.config.artifacts_dir, builder, admin.clock.Now(),
                                      kStaleUploadSeconds, &staged);
    if (!st) std::cerr << ErrorPrefix() << "artifact-token prune: " << st.error().message << "\n";
    for (const auto& path : staged) removed->push_back("staged upload " + path);
  }
  for (const auto& line : removed.value()) std::cout << "removed " << line << "\n";
  if (removed->empty()) std::cout << "nothing to prune\n";
  // Expired builds end sealed, with result `expired`, as under serve.
  int rc = 0;
  for (const auto& t : expired) {
    if (!admin.Seal(t, BuildResult::kExpired)) rc = 1;
  }
  return rc;
}

int RunSeal(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::cout << "Usage: artifact-token seal SCOPE... [--result success|failure|expired] [OPTIONS]\n\n"
                 "Seals builds that have no live token and were never sealed (their master vanished,\n"
                 "or a crash came between a revoke and its seal): makes them read-only, writes\n"
                 "SHA256SUMS and the build's record. --result defaults to failure (never latest);\n"
                 "success makes the build latest when it is the newest. A build that is sealed\n"
                 "already is left as it is. Exit 0 when every build is sealed, 1 otherwise.\n"
                 "Masters do the same with POST /token/seal/SCOPE?result=...\n\n"
              << ConfigHelp();
    return 0;
  }
  Admin admin;
  if (!admin.Init("seal", args)) return 2;
  bool bad = false;
  const auto result = TakeResult(admin.loaded.rest, BuildResult::kFailure, &bad);
  if (bad) return Usage("seal", "--result is success, failure or expired");
  if (admin.loaded.rest.empty()) return Usage("seal", "name at least one build scope");
  int rc = 0;
  for (const auto& text : admin.loaded.rest) {
    auto scope = Scope::Parse(text, admin.loaded.config.scope_depth);
    if (!scope) return Usage("seal", "scope " + text + ": " + scope.error().message);
    auto sealed = admin.Sealer().SealBuild(text, "-", *result);
    if (!sealed) {
      std::cerr << ErrorPrefix() << "artifact-token seal: " << sealed.error().message << "\n";
      rc = 1;
    } else if (!sealed->record_json.empty()) {
      std::cout << "sealed already: " << text << "\n";
    } else if (!admin.Report(sealed->status)) {
      rc = 1;
    }
  }
  return rc;
}

int RunRetention(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::cout << "Usage: artifact-token retention [--dry-run] [OPTIONS]\n\n"
                 "Deletes published builds the `retention` rules no longer keep. Per builder the rule\n"
                 "with the longest matching prefix applies: keep=N keeps the N newest builds,\n"
                 "days=D those younger than D days (either keeps a build when both are given).\n"
                 "Builds with a live token or a KEEP file are never deleted; builders without a\n"
                 "rule keep everything. --dry-run prints what would go and deletes nothing.\n"
                 "Run daily by artifact-token-retention.timer.\n\n"
              << ConfigHelp();
    return 0;
  }
  Admin admin;
  if (!admin.Init("retention", args)) return 2;
  bool dry_run = TakeFlag(admin.loaded.rest, "--dry-run");
  if (!admin.loaded.rest.empty()) return Usage("retention", "unexpected argument " + admin.loaded.rest.front());
  const Config& c = admin.loaded.config;
  auto rules = ParseRetention(c.retention);
  if (!rules) return Usage("retention", "retention: " + rules.error().message);
  if (rules->empty()) {
    std::cout << "no retention rules configured: every build is kept\n";
    return 0;
  }
  const TokenStore& store = *admin.store;
  auto report = ApplyRetention(*admin.builds, c.scope_depth, rules.value(), admin.clock.Now(), dry_run,
                               [&store](const std::string& scope) { return store.HoldsScope(scope); });
  if (!report) {
    std::cerr << ErrorPrefix() << "artifact-token retention: " << report.error().message << "\n";
    return 1;
  }
  for (const auto& scope : report->removed) std::cout << (dry_run ? "would remove " : "removed ") << scope << "\n";
  std::cout << (dry_run ? "would remove " : "removed ") << report->removed.size() << " of " << report->builds
            << " builds in " << report->builders << " builders\n";
  for (const auto& why : report->failed) {
    std::cerr << ErrorPrefix() << "artifact-token retention: could not remove " << why << "\n";
  }
  return report->failed.empty() ? 0 : 1;
}

int RunCheck(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::cout << "Usage: artifact-token check [OPTIONS]\n\n"
                 "Validates the configuration, that the tokens and artifacts directories exist\n"
                 "with safe owners and modes and are writable, and that the masters file is\n"
                 "readable and parses. Run as root, it judges as the service would: as the owner\n"
                 "of tokens_dir with the service's groups (the other admin commands act as that\n"
                 "user too). Prints one line per problem and exits 1 when there is any, 0 when\n"
                 "all is well.\n\n"
              << ConfigHelp();
    return 0;
  }
  LoadedConfig loaded;
  if (!Load("check", args, &loaded)) return 1;
  if (!loaded.rest.empty()) return Usage("check", "unexpected argument " + loaded.rest.front());
  const Config& c = loaded.config;
  std::vector<std::string> problems;
  auto warn = [](const std::string& text) {
    std::cerr << ErrorPrefix(Priority::kWarning) << "warning: " << text << "\n";
  };
  // Run as root, access is judged as the owner of tokens_dir with the
  // service's groups (DropToStoreOwner), or not at all: root passes every
  // access() test. An owner this host does not know is a restore from
  // another host that kept its uids.
  bool judge_access = true;
  if (struct stat owner{}; ::geteuid() == 0) {
    const char* skipped = " (the access checks wait for this)";
    if (::stat(c.tokens_dir.c_str(), &owner) != 0) {
      judge_access = false;  // the stat below names the problem
    } else if (owner.st_uid == 0) {
      problems.push_back("tokens_dir " + c.tokens_dir +
                         " belongs to root: the service runs as its own user (the package's is artifact-token); "
                         "chown the two volumes to it" + skipped);
      judge_access = false;
    } else if (::getpwuid(owner.st_uid) == nullptr) {
      problems.push_back("tokens_dir " + c.tokens_dir + " belongs to uid " + std::to_string(owner.st_uid) +
                         ", no user of this host (restored from another host?): chown -R the two volumes to "
                         "the service's user" + skipped);
      judge_access = false;
    } else if (!BecomeOwnerOf("check", c.tokens_dir, owner)) {
      return 1;
    }
  }
  const uid_t me = ::geteuid();
  const std::string user = [me] {
    const struct passwd* pw = ::getpwuid(me);
    return pw != nullptr ? std::string(pw->pw_name) : "uid " + std::to_string(me);
  }();
  auto stat_of = [&](const std::string& what, const std::string& path, struct stat* st) {
    if (::stat(path.c_str(), st) != 0) {
      problems.push_back(what + " " + path + ": " + std::strerror(errno));
      return false;
    }
    return true;
  };
  struct stat st{};
  std::optional<struct stat> tokens_st;
  if (stat_of("tokens_dir", c.tokens_dir, &st)) {
    tokens_st = st;
    if (!S_ISDIR(st.st_mode)) problems.push_back("tokens_dir " + c.tokens_dir + " is not a directory");
    if ((st.st_mode & 0007) != 0) {
      problems.push_back("tokens_dir " + c.tokens_dir + " is accessible to others (mode " +
                         std::to_string(st.st_mode & 0777) + " octal " + [&] {
                           char b[8];
                           std::snprintf(b, sizeof b, "%04o", st.st_mode & 07777);
                           return std::string(b);
                         }() + "): chmod o-rwx it, tokens are secrets");
    }
    if (st.st_uid != me && me != 0) problems.push_back("tokens_dir " + c.tokens_dir + " is not owned by " + user);
    if (judge_access && ::access(c.tokens_dir.c_str(), W_OK | X_OK) != 0) {
      problems.push_back("tokens_dir " + c.tokens_dir + " is not writable by " + user);
    }
    // Every issue reserves its token's name here; a restore that kept
    // another host's owners leaves it unwritable (docs/operations.md).
    const std::string names = c.tokens_dir + "/.names";
    if (judge_access && ::access(names.c_str(), F_OK) == 0 && ::access(names.c_str(), W_OK | X_OK) != 0) {
      problems.push_back(names + " is not writable by " + user + ": no token can be issued");
    }
  }
  if (stat_of("artifacts_dir", c.artifacts_dir, &st)) {
    if (!S_ISDIR(st.st_mode)) problems.push_back("artifacts_dir " + c.artifacts_dir + " is not a directory");
    if ((st.st_mode & 0002) != 0) {
      problems.push_back("artifacts_dir " + c.artifacts_dir + " is writable by everyone: chmod o-w it");
    }
    if (judge_access && ::access(c.artifacts_dir.c_str(), W_OK | X_OK) != 0) {
      problems.push_back("artifacts_dir " + c.artifacts_dir + " is not writable by " + user +
                         ": issuing creates the build directories in it");
    }
    // Usually one user owns both volumes and nginx's workers reach both
    // through one group (the package: artifact-token:www-data). Another
    // layout can work (access is judged above), so it is a warning, not a
    // problem that would keep the service from starting; it names what a
    // restore with another host's owners leaves behind.
    if (tokens_st && tokens_st->st_uid != st.st_uid) {
      warn("tokens_dir and artifacts_dir belong to different users (uid " + std::to_string(tokens_st->st_uid) +
           " and " + std::to_string(st.st_uid) + "): the service's user usually owns both");
    }
    if (tokens_st && tokens_st->st_gid != st.st_gid) {
      warn("tokens_dir and artifacts_dir have different groups (gid " + std::to_string(tokens_st->st_gid) +
           " and " + std::to_string(st.st_gid) + "): nginx's workers usually reach both through one");
    }
  }
  if (stat_of("masters_file", c.masters_file, &st)) {
    if ((st.st_mode & 0007) != 0) {
      problems.push_back("masters_file " + c.masters_file + " is accessible to others: chmod o-rwx it");
    }
    if ((st.st_mode & 0022) != 0) {
      problems.push_back("masters_file " + c.masters_file + " is writable by group or others: chmod go-w it");
    }
    auto text = ReadSmallFile(c.masters_file, 1 << 20, /*follow_symlinks=*/true);
    if (!text) {
      problems.push_back("masters_file " + c.masters_file + ": " + text.error().message);
    } else {
      auto parsed = ParseMasters(text.value());
      for (const auto& p : parsed.problems) problems.push_back("masters_file " + c.masters_file + " " + p);
      // An empty file is a fresh install, not a fault: nobody can log in
      // (closed), and the service picks up a master as soon as one is added.
      if (parsed.entries.empty() && parsed.problems.empty()) {
        warn("masters_file " + c.masters_file + " has no master yet, so no token can be issued: add one with " +
             "htpasswd -B " + c.masters_file + " NAME");
      }
    }
  }
  // On stderr, so a unit that fails its check says why at error priority.
  for (const auto& p : problems) std::cerr << ErrorPrefix() << "problem: " << p << "\n";
  if (!problems.empty()) return 1;
  std::cout << "ok: as " << user << ", " << (loaded.path.empty() ? std::string("built-in defaults") : loaded.path)
            << ", scope_depth " << c.scope_depth << ", tokens in " << c.tokens_dir << ", artifacts in "
            << c.artifacts_dir << "\n";
  return 0;
}

int RunNginxMap(const std::vector<std::string>& args) {
  if (WantsHelp(args)) {
    std::cout << "Usage: artifact-token nginx-map [OPTIONS]\n\n"
                 "Prints the nginx `map`s that derive a write's password file and scope directory\n"
                 "from its URI, for the configured scope_depth, tokens_dir and artifacts_dir: the\n"
                 "one source of truth nginx and the app share. Include its output in nginx's\n"
                 "http context, and regenerate it whenever those keys change.\n\n"
              << ConfigHelp();
    return 0;
  }
  LoadedConfig loaded;
  if (!Load("nginx-map", args, &loaded)) return 2;
  if (!loaded.rest.empty()) return Usage("nginx-map", "unexpected argument " + loaded.rest.front());
  std::cout << NginxMapSnippet(loaded.config.scope_depth, loaded.config.tokens_dir, loaded.config.artifacts_dir);
  return 0;
}

}  // namespace artifact
