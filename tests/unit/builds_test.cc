#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>

#include "builds.h"
#include "unit/hooked_disk.h"
#include "unit/test_support.h"

using namespace artifact;
using namespace artifact::testing;

namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

struct BuildsFixture {
  TempDir dir;
  std::string artifacts = dir.Sub("artifacts");
  FakeClock clock;
  HookedDisk disk;
  Builds builds{artifacts, clock, disk};

  // Builds opened one second apart, in the order given.
  void OpenInOrder(std::initializer_list<const char*> scopes) {
    for (const char* s : scopes) {
      REQUIRE(builds.Open(s));
      clock.Advance(1);
    }
  }
  void Publish(const std::string& scope) { std::ofstream(artifacts + "/" + scope + "/pkg.deb") << "x"; }
};

}  // namespace

TEST_CASE_METHOD(BuildsFixture, "a build opened later is newer, whatever its name", "[builds]") {
  OpenInOrder({"dpkg/p/linux/10", "dpkg/p/linux/nightly", "dpkg/p/linux/9"});
  CHECK(builds.KeyOf("dpkg/p/linux/10") < builds.KeyOf("dpkg/p/linux/nightly"));
  CHECK(builds.KeyOf("dpkg/p/linux/nightly") < builds.KeyOf("dpkg/p/linux/9"));
  // Reopening keeps a build's place; its stamp is hidden, not a publication.
  REQUIRE(builds.Open("dpkg/p/linux/10"));
  CHECK(builds.KeyOf("dpkg/p/linux/10") < builds.KeyOf("dpkg/p/linux/nightly"));
  CHECK_FALSE(builds.IsPublished("dpkg/p/linux/10").value());
  Publish("dpkg/p/linux/10");
  CHECK(builds.IsPublished("dpkg/p/linux/10").value());
  // nginx's group writes; setgid only as inherited from a setgid root.
  CHECK((ModeOf(artifacts + "/dpkg/p/linux/10") & 07777) == 0775);
  REQUIRE(::chmod(artifacts.c_str(), 02775) == 0);  // as tmpfiles makes the volume
  REQUIRE(builds.Open("rpm/q/linux/1"));
  CHECK((ModeOf(artifacts + "/rpm/q/linux/1") & 07777) == 02775);
  // Unstamped builds (made by hand) are older than every stamped one.
  std::filesystem::create_directories(artifacts + "/dpkg/p/linux/99");
  CHECK(builds.KeyOf("dpkg/p/linux/99") < builds.KeyOf("dpkg/p/linux/10"));
}

TEST_CASE_METHOD(BuildsFixture, "latest only moves to a newer build", "[builds]") {
  OpenInOrder({"dpkg/p/linux/6", "dpkg/p/linux/7"});
  CHECK(builds.ResolveLatest("dpkg/p/linux").error().code == ErrorCode::kNotFound);
  REQUIRE(builds.UpdateLatest("dpkg/p/linux/7"));
  REQUIRE(builds.UpdateLatest("dpkg/p/linux/6"));  // sealed after 7, issued before it
  CHECK(builds.ResolveLatest("dpkg/p/linux").value() == "7");
  OpenInOrder({"dpkg/p/linux/5"});  // issued last: newest, whatever its name
  REQUIRE(builds.UpdateLatest("dpkg/p/linux/5"));
  CHECK(builds.ResolveLatest("dpkg/p/linux").value() == "5");
}

TEST_CASE_METHOD(BuildsFixture, "two seals racing cannot move latest backwards", "[builds][race]") {
  // Found on main: sealing 6 and 7 at once left latest = 6 in about half the
  // rounds: 6 read and compared, 7 wrote, then 6 renamed its stale choice
  // over it. The seal of 6 is paused right before its rename; 7 runs there.
  OpenInOrder({"dpkg/p/linux/6", "dpkg/p/linux/7"});
  Status seventh = Error{ErrorCode::kInternal, "not run"};
  disk.CompeteAt("rename", "/dpkg/p/linux/.latest", "/dpkg/p/linux/.latest.lock",
                 [&] { seventh = builds.UpdateLatest("dpkg/p/linux/7"); });
  REQUIRE(builds.UpdateLatest("dpkg/p/linux/6"));
  disk.Join();
  REQUIRE(disk.competed());
  REQUIRE(seventh);
  CHECK(builds.ResolveLatest("dpkg/p/linux").value() == "7");
  // The builder holds the two files it owns and no leftovers.
  std::vector<std::string> hidden;
  for (const auto& e : std::filesystem::directory_iterator(artifacts + "/dpkg/p/linux")) {
    if (e.path().filename().string()[0] == '.') hidden.push_back(e.path().filename().string());
  }
  CHECK(hidden == std::vector<std::string>{".latest"});
}

