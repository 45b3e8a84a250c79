#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>

#include "retention.h"
#include "unit/test_support.h"

using namespace artifact;
using artifact::testing::SetMtime;
using artifact::testing::TempDir;

TEST_CASE("retention rules parse and validate", "[retention]") {
  auto rules = ParseRetention(" dpkg/:keep=10,days=30 ; appimage/myproj:keep=5");
  REQUIRE(rules);
  REQUIRE(rules->size() == 2);
  CHECK(rules->at(0).prefix == "dpkg/");
  CHECK(*rules->at(0).keep == 10);
  CHECK(*rules->at(0).days == 30);
  CHECK(rules->at(1).prefix == "appimage/myproj/");
  CHECK_FALSE(rules->at(1).days);
  CHECK(ParseRetention("")->empty());
  for (const char* bad : {"dpkg/", "dpkg/:", "dpkg/:keep=x", "dpkg/:keep=-1", "dpkg/:color=3", "../x/:keep=1",
                          "dpkg/:keep=1,keep=2", "dpkg/:keep"}) {
    INFO(bad);
    CHECK_FALSE(ParseRetention(bad));
  }
  CHECK(RuleFor(rules.value(), "dpkg/p/linux")->prefix == "dpkg/");
  CHECK_FALSE(RuleFor(rules.value(), "dpkgx/p/linux"));
  CHECK_FALSE(RuleFor(rules.value(), "appimage/other/linux"));
}

TEST_CASE("keep N newest, younger than D days, never a protected build", "[retention]") {
  const int64_t now = 1'800'000'000, day = 86400;
  std::vector<BuildEntry> builds;
  for (int i = 1; i <= 10; ++i) builds.push_back({std::to_string(i), now - (11 - i) * day, false});
  builds[0].protect = true;  // build 1: pinned
  RetentionRule keep3{"dpkg/", 3, std::nullopt};
  auto removed = PlanRemovals(builds, keep3, now);
  CHECK(std::set<std::string>(removed.begin(), removed.end()) ==
        std::set<std::string>{"2", "3", "4", "5", "6", "7"});
  RetentionRule young{"dpkg/", std::nullopt, 4};  // builds 8, 9, 10 are 3, 2, 1 days old
  removed = PlanRemovals(builds, young, now);
  CHECK(removed.size() == 6);
  RetentionRule either{"dpkg/", 2, 5};  // newest 2 or younger than 5 days: 7..10
  removed = PlanRemovals(builds, either, now);
  CHECK(std::set<std::string>(removed.begin(), removed.end()) == std::set<std::string>{"2", "3", "4", "5", "6"});
  // Numbers order numerically, not as text: 10 is newer than 9.
  std::vector<BuildEntry> numbered = {{"9", now, false}, {"10", now - day, false}};
  CHECK(PlanRemovals(numbered, RetentionRule{"", 1, std::nullopt}, now) == std::vector<std::string>{"9"});
}

TEST_CASE("retention on a generated tree of 3,000 builds", "[retention]") {
  TempDir dir;
  const std::string artifacts = dir.Sub("artifacts"), tokens = dir.Sub("tokens");
  const int64_t now = 1'800'000'000;
  const std::vector<std::string> builders = {"dpkg/p/linux", "dpkg/q/arm", "rpm/p/linux"};
  for (const auto& b : builders) {
    for (int i = 1; i <= 1000; ++i) {
      const std::string build = artifacts + "/" + b + "/" + std::to_string(i);
      std::filesystem::create_directories(build);
      std::ofstream(build + "/f") << i;
      SetMtime(build, now - (1001 - i) * 3600);  // one build an hour
    }
  }
  std::ofstream(artifacts + "/dpkg/p/linux/5/KEEP") << "release 1.0\n";  // a pin
  std::filesystem::create_directories(tokens + "/dpkg/p/linux");
  std::ofstream(tokens + "/dpkg/p/linux/7.htpasswd") << "live";  // a build still uploading
  SetMtime(artifacts + "/dpkg/p/linux/5", now - 1000 * 3600);
  auto rules = ParseRetention("dpkg/:keep=100; dpkg/q/:days=10");
  REQUIRE(rules);

  auto dry = ApplyRetention(artifacts, tokens, 4, rules.value(), now, true);
  REQUIRE(dry);
  CHECK(dry->builders == 3);
  CHECK(dry->builds == 3000);
  // dpkg/p: 1000 - 100 newest - the pin - the live one; dpkg/q: builds 1..761
  // are 240 hours (10 days) old or older.
  CHECK(dry->removed.size() == 898 + 761);
  CHECK(std::filesystem::exists(artifacts + "/dpkg/p/linux/1"));  // dry run: nothing deleted

  auto real = ApplyRetention(artifacts, tokens, 4, rules.value(), now, false);
  REQUIRE(real);
  CHECK(real->removed == dry->removed);
  CHECK_FALSE(std::filesystem::exists(artifacts + "/dpkg/p/linux/1"));
  CHECK(std::filesystem::exists(artifacts + "/dpkg/p/linux/5/KEEP"));
  CHECK(std::filesystem::exists(artifacts + "/dpkg/p/linux/7"));
  CHECK(std::filesystem::exists(artifacts + "/dpkg/p/linux/901"));
  CHECK_FALSE(std::filesystem::exists(artifacts + "/dpkg/p/linux/900"));
  CHECK(std::filesystem::exists(artifacts + "/dpkg/q/arm/762"));
  CHECK_FALSE(std::filesystem::exists(artifacts + "/dpkg/q/arm/761"));
  CHECK(std::filesystem::exists(artifacts + "/rpm/p/linux/1"));  // no rule: kept
  CHECK(ApplyRetention(artifacts, tokens, 4, rules.value(), now, false)->removed.empty());
}

TEST_CASE("retention never follows a symlink out of the tree", "[retention]") {
  TempDir dir;
  const std::string artifacts = dir.Sub("artifacts"), tokens = dir.Sub("tokens"), outside = dir.Sub("outside");
  std::ofstream(outside + "/precious") << "x";
  std::filesystem::create_directories(artifacts + "/dpkg/p/linux/1");
  std::filesystem::create_directory_symlink(outside, artifacts + "/dpkg/p/linux/1/link");
  std::filesystem::create_directories(artifacts + "/dpkg/p/linux/2");
  SetMtime(artifacts + "/dpkg/p/linux/1", 1);
  auto r = ApplyRetention(artifacts, tokens, 4, ParseRetention("dpkg/:keep=1").value(), 1'800'000'000, false);
  REQUIRE(r);
  CHECK(r->removed == std::vector<std::string>{"dpkg/p/linux/1"});
  CHECK(std::filesystem::exists(outside + "/precious"));
}
