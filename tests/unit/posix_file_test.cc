#include "posix_file.h"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <sstream>

#include "event_log.h"
#include "unit/test_support.h"

using artifact::testing::TempDir;

namespace {

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

// Sets the umask for one scope: the directories' modes depend on it.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t old_;
};

}  // namespace

TEST_CASE("MakeDirs keeps the setgid bit a setgid root passes on, under any umask", "[posix_file]") {
  TempDir dir;
  REQUIRE(::chmod(dir.path().c_str(), 02775) == 0);
  for (mode_t mask : {mode_t{0002}, mode_t{0022}, mode_t{0027}}) {
    ScopedUmask umask(mask);
    const std::string rel = "m" + std::to_string(mask) + "/b";
    REQUIRE(artifact::MakeDirs(dir.path(), rel, 0775));
    CHECK(ModeOf(dir.path() + "/m" + std::to_string(mask)) == 02775);
    CHECK(ModeOf(dir.path() + "/" + rel) == 02775);
  }
}

TEST_CASE("MakeDirs never asks for setgid itself", "[posix_file]") {
  // Below a root without setgid, nothing gets it: the bit only ever comes
  // from the parent, which is what lets RestrictSUIDSGID= units create builds.
  TempDir dir;
  REQUIRE(::chmod(dir.path().c_str(), 0775) == 0);
  ScopedUmask umask(0002);
  REQUIRE(artifact::MakeDirs(dir.path(), "a/b", 02775));
  CHECK(ModeOf(dir.path() + "/a") == 0775);
  CHECK(ModeOf(dir.path() + "/a/b") == 0775);
}

TEST_CASE("a storage error carries words for the client without the path", "[posix_file]") {
  auto e = artifact::ErrnoError("mkdir", "/srv/secret/place", EACCES);
  CHECK(e.message.find("/srv/secret/place") != std::string::npos);
  CHECK(e.public_message == "permission denied");
  auto explained = artifact::Explained(e, "cannot create the build directory");
  CHECK(explained.public_message == "cannot create the build directory: permission denied");
  CHECK(artifact::ErrnoError("write", "/x", ENOSPC).code == artifact::ErrorCode::kInsufficientStorage);
}

TEST_CASE("event lines carry a journald priority prefix only when asked", "[posix_file]") {
  std::ostringstream plain_out, journal_out;
  artifact::EventLog plain(plain_out);
  artifact::EventLog journal(journal_out, /*syslog_prefix=*/true);
  plain.Write("issue ok");
  journal.Write("issue ok");
  journal.Write("issue failed", artifact::Priority::kError);
  CHECK(plain_out.str() == "issue ok\n");
  CHECK(journal_out.str() == "<6>issue ok\n<3>issue failed\n");
}

namespace {
// A mkdir refused `refusals` times with EACCES, then the real one.
int refusals = 0;
int calls = 0;
int RefusingMkdir(const char* path, mode_t mode) {
  ++calls;
  if (refusals > 0) {
    --refusals;
    errno = EACCES;
    return -1;
  }
  return ::mkdir(path, mode);
}
}  // namespace

TEST_CASE("MakeDirs tries a mkdir refused with EACCES again, for a bounded time", "[posix_file]") {
  // Seen on GlusterFS replica 3: a directory another node made a moment
  // before is not yet its owner's on one brick, and a mkdir in it is refused.
  TempDir dir;
  refusals = 3;
  calls = 0;
  REQUIRE(artifact::MakeDirs(dir.path(), "a", 0775, RefusingMkdir));
  CHECK(calls == 4);
  CHECK(ModeOf(dir.path() + "/a") == 0775);
  // A volume that keeps refusing is an error after the last try.
  refusals = 1000;
  calls = 0;
  auto st = artifact::MakeDirs(dir.path(), "b", 0775, RefusingMkdir);
  REQUIRE_FALSE(st);
  CHECK(st.error().message.find("Permission denied") != std::string::npos);
  CHECK(calls == 7);
}
