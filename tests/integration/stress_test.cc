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
#include <fstream>
#include <future>
#include <iomanip>
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

TEST_CASE("two nodes of four processes on one volume: issue, renew, revoke, expire and seal mixed",
          "[integration][stress]") {
  // Issue 15: every operation on a token is safe against every other one,
  // across processes and nodes. Two nodes (nginx + 4 serve processes each,
  // the shipped default) share one tokens and one artifacts directory; every
  // request goes to a random node.
  ServerOptions opts;
  opts.app_processes = 4;
  opts.token_rate = "100000r/s";
  opts.token_burst = 100000;
  Servers first(opts);
  ServerOptions shared = opts;
  shared.shared_tokens_dir = first.tokens_dir();
  shared.shared_artifacts_dir = first.artifacts_dir();
  Servers second(shared);
  const std::vector<const Servers*> nodes = {&first, &second};
  for (const Servers* n : nodes) n->AddMaster("stress", "stress-pw", "reopen=yes");
  const std::map<std::string, std::string> auth = {{"Authorization", Servers::Basic("stress", "stress-pw")},
                                                   {"Content-Type", "application/json"}};

  constexpr int kClients = 8;
  constexpr int kTargetOps = 20000;
  constexpr int kHotScopes = 6;  // contended: clients race for them (409)
  constexpr int kBuilders = 3;   // each build new: seals and latest
  std::atomic<int> ops{0}, violations{0}, issued{0}, conflicts{0}, renewed{0}, revoked{0}, races{0}, sealed{0};
  std::atomic<int> next_build{1};
  std::mutex mu;
  std::map<std::string, std::string> holders;  // hot scope -> username, while live
  std::vector<Credentials> expiring;           // short-lived, never revoked
  std::map<std::string, bool> seals;           // build scope -> sealed as a success
  auto violation = [&](const std::string& what) {
    ++violations;
    std::lock_guard<std::mutex> lock(mu);
    std::cerr << "VIOLATION " << what << "\n";
  };

  auto client = [&](int id) {
    std::mt19937 rng(static_cast<unsigned>(7919 * id + 1));
    auto call = [&](const std::string& method, const std::string& target, const std::string& body = "",
                    const std::map<std::string, std::string>& headers = {}) {
      ++ops;
      return nodes[rng() % nodes.size()]->Request(method, target, body, headers);
    };
    auto refused_after = [&](const Credentials& c, const std::string& scope, const std::string& when) {
      if (auto late = call("PUT", "/" + scope + "/late", "late",
                           {{"Authorization", Servers::Basic(c.user, c.password)}});
          late.status != 403 && late.status != 401) {
        violation("upload " + when + " answered " + std::to_string(late.status));
      }
      if (auto get = call("GET", "/token/" + c.user, "", auth); get.status != 404) {
        violation("GET " + when + " answered " + std::to_string(get.status));
      }
    };
    while (ops < kTargetOps) {
      const auto kind = rng() % 10;
      const bool hot = kind < 3;            // 30 %: a contended scope, revoked unsealed
      const bool short_lived = kind == 3;   // 10 %: left to expire
      const std::string scope = hot ? "dpkg/stress/hot/" + std::to_string(rng() % kHotScopes)
                                    : "dpkg/stress/b" + std::to_string(rng() % kBuilders) + "/" +
                                          std::to_string(next_build++);
      auto r = call("POST", "/token",
                    "{\"scope\": \"" + scope + "\", \"ttl\": " + (short_lived ? "1" : "600") +
                        ", \"reopen\": true}",
                    auth);
      if (r.status == 409 && hot) {
        ++conflicts;
        continue;
      }
      if (r.status != 201) {
        violation("issue answered " + std::to_string(r.status) + ": " + r.body);
        continue;
      }
      ++issued;
      const Credentials c = Parse(r);
      if (hot) {
        std::lock_guard<std::mutex> lock(mu);
        if (!holders.emplace(scope, c.user).second) violation("two live tokens for " + scope);
      }
      const auto basic = Servers::Basic(c.user, c.password);
      auto put = call("PUT", "/" + scope + "/c" + std::to_string(id) + "-" + std::to_string(issued), "data",
                      {{"Authorization", basic}});
      if (short_lived) {  // may already have expired: its second can end right after the issue
        std::lock_guard<std::mutex> lock(mu);
        expiring.push_back(c);
        continue;
      }
      if (put.status != 201) violation("upload with a live token answered " + std::to_string(put.status));
      const auto next = rng() % 4;
      if (next == 0) {
        if (auto renew = call("POST", "/token/" + c.user + "/renew", "{\"ttl\": 900}", auth); renew.status == 200) {
          ++renewed;
        } else {
          violation("renew answered " + std::to_string(renew.status));
        }
      }
      if (hot) {
        std::lock_guard<std::mutex> lock(mu);
        holders.erase(scope);
      }
      const bool success = rng() % 3 != 0;
      const std::string query = hot ? "?seal=false" : success ? "?result=success" : "?result=failure";
      if (next == 1) {
        // A renew and a revoke at once, through different nodes: the revoke
        // must win for good (on main the renew could bring the token back).
        ++races;
        auto renew = std::async(std::launch::async, [&] {
          ++ops;
          return nodes[0]->Request("POST", "/token/" + c.user + "/renew", "{\"ttl\": 900}", auth);
        });
        ++ops;
        auto del = nodes[1]->Request("DELETE", "/token/" + c.user + query, "", auth);
        auto ren = renew.get();
        if (ren.status != 200 && ren.status != 404) violation("racing renew answered " + std::to_string(ren.status));
        if (del.status != (hot ? 204 : 200)) {
          violation("racing revoke answered " + std::to_string(del.status));
          continue;
        }
      } else if (auto del = call("DELETE", "/token/" + c.user + query, "", auth); del.status != (hot ? 204 : 200)) {
        violation("revoke answered " + std::to_string(del.status) + ": " + del.body);
        continue;
      }
      ++revoked;
      if (!hot) {
        ++sealed;
        std::lock_guard<std::mutex> lock(mu);
        seals[scope] = success;
      }
      refused_after(c, scope, "after revoke");
    }
  };
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int i = 0; i < kClients; ++i) threads.emplace_back(client, i);
  for (auto& t : threads) t.join();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  // Expired tokens are refused everywhere and their files go, without any
  // revoke: wait (bounded) for the tokens volume to hold no token file.
  auto token_files = [&] {
    size_t n = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(first.tokens_dir())) {
      const std::string path = e.path().string();
      if (e.is_regular_file() && (first.IsPasswordFile(path) || path.find("/.locks/") != std::string::npos)) ++n;
    }
    return n;
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (token_files() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(token_files() == 0);  // no orphan, temp or lock file; every expired token removed
  for (const auto& c : expiring) {
    for (const Servers* n : nodes) {
      if (n->Request("GET", "/token/" + c.user, "", auth).status != 404) violation("expired token still listed");
    }
  }

  // latest names, per builder, the newest build that sealed as a success:
  // the greatest creation stamp, whatever order the seals finished in.
  auto stamp = [&](const std::string& scope) {
    std::ifstream in(first.artifacts_dir() + "/" + scope + "/.created");
    long long ns = -1;
    in >> ns;
    return ns;
  };
  for (int b = 0; b < kBuilders; ++b) {
    const std::string builder = "dpkg/stress/b" + std::to_string(b);
    std::string newest;
    for (const auto& [scope, success] : seals) {
      if (!std::filesystem::exists(first.artifacts_dir() + "/" + scope + "/SHA256SUMS")) {
        violation("no SHA256SUMS in sealed " + scope);
      }
      if (success && scope.rfind(builder + "/", 0) == 0 && (newest.empty() || stamp(newest) < stamp(scope))) {
        newest = scope;
      }
    }
    if (newest.empty()) continue;
    std::ifstream in(first.artifacts_dir() + "/" + builder + "/.latest");
    std::string latest;
    std::getline(in, latest);
    if (builder + "/" + latest != newest) violation(builder + ": latest is " + latest + ", the newest is " + newest);
  }

  std::cout << "FIGURE concurrency: 2 nodes x 4 app processes on one volume, " << kClients << " clients, " << ops
            << " operations in " << std::fixed << std::setprecision(1) << seconds << " s: " << issued
            << " issued (" << expiring.size() << " left to expire), " << conflicts << " refused with 409, "
            << renewed << " renewed, " << races << " renew/revoke races, " << revoked << " revoked, " << sealed
            << " sealed; " << violations << " violations\n";
  CHECK(ops >= kTargetOps);
  CHECK(violations == 0);
  CHECK(conflicts > 0);  // the clients really contended
  CHECK(races > 0);
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
