#include <catch2/catch.hpp>

#include <sstream>

#include "expiry_timer.h"
#include "unit/test_support.h"

using namespace artifact;
using namespace artifact::testing;

namespace {

struct TimerFixture {
  TempDir dir;
  FakeClock clock;
  CountingRandom random;
  TokenStore store{dir.Sub("tokens"), dir.Sub("artifacts"), clock, random};
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
