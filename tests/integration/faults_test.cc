// Faults: the app down, the masters file unreadable, a full disk. The
// promise: fail closed, lose nothing, keep serving what still works.
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <catch2/catch.hpp>
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <vector>

#include "integration/server_fixture.h"
#include "password_file.h"
#include "posix_file.h"

using artifact::testing::HttpResponse;
using artifact::testing::ServerOptions;
using artifact::testing::ParseObject;
using artifact::testing::Servers;

namespace {

HttpResponse IssueRaw(const Servers& s, const std::string& scope) { return s.IssueRaw(Servers::ScopeBody(scope)); }

std::pair<std::string, std::string> Credentials(const HttpResponse& r) {
  auto j = ParseObject(r.body);
  return {j->getValue<std::string>("username"), j->getValue<std::string>("password")};
}

// Every file below tokens/ is a whole, parseable password line, and no temp
// file is left behind. Returns the number of password files.
size_t CheckTokenTree(const Servers& s) {
  size_t files = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(s.tokens_dir())) {
    if (!e.is_regular_file() || !s.IsPasswordFile(e.path().string())) continue;
    INFO(e.path());
    CHECK(e.path().filename().string().rfind(artifact::kTempPrefix, 0) != 0);
    auto data = artifact::ReadSmallFile(e.path().string());
    REQUIRE(data);
    CHECK(artifact::PasswordLine::Parse(data.value()));
    ++files;
  }
  return files;
}

}  // namespace

TEST_CASE("with the app stopped, uploads go on through nginx and /token fails fast", "[integration][faults]") {
  ServerOptions opts;
  opts.via_run_script = false;
  Servers s(opts);
  auto issued = IssueRaw(s, "dpkg/p/linux/1");
  REQUIRE(issued.status == 201);
  auto [user, password] = Credentials(issued);

  s.KillApp(SIGTERM);
  CHECK(s.Put("/dpkg/p/linux/1/while-down", "x", user, password).status == 201);
  auto start = std::chrono::steady_clock::now();
  auto down = IssueRaw(s, "dpkg/p/linux/2");
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(down.status == 502);
  CHECK(took < std::chrono::seconds(1));

  // What needs the app fails with the API's JSON error, not nginx's page:
  // the issue, a PUT whose directory must be made, MKCOL, a tree upload.
  const std::map<std::string, std::string> auth = {{"Authorization", Servers::Basic(user, password)}};
  const std::map<std::string, std::string> tar = {{"Authorization", Servers::Basic(user, password)},
                                                  {"Content-Type", "application/x-tar"}};
  const std::vector<std::pair<HttpResponse, int>> failed = {
      {down, 502},
      {s.Put("/dpkg/p/linux/1/new-dir/file", "x", user, password), 500},  // its auth_request failed
      {s.Request("MKCOL", "/dpkg/p/linux/1/dir/", "", auth), 502},
      {s.Request("POST", "/dpkg/p/linux/1/", std::string(1024, '\0'), tar), 502},
  };
  for (const auto& [r, status] : failed) {
    INFO(r.status << " " << r.body);
    CHECK(r.status == status);
    CHECK(r.headers.at("content-type") == "application/json");
    auto json = ParseObject(r.body);
    CHECK(json->getValue<std::string>("error") == (status == 500 ? "server_error" : "token_service_down"));
    // Its own message, also after the auth_request's 502 page ran first.
    CHECK_THAT(json->getValue<std::string>("message"),
               Catch::Contains(status == 500 ? "could not complete" : "not answering"));
  }

  s.StartApp();
  CHECK(s.Put("/dpkg/p/linux/1/after", "x", user, password).status == 201);
  CHECK(IssueRaw(s, "dpkg/p/linux/2").status == 201);
}

