#include <catch2/catch.hpp>
#include <crypt.h>

#include <fstream>

#include "masters.h"
#include "unit/test_support.h"

using artifact::MastersFile;
using artifact::ParseMasters;
using artifact::Scope;

namespace {

std::string Bcrypt(const std::string& password) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  REQUIRE(crypt_gensalt_rn("$2y$", 4, nullptr, 0, salt, sizeof salt) != nullptr);
  struct crypt_data data {};
  return crypt_r(password.c_str(), salt, &data);
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

}  // namespace

TEST_CASE("ParseMasters reads names, hashes and allow= prefixes", "[masters]") {
  auto parsed = ParseMasters(
      "# comment\n"
      "\n"
      "ci:$2y$05$abc\n"
      "ro:$6$salt$hash:allow=dpkg/myproj/,appimage/myproj\n"
      "re:$y$j9T$x:allow=dpkg/;reopen=yes\n");
  REQUIRE(parsed.problems.empty());
  REQUIRE(parsed.entries.size() == 3);
  CHECK(parsed.entries[0].master.name == "ci");
  CHECK(parsed.entries[0].master.allow.empty());
  CHECK(parsed.entries[1].master.allow == std::vector<std::string>{"dpkg/myproj/", "appimage/myproj"});
  CHECK(parsed.entries[2].master.may_reopen);
  CHECK_FALSE(parsed.entries[1].master.may_reopen);

  const auto& ro = parsed.entries[1].master;
  CHECK(ro.MayIssue(Scope::Parse("dpkg/myproj/linux/1", 4).value()));
  CHECK(ro.MayIssue(Scope::Parse("appimage/myproj/linux/1", 4).value()));
  CHECK_FALSE(ro.MayIssue(Scope::Parse("dpkg/other/linux/1", 4).value()));
  CHECK_FALSE(ro.MayIssue(Scope::Parse("appimage/myproj2/linux/1", 4).value()));
}

TEST_CASE("ParseMasters reports each broken line and leaves it out", "[masters]") {
  auto parsed = ParseMasters(
      "nohash\n"
      "md5:$apr1$abc$def\n"
      "plain:secret\n"
      "bad:$2y$05$abc:allow=../x\n"
      "typo:$2y$05$abc:alow=dpkg/\n"
      "ok:$2y$05$abc\n");
  CHECK(parsed.problems.size() == 5);
  REQUIRE(parsed.entries.size() == 1);
  CHECK(parsed.entries[0].master.name == "ok");
  CHECK(parsed.problems[0].rfind("line 1:", 0) == 0);
  CHECK(parsed.problems[4].rfind("line 5:", 0) == 0);
}

TEST_CASE("MastersFile verifies with crypt_r and fails closed", "[masters]") {
  artifact::testing::TempDir dir;
  const std::string path = dir.path() + "/masters";
  WriteFile(path, "ci:" + Bcrypt("s3cret") + "\n");
  MastersFile masters(path);

  auto ok = masters.Verify("ci", "s3cret");
  REQUIRE(ok);
  CHECK(ok->name == "ci");
  CHECK(masters.Verify("ci", "s3cret"));  // cached path
  auto wrong = masters.Verify("ci", "S3cret");
  REQUIRE_FALSE(wrong);
  CHECK(wrong.error().code == artifact::ErrorCode::kUnauthorized);
  CHECK(masters.Verify("nobody", "s3cret").error().code == artifact::ErrorCode::kUnauthorized);

  SECTION("a changed file is re-read: the old password stops working") {
    WriteFile(path, "ci:" + Bcrypt("new password, longer") + "\n");
    CHECK_FALSE(masters.Verify("ci", "s3cret"));
    CHECK(masters.Verify("ci", "new password, longer"));
  }
  SECTION("a missing file is 503, not 401") {
    std::remove(path.c_str());
    auto r = masters.Verify("ci", "s3cret");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == artifact::ErrorCode::kUnavailable);
  }
}
