// Concurrency and crash safety on real servers: many clients and several
// app processes at once, and the app killed at random points.
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <catch2/catch.hpp>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "integration/server_fixture.h"
#include "password_file.h"
#include "posix_file.h"

using artifact::testing::HttpResponse;
using artifact::testing::ServerOptions;
using artifact::testing::ParseObject;
using artifact::testing::Servers;

namespace {

HttpResponse IssueRaw(const Servers& s, const std::string& scope, int ttl) {
  return s.IssueRaw(Servers::ScopeBody(scope, ttl));
}

struct Credentials {
  std::string user, password;
};

Credentials Parse(const HttpResponse& r) {
  auto j = ParseObject(r.body);
  return {j->getValue<std::string>("username"), j->getValue<std::string>("password")};
}

// The files below tokens/: every one a whole password line; returns how
// many there are and how many are temp files.
std::pair<size_t, size_t> TokenFiles(const Servers& s) {
  size_t files = 0, temps = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(s.tokens_dir())) {
    if (!e.is_regular_file() || !s.IsPasswordFile(e.path().string())) continue;
    ++files;
    if (e.path().filename().string().rfind(artifact::kTempPrefix, 0) == 0) {
      ++temps;  // a write in flight when the app died: never published
      continue;
    }
    INFO(e.path());
    auto data = artifact::ReadSmallFile(e.path().string());
    REQUIRE(data);
    CHECK(artifact::PasswordLine::Parse(data.value()));
  }
  return {files, temps};
}

}  // namespace

TEST_CASE("thousands of tokens issued, used and revoked at once by many clients", "[integration][stress]") {
  ServerOptions opts;
  opts.app_processes = 4;
  opts.token_rate = "100000r/s";
  opts.token_burst = 100000;
  Servers s(opts);
  s.AddMaster("stress", "stress-pw", "reopen=yes");

  constexpr int kClients = 6;
  constexpr int kRounds = 300;
  constexpr int kScopes = 12;  // few scopes: clients contend for them
  std::mutex mu;
  std::map<std::string, std::string> holders;  // scope -> username, while live
  std::atomic<int> issued{0}, conflicts{0}, violations{0};
  const std::string auth = Servers::Basic("stress", "stress-pw");

  auto client = [&](int id) {
    std::mt19937 rng(static_cast<unsigned>(id));
    for (int round = 0; round < kRounds; ++round) {
      const std::string scope = "dpkg/p/linux/" + std::to_string(rng() % kScopes);
      auto r = s.Request("POST", "/token", "{\"scope\": \"" + scope + "\", \"ttl\": 600, \"reopen\": true}",
                         {{"Authorization", auth}, {"Content-Type", "application/json"}});
      if (r.status == 409) {
        ++conflicts;
        continue;
      }
      if (r.status != 201) {
        ++violations;
        std::lock_guard<std::mutex> lock(mu);
        std::cerr << "issue answered " << r.status << ": " << r.body << "\n";
        continue;
      }
      ++issued;
      Credentials c = Parse(r);
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!holders.emplace(scope, c.user).second) ++violations;  // two live tokens for one scope
      }
      const std::string file = "/" + scope + "/c" + std::to_string(id) + "-" + std::to_string(round);
      if (auto put = s.Put(file, "data", c.user, c.password); put.status != 201) {  // worked until revoked
        ++violations;
        std::cerr << "upload with a live token answered " << put.status << "\n";
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        holders.erase(scope);
      }
      if (auto del = s.Request("DELETE", "/token/" + c.user, "", {{"Authorization", auth}}); del.status != 200) {
        ++violations;
        std::cerr << "revoke answered " << del.status << ": " << del.body << "\n";
      }
      // Refused after: 403 when the scope is free, 401 when another client
      // already holds it with a token of its own.
      if (auto late = s.Put(file + ".late", "late", c.user, c.password); late.status != 403 && late.status != 401) {
        ++violations;
        std::cerr << "upload after revoke answered " << late.status << "\n";
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) threads.emplace_back(client, i);
  for (auto& t : threads) t.join();

  std::cout << "FIGURE concurrency: " << kClients << " clients x " << kRounds << " attempts on " << kScopes
            << " scopes, 4 app processes: " << issued << " tokens issued, used and revoked, " << conflicts
            << " refused with 409, " << violations << " violations\n";
  CHECK(violations == 0);
  CHECK(issued > kScopes);
  CHECK(conflicts > 0);  // the clients really contended
  auto [files, temps] = TokenFiles(s);
  CHECK(files == 0);  // every token revoked: no orphan, no temp file
  CHECK(temps == 0);
}

TEST_CASE("the app killed at random points of issue and revoke leaves only whole files", "[integration][stress]") {
  ServerOptions opts;
  opts.via_run_script = false;
  opts.token_rate = "100000r/s";
  opts.token_burst = 100000;
  Servers s(opts);

  std::atomic<bool> stop{false};
  std::atomic<int> attempts{0}, issued{0};
  std::thread load([&] {
    int i = 0;
    // Bounded: stops when the kills are done, or after 20000 attempts.
    while (!stop && i < 20000) {
      ++i;
      ++attempts;
      try {
        auto r = IssueRaw(s, "dpkg/crash/linux/" + std::to_string(i % 50), 1);
        if (r.status == 201) {
          ++issued;
          s.Request("DELETE", "/token/" + Parse(r).user, "", {{"Authorization", s.MasterAuth()}});
        }
      } catch (const std::exception&) {
        // the app is down for a moment: go on
      }
    }
  });

  constexpr int kKills = 20;
  std::mt19937 rng(42);
  int kills = 0;
  for (; kills < kKills; ++kills) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 80));
    s.KillApp(SIGKILL);
    TokenFiles(s);  // every published file whole, right after the kill
    s.StartApp();
  }
  stop = true;
  load.join();

  // Whatever the kills left (tokens whose issue never answered, temp
  // files) expires within a second; prune then removes every leftover.
  std::this_thread::sleep_for(std::chrono::milliseconds(2100));
  REQUIRE(s.Stop());
  auto pruned = s.Cli("prune --stale-after 0");
  INFO(pruned.out);
  CHECK(pruned.exit_code == 0);
  auto [files, temps] = TokenFiles(s);
  CHECK(files == 0);
  size_t leftovers = 0;
  for (auto pos = pruned.out.find("removed "); pos != std::string::npos; pos = pruned.out.find("removed ", pos + 1)) {
    ++leftovers;
  }
  std::cout << "FIGURE crash: " << kills << " SIGKILLs survived during " << attempts << " issue attempts ("
            << issued << " issued); prune removed " << leftovers << " leftovers\n";
  CHECK(issued > kKills);
}