TEST_CASE("an unreadable masters file is 503 for every master, with a clear log line", "[integration][faults]") {
  Servers s;
  const std::string masters = s.state_dir() + "/masters";
  REQUIRE(IssueRaw(s, "dpkg/p/linux/1").status == 201);
  ::chmod(masters.c_str(), 0000);
  auto r = IssueRaw(s, "dpkg/p/linux/2");
  CHECK(r.status == 503);
  CHECK(r.body.find(masters) == std::string::npos);  // details go to the log only
  CHECK(s.WaitForAppLog("masters file unusable, refusing every master"));
  ::chmod(masters.c_str(), 0640);
  CHECK(IssueRaw(s, "dpkg/p/linux/2").status == 201);
}

TEST_CASE("a full tokens volume answers 507, writes nothing half and keeps live tokens", "[integration][faults]") {
  ServerOptions opts;
  opts.tokens_tmpfs = "size=96k,mode=0750";
  Servers s(opts);
  auto first = IssueRaw(s, "dpkg/p/linux/0");
  REQUIRE(first.status == 201);
  auto [user, password] = Credentials(first);

  int issued = 1;
  HttpResponse r;
  for (int i = 1; i < 2000; ++i) {  // bounded: 96 KiB holds far fewer tokens
    r = IssueRaw(s, "dpkg/p/linux/" + std::to_string(i));
    if (r.status != 201) break;
    ++issued;
  }
  INFO("tokens issued before the disk was full: " << issued);
  REQUIRE(r.status == 507);
  CHECK(ParseObject(r.body)->getValue<std::string>("error") ==
        "insufficient_storage");
  // Each issued token is one inode with two names (record + scope file).
  CHECK(CheckTokenTree(s) == static_cast<size_t>(2 * issued));
  CHECK(s.Put("/dpkg/p/linux/0/still-works", "x", user, password).status == 201);
  // Room again after a revoke.
  CHECK(s.Request("DELETE", "/token/" + user + "?seal=false", "", {{"Authorization", s.MasterAuth()}}).status == 204);
  CHECK(IssueRaw(s, "dpkg/p/linux/9999").status == 201);  // the same builder: no new directories needed
}

TEST_CASE("a full artifacts volume answers 507 and rolls the token back", "[integration][faults]") {
  ServerOptions opts;
  opts.artifacts_tmpfs = "nr_inodes=24,mode=0755";
  Servers s(opts);
  HttpResponse r;
  int issued = 0;
  for (int i = 0; i < 100; ++i) {  // each new project costs directories (inodes)
    r = IssueRaw(s, "dpkg/p" + std::to_string(i) + "/linux/1");
    if (r.status != 201) break;
    ++issued;
  }
  INFO("tokens issued before the volume was full: " << issued);
  REQUIRE(r.status == 507);
  CHECK(CheckTokenTree(s) == static_cast<size_t>(2 * issued));
}

TEST_CASE("no app process maps a file of either volume, so a volume's I/O error cannot be SIGBUS",
          "[integration][faults]") {
  // Found on GlusterFS: the app kept its metrics in a file on the tokens
  // volume, memory-mapped; a FUSE error killed it with SIGBUS, and nodes of
  // one host name shared the file. A mapping of a volume's file is the only
  // way a volume's error becomes a signal instead of an errno.
  ServerOptions opts;
  opts.via_run_script = false;
  opts.app_processes = 2;
  Servers s(opts);
  auto issued = IssueRaw(s, "dpkg/p/linux/1");
  REQUIRE(issued.status == 201);
  REQUIRE(s.Get("/token/metrics").status == 200);
  std::vector<pid_t> pids{s.app_pid()};
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream stat(e.path() / "stat");
    std::string line;
    std::getline(stat, line);
    auto close = line.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(line.substr(close + 2));
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (ppid == s.app_pid()) pids.push_back(static_cast<pid_t>(std::stol(name)));
  }
  REQUIRE(pids.size() == 3);  // the supervisor and its two serve processes
  for (pid_t pid : pids) {
    std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
    REQUIRE(maps);
    size_t lines = 0;
    for (std::string line; std::getline(maps, line); ++lines) {
      INFO("pid " << pid << ": " << line);
      CHECK(line.find(s.tokens_dir()) == std::string::npos);
      CHECK(line.find(s.artifacts_dir()) == std::string::npos);
    }
    CHECK(lines > 0);
  }
}