TEST_CASE_METHOD(BuildsFixture, "freeze, seal and thaw a build", "[builds][seal]") {
  const std::string scope = "dpkg/p/linux/1";
  const std::string build_dir = artifacts + "/" + scope;
  OpenInOrder({scope.c_str()});
  std::filesystem::create_directories(build_dir + "/sub/deeper");
  std::ofstream(build_dir + "/pkg.deb") << "abc";
  std::ofstream(build_dir + "/sub/deeper/log.txt") << "12345";
  {
    auto lock = builds.Lock(scope);
    REQUIRE(lock);
    CHECK_FALSE(builds.IsFrozen(scope).value());
    auto count = builds.Freeze(scope, "t1-1");
    REQUIRE(count);
    CHECK(count->files == 2);
    CHECK(count->bytes == 8);
    CHECK(builds.IsFrozen(scope).value());
    for (const char* d : {"", "/sub", "/sub/deeper"}) CHECK((ModeOf(build_dir + d) & 07777) == 0555);
    BuildRecord record;
    record.result = BuildResult::kSuccess;
    record.issued_by = "ci";
    record.username = "t1";
    REQUIRE(builds.Seal(scope, "t1-1", &record));
    CHECK(record.state == "sealed");
    CHECK(record.report.files == 2);
    CHECK(record.LatestEligible());
  }
  // The seal's files went into the frozen root, which is frozen again, and
  // under its own name.
  CHECK((ModeOf(build_dir) & 07777) == 0555);
  CHECK(ReadAll(build_dir + "/SHA256SUMS").find("  sub/deeper/log.txt\n") != std::string::npos);
  CHECK(ReadAll(build_dir + "/.build.json").find("\"result\":\"success\"") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(artifacts + "/dpkg/p/linux/.sealing-1"));
  // Opening it again is a reopen (it is published): refused without one.
  CHECK(builds.Open(scope).error().code == ErrorCode::kConflict);
  CHECK(builds.IsFrozen(scope).value());
  // Reopening thaws it and drops the record.
  REQUIRE(builds.Open(scope, /*reopen=*/true));
  CHECK_FALSE(builds.IsFrozen(scope).value());
  for (const char* d : {"", "/sub", "/sub/deeper"}) CHECK((ModeOf(build_dir + d) & 0777) == 0775);
  CHECK_FALSE(std::filesystem::exists(build_dir + "/.build.json"));
}

TEST_CASE_METHOD(BuildsFixture, "a seal that died while its build was renamed away is undone by the next lock",
                 "[builds][seal]") {
  const std::string scope = "dpkg/p/linux/2";
  OpenInOrder({scope.c_str()});
  // What WriteIntoFrozen leaves when the process dies between its renames.
  std::filesystem::rename(artifacts + "/" + scope, artifacts + "/dpkg/p/linux/.sealing-2");
  REQUIRE(builds.Lock(scope));
  CHECK(std::filesystem::is_directory(artifacts + "/" + scope));
  CHECK_FALSE(std::filesystem::exists(artifacts + "/dpkg/p/linux/.sealing-2"));
}

TEST_CASE_METHOD(BuildsFixture, "retention time and protection come from what the app recorded", "[builds][seal]") {
  OpenInOrder({"dpkg/p/linux/1", "dpkg/p/linux/2"});
  Publish("dpkg/p/linux/1");
  REQUIRE(builds.UpdateLatest("dpkg/p/linux/1"));
  // A client-set mtime far in the future changes nothing.
  SetMtime(artifacts + "/dpkg/p/linux/2", 4102444800);
  auto list = builds.List("dpkg/p/linux", [](const std::string&) { return false; });
  REQUIRE(list.size() == 2);
  for (const auto& b : list) {
    CHECK(b.time < 4102444800);
    CHECK(b.protect == (b.name == "1"));  // latest
  }
}

TEST_CASE_METHOD(BuildsFixture, "a seal overtaken by a reopen and a newer seal does nothing", "[builds][seal]") {
  const std::string scope = "dpkg/p/linux/3";
  OpenInOrder({scope.c_str()});
  Publish(scope);
  BuildRecord stale;
  stale.result = BuildResult::kSuccess;
  {
    auto lock = builds.Lock(scope);
    REQUIRE(builds.Freeze(scope, "t1-1"));  // the revoke of t1; its hash is queued
  }
  REQUIRE(builds.Open(scope, /*reopen=*/true));  // reopened: t1's freeze is gone
  {
    auto lock = builds.Lock(scope);
    REQUIRE(builds.Freeze(scope, "t2-2"));  // t2's revoke
    BuildRecord fresh;
    fresh.result = BuildResult::kFailure;
    REQUIRE(builds.Seal(scope, "t2-2", &fresh));
  }
  auto lock = builds.Lock(scope);
  CHECK(builds.Seal(scope, "t1-1", &stale).error().code == ErrorCode::kConflict);
  CHECK(ReadAll(artifacts + "/" + scope + "/.build.json").find("\"result\":\"failure\"") != std::string::npos);
}

