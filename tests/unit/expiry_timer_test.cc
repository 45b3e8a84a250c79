#include <catch2/catch.hpp>

#include <sstream>

#include "expiry_timer.h"
#include "unit/hooked_disk.h"
#include "unit/test_support.h"

using namespace artifact;
using namespace artifact::testing;

namespace {

struct TimerFixture {
  TempDir dir;
  FakeClock clock;
  CountingRandom random;
  TokenStore store{dir.Sub("tokens"), clock, random};
  std::ostringstream out;
  EventLog log{out};
  ExpiryTimer timer{store, clock, log};
};

}  // namespace

TEST_CASE_METHOD(TimerFixture, "the expiry timer removes tokens when they are due, and logs it", "[expiry]") {
  IssueRequest req;
  req.master = "ci";
  req.ttl = 2;
  req.scopes = {Scope::Parse("dpkg/p/linux/1", 4).value()};
  auto a = store.Issue(req);
  req.ttl = 10;
  req.scopes = {Scope::Parse("dpkg/p/linux/2", 4).value()};
  auto b = store.Issue(req);
  REQUIRE(a);
  REQUIRE(b);
  timer.Schedule(a->info.username, a->info.expires);
  timer.Schedule(b->info.username, b->info.expires);

  CHECK(timer.RunDue(false).empty());
  clock.Advance(2);
  auto expired = timer.RunDue(false);
  REQUIRE(expired.size() == 1);
  CHECK(expired[0].username == a->info.username);
  CHECK(out.str().find("expire master=ci username=" + a->info.username) != std::string::npos);

  // Renewed elsewhere: the due entry is re-read and rescheduled, not removed.
  REQUIRE(store.Renew(b->info.username, clock.Now() + 100));
  clock.Advance(8);
  CHECK(timer.RunDue(false).empty());
  CHECK(store.Get(b->info.username));
  clock.Advance(100);
  CHECK(timer.RunDue(false).size() == 1);
}

TEST_CASE_METHOD(TimerFixture, "a sweep finds tokens this process never scheduled", "[expiry]") {
  IssueRequest req;
  req.master = "ci";
  req.ttl = 1;
  req.scopes = {Scope::Parse("dpkg/p/linux/1", 4).value()};
  REQUIRE(store.Issue(req));
  clock.Advance(1);
  CHECK(timer.RunDue(false).empty());
  CHECK(timer.RunDue(true).size() == 1);
  CHECK(store.List()->empty());
}

TEST_CASE("a token scheduled while a sweep runs is not lost when the sweep ends", "[expiry]") {
  // Found on main: the sweep rebuilt the queue from what it had read, so a
  // token issued meanwhile waited for the next sweep (up to 60 s) instead of
  // expiring within a second.
  TempDir dir;
  FakeClock clock;
  CountingRandom random;
  HookedDisk disk;
  const std::string tokens = dir.Sub("tokens");
  TokenStore store{tokens, clock, random, disk};
  std::ostringstream out;
  EventLog log{out};
  ExpiryTimer timer{store, clock, log};
  IssueRequest req;
  req.master = "ci";
  req.ttl = 100;
  req.scopes = {Scope::Parse("dpkg/p/linux/1", 4).value()};
  auto old = store.Issue(req);
  REQUIRE(old);

  // While the sweep reads the old token's record (it has listed the records
  // already), a request issues a short-lived token and schedules it.
  std::string fresh;
  disk.before = [&](const std::string& op, const std::string& path) {
    if (!fresh.empty() || op != "read" || path != store.RecordPath(old->info.username)) return;
    IssueRequest r = req;
    r.ttl = 1;
    r.scopes = {Scope::Parse("dpkg/p/linux/2", 4).value()};
    auto t = store.Issue(r);
    REQUIRE(t);
    fresh = t->info.username;
    timer.Schedule(fresh, t->info.expires);
  };
  CHECK(timer.RunDue(true).empty());
  REQUIRE_FALSE(fresh.empty());
  disk.before = nullptr;

  clock.Advance(1);
  auto expired = timer.RunDue(false);  // no sweep: only the queue can know it
  REQUIRE(expired.size() == 1);
  CHECK(expired[0].username == fresh);
  CHECK_FALSE(store.Get(fresh));
  CHECK(store.Get(old->info.username));
}
