// Expiry, renewal and the admin commands on real nginx + spawn-fcgi.
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <catch2/catch.hpp>
#include <sys/stat.h>
#include <pwd.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "integration/server_fixture.h"

using artifact::testing::ParseObject;
using artifact::testing::Servers;
using Clock = std::chrono::system_clock;

namespace {

struct Token {
  std::string username, password;
  Clock::time_point expires;
};

Token Issue(const Servers& s, const std::string& scope, int ttl) {
  auto issued = s.Issue(Servers::ScopeBody(scope, ttl));
  Token t{issued.username, issued.password, {}};
  // expires_in counts whole seconds from the second of issue.
  auto now = Clock::now();
  t.expires = std::chrono::time_point_cast<std::chrono::seconds>(now) + std::chrono::seconds(issued.json->getValue<int>("expires_in"));
  return t;
}

// Waits for wall-clock time to pass: the subject of these tests is time.
void WaitUntil(Clock::time_point t) {
  while (Clock::now() < t) std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

}  // namespace

TEST_CASE("an expired token is refused by nginx within 1 s, with no revoke call", "[integration][expiry]") {
  Servers s;
  Token t = Issue(s, "dpkg/p/linux/1", 2);
  CHECK(s.Put("/dpkg/p/linux/1/before", "x", t.username, t.password).status == 201);
  // Poll uploads (bounded: 5 s past expiry) until the first refusal.
  Clock::time_point refused{};
  const auto deadline = t.expires + std::chrono::seconds(5);
  int i = 0;
  while (Clock::now() < deadline) {
    int status = s.Put("/dpkg/p/linux/1/f" + std::to_string(i++), "x", t.username, t.password).status;
    if (status != 201) {
      CHECK(status == 403);
      refused = Clock::now();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  REQUIRE(refused != Clock::time_point{});
  CHECK(refused - t.expires <= std::chrono::milliseconds(1000));
  CHECK_FALSE(std::filesystem::exists(s.tokens_dir() + "/dpkg/p/linux/1.htpasswd"));
  CHECK(s.WaitForAppLog("expire master=ci username=" + t.username));
  // Not listed, not renewable.
  CHECK(s.Request("GET", "/token/" + t.username, "", {{"Authorization", s.MasterAuth()}}).status == 404);
  CHECK(s.Request("POST", "/token/" + t.username + "/renew", R"({"ttl": 60})",
                  {{"Authorization", s.MasterAuth()}, {"Content-Type", "application/json"}})
            .status == 404);
}

TEST_CASE("renew keeps a token alive past its first expiry", "[integration][expiry]") {
  Servers s;
  Token t = Issue(s, "dpkg/p/linux/1", 2);
  auto r = s.Request("POST", "/token/" + t.username + "/renew", R"({"ttl": 30})",
                     {{"Authorization", s.MasterAuth()}, {"Content-Type", "application/json"}});
  REQUIRE(r.status == 200);
  WaitUntil(t.expires + std::chrono::milliseconds(1500));
  CHECK(s.Put("/dpkg/p/linux/1/late", "x", t.username, t.password).status == 201);
  CHECK(s.WaitForAppLog("renew master=ci username=" + t.username));
}

TEST_CASE("prune removes an expired token while serve is stopped", "[integration][expiry]") {
  Servers s;
  // Stopped first, and the tokens issued without HTTP: no serve process can
  // race prune to the expiry (under ASan a stop can take longer than a ttl).
  REQUIRE(s.Stop());
  auto issued = s.Cli("issue --scope dpkg/p/linux/1 --ttl 1 --master ci");
  REQUIRE(issued.exit_code == 0);
  REQUIRE(s.Cli("issue --scope dpkg/p/linux/2 --ttl 600 --master ci").exit_code == 0);
  const auto username = ParseObject(issued.out)->getValue<std::string>("username");
  WaitUntil(Clock::now() + std::chrono::milliseconds(2100));  // ttl 1 s, counted in whole seconds
  REQUIRE(std::filesystem::exists(s.tokens_dir() + "/dpkg/p/linux/1.htpasswd"));
  auto r = s.Cli("prune");
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("removed expired token " + username) != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(s.tokens_dir() + "/dpkg/p/linux/1.htpasswd"));
  CHECK(std::filesystem::exists(s.tokens_dir() + "/dpkg/p/linux/2.htpasswd"));
  auto again = s.Cli("prune");
  CHECK(again.exit_code == 0);
  CHECK(again.out == "nothing to prune\n");
}

TEST_CASE("check catches a world-readable tokens directory and a broken masters line", "[integration][cli]") {
  Servers s;
  auto ok = s.Cli("check");
  INFO(ok.out);
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.rfind("ok: ", 0) == 0);

  ::chmod(s.tokens_dir().c_str(), 0755);
  auto open = s.Cli("check");
  CHECK(open.exit_code == 1);
  CHECK(open.out.find("problem: tokens_dir " + s.tokens_dir() + " is accessible to others") != std::string::npos);
  ::chmod(s.tokens_dir().c_str(), 0750);

  std::ofstream(s.state_dir() + "/masters", std::ios::app) << "broken-line-without-hash\n";
  auto broken = s.Cli("check");
  CHECK(broken.exit_code == 1);
  CHECK(broken.out.find("problem: masters_file " + s.state_dir() + "/masters line 2:") != std::string::npos);

  auto bad_config = s.Cli("check --scope-depth 0");
  CHECK(bad_config.exit_code != 0);
  CHECK(bad_config.out.find("scope_depth") != std::string::npos);
}

// docs/operations.md: a restore that kept another host's owners is what
// `check` (run as root after the restore) names. As root it must judge as the
// service, or root's own access would pass anything.
TEST_CASE("check run as root judges access as the owner of the store", "[integration][cli]") {
  // The tests run as root (they start nginx with a run user); this case is
  // about root, so it fails rather than pass without testing anything.
  REQUIRE(::geteuid() == 0);
  Servers s;
  struct stat owner{};
  REQUIRE(::stat(s.tokens_dir().c_str(), &owner) == 0);
  REQUIRE(owner.st_uid != 0);  // prepare-state.sh gives the volumes to the run user
  auto ok = s.Cli("check");
  INFO(ok.out);
  REQUIRE(ok.exit_code == 0);

  const uid_t stranger = 54321;  // a uid of the old host, no user of this one
  REQUIRE(::getpwuid(stranger) == nullptr);
  const std::string names = s.tokens_dir() + "/.names";
  std::filesystem::create_directories(names);
  REQUIRE(::chown(names.c_str(), stranger, stranger) == 0);
  ::chmod(names.c_str(), 0755);
  auto restored = s.Cli("check");
  INFO(restored.out);
  CHECK(restored.exit_code == 1);
  CHECK(restored.out.find("problem: " + names + " is not writable by") != std::string::npos);
  REQUIRE(::chown(names.c_str(), owner.st_uid, owner.st_gid) == 0);

  REQUIRE(::chown(s.artifacts_dir().c_str(), stranger, stranger) == 0);
  auto artifacts = s.Cli("check");
  INFO(artifacts.out);
  CHECK(artifacts.exit_code == 1);
  CHECK(artifacts.out.find("problem: artifacts_dir " + s.artifacts_dir() + " is not writable by") !=
        std::string::npos);
  CHECK(artifacts.out.find("warning: tokens_dir and artifacts_dir belong to different users") != std::string::npos);
  CHECK(artifacts.out.find("warning: tokens_dir and artifacts_dir have different groups") != std::string::npos);

  // Another layout that works (the service writes through the group) is a
  // warning only: check must not keep such a service from starting.
  struct stat art{};
  REQUIRE(::stat(s.artifacts_dir().c_str(), &art) == 0);
  REQUIRE(::chown(s.artifacts_dir().c_str(), 0, owner.st_gid) == 0);
  REQUIRE(::chmod(s.artifacts_dir().c_str(), 0775) == 0);
  auto split = s.Cli("check");
  INFO(split.out);
  CHECK(split.exit_code == 0);
  CHECK(split.out.find("warning: tokens_dir and artifacts_dir belong to different users") != std::string::npos);
  REQUIRE(::chmod(s.artifacts_dir().c_str(), art.st_mode & 07777) == 0);

  // The whole volume restored with the old host's uid: judged as that uid,
  // everything would look fine; the owner is what is wrong.
  REQUIRE(::chown(s.tokens_dir().c_str(), stranger, owner.st_gid) == 0);
  REQUIRE(::chown(s.artifacts_dir().c_str(), stranger, owner.st_gid) == 0);
  auto foreign = s.Cli("check");
  INFO(foreign.out);
  CHECK(foreign.exit_code == 1);
  CHECK(foreign.out.find("problem: tokens_dir " + s.tokens_dir() + " belongs to uid 54321, no user of this host") !=
        std::string::npos);
  REQUIRE(::chown(s.tokens_dir().c_str(), owner.st_uid, owner.st_gid) == 0);
  REQUIRE(::chown(s.artifacts_dir().c_str(), owner.st_uid, owner.st_gid) == 0);

  REQUIRE(::chown(s.tokens_dir().c_str(), 0, 0) == 0);
  auto rooted = s.Cli("check");
  INFO(rooted.out);
  CHECK(rooted.exit_code == 1);
  CHECK(rooted.out.find("problem: tokens_dir " + s.tokens_dir() + " belongs to root") != std::string::npos);
  REQUIRE(::chown(s.tokens_dir().c_str(), owner.st_uid, owner.st_gid) == 0);
}

TEST_CASE("issue, list and revoke from the command line act on the live store", "[integration][cli]") {
  Servers s;
  auto issued = s.Cli("issue --scope dpkg/p/linux/7 --ttl 600 --master ci");
  INFO(issued.out);
  REQUIRE(issued.exit_code == 0);
  auto j = ParseObject(issued.out);
  const auto user = j->getValue<std::string>("username");
  // Written as the service's user, so nginx reads it.
  CHECK(s.Put("/dpkg/p/linux/7/f", "x", user, j->getValue<std::string>("password")).status == 201);
  CHECK(s.Request("GET", "/token/" + user, "", {{"Authorization", s.MasterAuth()}}).status == 200);

  auto table = s.Cli("list");
  CHECK(table.exit_code == 0);
  CHECK(table.out.find(user) != std::string::npos);
  CHECK(table.out.find(j->getValue<std::string>("password")) == std::string::npos);
  auto json = s.Cli("list --json");
  CHECK(ParseObject(json.out)->getArray("tokens")->size() == 1);

  CHECK(s.Cli("issue --scope dpkg/p/linux/7").exit_code == 1);      // 409: live
  CHECK(s.Cli("issue --scope ../p/linux/7").exit_code == 2);        // invalid
  CHECK(s.Cli("issue").exit_code == 2);                             // no scope
  auto revoked = s.Cli("revoke " + user);
  CHECK(revoked.exit_code == 0);
  CHECK(s.Put("/dpkg/p/linux/7/g", "x", user, j->getValue<std::string>("password")).status == 403);
  CHECK(s.Cli("revoke " + user).exit_code == 1);
  for (const char* cmd : {"serve", "issue", "revoke", "list", "prune", "check", "nginx-map"}) {
    auto help = s.Cli(std::string(cmd) + " --help");
    CHECK(help.exit_code == 0);
    CHECK(help.out.find("Usage: ") != std::string::npos);
  }
}

TEST_CASE("several serve processes expire every token exactly once, within 1 s", "[integration][expiry]") {
  artifact::testing::ServerOptions opts;
  opts.app_processes = 4;
  Servers s(opts);
  std::vector<Token> tokens;
  for (int i = 0; i < 12; ++i) tokens.push_back(Issue(s, "dpkg/p/linux/" + std::to_string(i), 2));
  auto last = tokens.front().expires;
  for (const auto& t : tokens) last = std::max(last, t.expires);
  WaitUntil(last + std::chrono::milliseconds(1000));
  for (const auto& t : tokens) CHECK(s.WaitForAppLog("expire master=ci username=" + t.username + " "));
  const std::string log = s.AppLog();
  size_t started = 0;
  for (auto pos = log.find("artifact-token serve: tokens in"); pos != std::string::npos;
       pos = log.find("artifact-token serve: tokens in", pos + 1)) {
    ++started;
  }
  CHECK(started == 4);
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto& t = tokens[i];
    INFO(t.username);
    CHECK(s.Put("/dpkg/p/linux/" + std::to_string(i) + "/f", "x", t.username, t.password).status == 403);
    const std::string line = "expire master=ci username=" + t.username + " ";
    auto first = log.find(line);
    CHECK(first != std::string::npos);
    CHECK(log.find(line, first + 1) == std::string::npos);
  }
  CHECK(std::filesystem::is_empty(s.tokens_dir() + "/.by-user"));
}