TEST_CASE_METHOD(BuildsFixture, "latest leaves a build that is reopened or sealed again as a failure",
                 "[builds][seal]") {
  OpenInOrder({"dpkg/p/linux/1", "dpkg/p/linux/2"});
  for (const char* scope : {"dpkg/p/linux/1", "dpkg/p/linux/2"}) {
    Publish(scope);
    {
      auto lock = builds.Lock(scope);
      REQUIRE(builds.Freeze(scope, std::string(scope) + "-t"));
      BuildRecord record;
      record.result = BuildResult::kSuccess;
      REQUIRE(builds.Seal(scope, std::string(scope) + "-t", &record));
    }
    REQUIRE(builds.UpdateLatest(scope));
  }
  CHECK(builds.ResolveLatest("dpkg/p/linux").value() == "2");
  REQUIRE(builds.Open("dpkg/p/linux/2", /*reopen=*/true));
  CHECK(builds.ResolveLatest("dpkg/p/linux").value() == "1");
  REQUIRE(builds.Open("dpkg/p/linux/1", /*reopen=*/true));
  CHECK(builds.ResolveLatest("dpkg/p/linux").error().code == ErrorCode::kNotFound);
}

TEST_CASE_METHOD(BuildsFixture, "ReadDirectory lists visible files and real directories, never through a symlink",
                 "[builds][browser]") {
  OpenInOrder({"dpkg/p/linux/1"});
  Publish("dpkg/p/linux/1");
  std::filesystem::create_directory(artifacts + "/dpkg/p/linux/1/sub");
  std::filesystem::create_directory_symlink(artifacts + "/dpkg/p/linux/1/sub", artifacts + "/dpkg/p/linux/1/link");
  std::filesystem::create_directory_symlink(artifacts + "/dpkg/p/linux", artifacts + "/dpkg/p/alias");
  auto entries = builds.ReadDirectory("dpkg/p/linux/1");
  REQUIRE(entries);
  std::map<std::string, DirEntry> by_name;
  for (const auto& e : entries.value()) by_name[e.name] = e;
  CHECK(by_name.size() == 2);  // not .created, not the link
  CHECK(by_name["pkg.deb"].size == 1);
  CHECK_FALSE(by_name["pkg.deb"].directory);
  CHECK(by_name["sub"].directory);
  CHECK(builds.ReadDirectory("").value().size() == 1);
  CHECK(builds.ReadDirectory("dpkg/p/alias").error().code == ErrorCode::kNotFound);
  CHECK(builds.ReadDirectory("dpkg/p/alias/1").error().code == ErrorCode::kNotFound);
  CHECK(builds.ReadDirectory("dpkg/p/linux/1/pkg.deb").error().code == ErrorCode::kNotFound);
  CHECK(builds.ReadDirectory("dpkg/nope").error().code == ErrorCode::kNotFound);
}

TEST_CASE_METHOD(BuildsFixture, "Summarize: the stamp, the record, and whether a seal holds the build",
                 "[builds][browser]") {
  OpenInOrder({"dpkg/p/linux/1", "dpkg/p/linux/2"});
  Publish("dpkg/p/linux/1");
  {
    auto open = builds.Summarize("dpkg/p/linux/2", false);
    CHECK(open.key.created_ns > 0);
    CHECK_FALSE(open.record);
  }
  REQUIRE(builds.Freeze("dpkg/p/linux/1", "t-1"));
  // Frozen, no record: busy only while someone holds the build's lock.
  CHECK_FALSE(builds.Summarize("dpkg/p/linux/1", true).busy);
  {
    auto lock = builds.Lock("dpkg/p/linux/1");
    REQUIRE(lock);
    CHECK(builds.Summarize("dpkg/p/linux/1", true).busy);
  }
  BuildRecord record;
  REQUIRE(builds.Seal("dpkg/p/linux/1", "t-1", &record));
  auto sealed = builds.Summarize("dpkg/p/linux/1", true);
  REQUIRE(sealed.record);
  CHECK(sealed.record->report.files == 1);
  CHECK_FALSE(sealed.busy);
  CHECK(sealed.record_json.find("\"files\":1") != std::string::npos);
}
