#include <catch2/catch.hpp>

#include "password_file.h"
#include "unit/test_support.h"

using artifact::PasswordLine;
using artifact::testing::CountingRandom;
using artifact::testing::FailingRandom;

TEST_CASE("{SSHA} matches an independent implementation (RFC 2307 form nginx reads)", "[password]") {
  CountingRandom random;  // salt bytes 01..08
  auto hash = artifact::SshaHash("secret", random);
  REQUIRE(hash);
  // Python: base64(sha1(b"secret" + bytes(range(1, 9))).digest() + bytes(range(1, 9)))
  CHECK(hash.value() == "{SSHA}lHFzXul4wnzRItssVcTnvXWRjNgBAgMEBQYHCA==");
  CHECK(artifact::SshaVerify("secret", hash.value()));
  CHECK_FALSE(artifact::SshaVerify("secreT", hash.value()));
  CHECK_FALSE(artifact::SshaVerify("secret", "{SHA}lHFzXul4wnzRItssVcTnvXWRjNg="));
  CHECK_FALSE(artifact::SshaVerify("secret", "{SSHA}not base64!"));
}

TEST_CASE("passwords are 32 random bytes in base64url, usernames 80 bits", "[password]") {
  CountingRandom random;
  auto p = artifact::GeneratePassword(random);
  REQUIRE(p);
  CHECK(p->size() == 43);
  CHECK(p->find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") == std::string::npos);
  auto u = artifact::GenerateUsername(random);
  REQUIRE(u);
  CHECK(u->size() == 21);
  CHECK(artifact::IsValidUsername(u.value()));
  CHECK(artifact::GeneratePassword(random).value() != p.value());

  FailingRandom broken;
  CHECK_FALSE(artifact::GeneratePassword(broken));
  CHECK_FALSE(artifact::SshaHash("x", broken));
}

namespace {
// Gives `dashes` fills that would encode to a leading '-' (0xF8: sextet 62),
// then counting bytes.
class DashFirstRandom : public artifact::RandomSource {
 public:
  explicit DashFirstRandom(int dashes) : dashes_(dashes) {}
  bool Fill(unsigned char* out, size_t n) override {
    if (dashes_ > 0) {
      --dashes_;
      for (size_t i = 0; i < n; ++i) out[i] = 0xF8;
      return true;
    }
    return counting_.Fill(out, n);
  }

 private:
  int dashes_;
  CountingRandom counting_;
};
}  // namespace

TEST_CASE("a password never starts with '-': it would read as an option", "[password]") {
  DashFirstRandom once(1);
  auto p = artifact::GeneratePassword(once);
  REQUIRE(p);
  CountingRandom counting;
  CHECK(p.value() == artifact::GeneratePassword(counting).value());  // the second draw
  CHECK(p->front() != '-');
  DashFirstRandom always(1000);
  CHECK_FALSE(artifact::GeneratePassword(always));
}

TEST_CASE("a request_id's token name is the master's alone", "[password]") {
  // The same vector is in tests/buildbot/test_naming.py: the buildbot step
  // journals this name before it asks.
  CHECK(artifact::TokenNameFor("ci", "build-42") == "r5d0287dd16876bbd8554f15bef31c7751ed1063f");
  CHECK(artifact::IsValidUsername(artifact::TokenNameFor("ci", "build-42")));
  CHECK(artifact::TokenNameFor("ci", "build-42") != artifact::TokenNameFor("other", "build-42"));
  // The separator keeps ("c", "i\n...") apart from ("ci", ...); ids have no newline anyway.
  CHECK(artifact::TokenNameFor("c", "ibuild-42") != artifact::TokenNameFor("ci", "build-42"));
  CHECK(artifact::IsValidRequestId("build-42.1_x"));
  CHECK_FALSE(artifact::IsValidRequestId(""));
  CHECK_FALSE(artifact::IsValidRequestId("a/b"));
  CHECK_FALSE(artifact::IsValidRequestId(std::string(129, 'a')));
}

TEST_CASE("a password line round-trips with its metadata", "[password]") {
  PasswordLine line;
  line.info = {"t0123", "ci", 1000, 4600, {"dpkg/p/b/1", "appimage/p/b/1"}};
  line.hash = "{SSHA}lHFzXul4wnzRItssVcTnvXWRjNgBAgMEBQYHCA==";
  auto text = line.Format();
  REQUIRE(text);
  CHECK(text.value() ==
        "t0123:{SSHA}lHFzXul4wnzRItssVcTnvXWRjNgBAgMEBQYHCA==:issued_by=ci;issued=1000;expires=4600;"
        "scopes=dpkg/p/b/1,appimage/p/b/1\n");
  auto back = PasswordLine::Parse(text.value());
  REQUIRE(back);
  CHECK(back->info.username == "t0123");
  CHECK(back->info.issued_by == "ci");
  CHECK(back->info.issued == 1000);
  CHECK(back->info.expires == 4600);
  CHECK(back->info.scopes == std::vector<std::string>{"dpkg/p/b/1", "appimage/p/b/1"});
  CHECK(back->hash == line.hash);
}

TEST_CASE("a password line never carries a second line or field", "[password]") {
  PasswordLine base;
  base.info = {"t0123", "ci", 1000, 4600, {"dpkg/p/b/1"}};
  base.hash = "{SSHA}x";
  for (const char* evil : {"a\nb", "a\rb", "a:b", "a;b", "a=b", "a,b", "a b", ""}) {
    INFO("field value: " << evil);
    PasswordLine l = base;
    l.info.username = evil;
    CHECK_FALSE(l.Format());
    l = base;
    l.info.issued_by = evil;
    CHECK_FALSE(l.Format());
    l = base;
    l.info.scopes = {std::string("dpkg/p/b/") + evil};
    CHECK_FALSE(l.Format());
  }
  PasswordLine l = base;
  l.hash = "{SSHA}x\nevil:{SSHA}y";
  CHECK_FALSE(l.Format());
}

TEST_CASE("PasswordLine::Parse is strict", "[password]") {
  const char* bad[] = {
      "",
      "t1:{SSHA}x",
      "t1:{SSHA}x:issued_by=ci;issued=1;expires=2",
      "t1:{SSHA}x:issued_by=ci;issued=1;expires=x;scopes=a/b/c/d",
      "t1:{SSHA}x:issued_by=ci;issued=1;expires=2;expires=3;scopes=a/b/c/d",
      "t1:{SSHA}x:issued_by=ci;issued=1;expires=2;scopes=a/../c/d",
      "t 1:{SSHA}x:issued_by=ci;issued=1;expires=2;scopes=a/b/c/d",
      "t1:{SSHA}x:issued_by=ci;issued=1;expires=2;scopes=a/b/c/d:extra",
  };
  for (const char* text : bad) {
    INFO(text);
    CHECK_FALSE(PasswordLine::Parse(text));
  }
}
