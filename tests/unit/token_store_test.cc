#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "api.h"
#include "posix_file.h"
#include "token_store.h"
#include "unit/hooked_disk.h"
#include "unit/test_support.h"

using artifact::ErrorCode;
using artifact::IssueRequest;
using artifact::PasswordLine;
using artifact::Scope;
using artifact::TokenStore;
using namespace artifact::testing;

namespace {

struct StoreFixture {
  TempDir dir;
  std::string tokens = dir.Sub("tokens");
  std::string artifacts = dir.Sub("artifacts");
  FakeClock clock;
  CountingRandom random;
  TokenStore store{tokens, clock, random};
  artifact::Builds builds{artifacts, clock};

  IssueRequest Request(std::initializer_list<const char*> scopes, int64_t ttl = 600) {
    IssueRequest r;
    for (const char* s : scopes) r.scopes.push_back(Scope::Parse(s, 4).value());
    r.ttl = ttl;
    r.master = "ci";
    return r;
  }

  static std::string ReadFile(const std::string& path) { return artifact::ReadSmallFile(path).value(); }

  // Every file below tokens/ but the names ever used, relative, sorted.
  std::vector<std::string> TokenFiles() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::recursive_directory_iterator(tokens)) {
      const std::string rel = std::filesystem::relative(e.path(), tokens).string();
      if (e.is_regular_file() && rel.rfind(".names/", 0) != 0) out.push_back(rel);
    }
    std::sort(out.begin(), out.end());
    return out;
  }
};

}  // namespace

TEST_CASE_METHOD(StoreFixture, "issue publishes one 0640 file per scope that verifies the password", "[store]") {
  auto t = artifact::IssueToken(store, builds, Request({"dpkg/p/linux/1", "appimage/p/linux/1"}));
  REQUIRE(t);
  const std::string& user = t->info.username;
  CHECK(TokenFiles() == std::vector<std::string>{".by-user/" + user, "appimage/p/linux/1.htpasswd",
                                                 "dpkg/p/linux/1.htpasswd"});
  for (const char* scope : {"dpkg/p/linux/1", "appimage/p/linux/1"}) {
    const std::string path = store.ScopeFilePath(scope);
    CHECK(ModeOf(path) == 0640);
    auto line = PasswordLine::Parse(artifact::ReadSmallFile(path).value());
    REQUIRE(line);
    CHECK(line->info.username == user);
    CHECK(line->info.expires == clock.Now() + 600);
    CHECK(line->info.issued_by == "ci");
    CHECK(artifact::SshaVerify(t->password, line->hash));
    CHECK(std::filesystem::is_directory(artifacts + "/" + scope));
  }
  CHECK((ModeOf(artifacts + "/dpkg/p/linux/1") & 0020) != 0);  // group (nginx) may write
  CHECK(store.Get(user));
  CHECK(store.List()->size() == 1);
}

TEST_CASE_METHOD(StoreFixture, "a second token for a live scope is 409 and changes nothing", "[store]") {
  auto first = store.Issue(Request({"dpkg/p/linux/1"}));
  REQUIRE(first);
  auto before = TokenFiles();
  auto second = store.Issue(Request({"dpkg/p/linux/2", "dpkg/p/linux/1"}));
  REQUIRE_FALSE(second);
  CHECK(second.error().code == ErrorCode::kConflict);
  CHECK(TokenFiles() == before);  // the half-made token for linux/2 was rolled back
  CHECK_FALSE(std::filesystem::exists(artifacts + "/dpkg/p/linux/2"));
}

TEST_CASE_METHOD(StoreFixture, "a published scope is 409 unless reopened", "[store]") {
  std::filesystem::create_directories(artifacts + "/dpkg/p/linux/1");
  std::ofstream(artifacts + "/dpkg/p/linux/1/pkg.deb") << "x";
  auto r = artifact::IssueToken(store, builds, Request({"dpkg/p/linux/1"}));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::kConflict);
  CHECK(TokenFiles().empty());
  auto req = Request({"dpkg/p/linux/1"});
  req.reopen = true;
  CHECK(artifact::IssueToken(store, builds, req));
}

TEST_CASE_METHOD(StoreFixture, "revoke removes every file of the token and nothing else", "[store]") {
  auto a = store.Issue(Request({"dpkg/p/linux/1", "appimage/p/linux/1"}));
  auto b = store.Issue(Request({"dpkg/p/linux/2"}));
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(store.Revoke(a->info.username));
  CHECK(TokenFiles() == std::vector<std::string>{".by-user/" + b->info.username, "dpkg/p/linux/2.htpasswd"});
  CHECK(store.Revoke(a->info.username).error().code == ErrorCode::kNotFound);
  CHECK(store.Get(a->info.username).error().code == ErrorCode::kNotFound);
  // The scope is free again (its directory is still empty).
  CHECK(store.Issue(Request({"dpkg/p/linux/1"})));
}

TEST_CASE_METHOD(StoreFixture, "a request_id names the token, per master", "[store]") {
  auto req = Request({"dpkg/p/linux/1"});
  req.request_id = "build-42";
  auto t = store.Issue(req);
  REQUIRE(t);
  CHECK(t->info.username == artifact::TokenNameFor("ci", "build-42"));
  CHECK(t->info.username.size() == 41);
  CHECK(t->info.username[0] == 'r');
  // Another master's request with the same id is another name: nothing to
  // refuse, so nothing to learn about the first master's token.
  auto other = Request({"dpkg/p/linux/2"});
  other.master = "other";
  other.request_id = "build-42";
  auto theirs = store.Issue(other);
  REQUIRE(theirs);
  CHECK(theirs->info.username != t->info.username);
  other.request_id = "../x";
  CHECK(store.Issue(other).error().code == ErrorCode::kBadRequest);
  other.request_id = std::string(129, 'a');
  CHECK(store.Issue(other).error().code == ErrorCode::kBadRequest);
  // An empty id is a bad id, not "no id" (a generated name).
  other.request_id = "";
  CHECK(store.Issue(other).error().code == ErrorCode::kBadRequest);
  CHECK(TokenFiles().size() == 4);
}

TEST_CASE_METHOD(StoreFixture, "a retried issue replaces its live token, a used request_id is never reissued",
                 "[store]") {
  // Found on GlusterFS: an issue whose client gave up completed later and
  // held its scope, unknown to anyone, until its ttl ran out.
  auto req = Request({"dpkg/p/linux/1", "appimage/p/linux/1"}, 100);
  req.request_id = "build-42";
  auto first = store.Issue(req);
  REQUIRE(first);
  const std::string record_before = ReadFile(store.RecordPath(first->info.username));
  clock.Advance(10);
  std::swap(req.scopes[0], req.scopes[1]);  // the same scopes in another order
  req.ttl = 200;
  auto retry = store.Issue(req);
  REQUIRE(retry);
  CHECK(retry->info.username == first->info.username);
  CHECK(retry->password != first->password);
  CHECK(retry->info.expires == first->info.issued + 10 + 200);
  // One token, published again: the old password is in no file any more.
  const std::string record = ReadFile(store.RecordPath(first->info.username));
  CHECK(record != record_before);
  CHECK(ReadFile(store.ScopeFilePath("dpkg/p/linux/1")) == record);
  CHECK(ReadFile(store.ScopeFilePath("appimage/p/linux/1")) == record);
  auto line = artifact::PasswordLine::Parse(record);
  REQUIRE(line);
  CHECK(artifact::SshaVerify(retry->password, line->hash));
  CHECK_FALSE(artifact::SshaVerify(first->password, line->hash));
  CHECK(TokenFiles().size() == 3);
  // Other scopes under a used id: refused, the token untouched.
  auto elsewhere = Request({"dpkg/p/linux/2"});
  elsewhere.request_id = "build-42";
  CHECK(store.Issue(elsewhere).error().code == ErrorCode::kConflict);
  CHECK(ReadFile(store.RecordPath(first->info.username)) == record);
  // Revoked: the name is never reissued.
  REQUIRE(store.Revoke(first->info.username));
  auto after = store.Issue(req);
  REQUIRE_FALSE(after);
  CHECK(after.error().code == ErrorCode::kConflict);
  CHECK(TokenFiles().empty());
  // Expired (still on disk): not live, so not a retry either.
  auto expiring = Request({"dpkg/p/linux/3"}, 5);
  expiring.request_id = "short";
  REQUIRE(store.Issue(expiring));
  clock.Advance(5);
  CHECK(store.Issue(expiring).error().code == ErrorCode::kConflict);
  // A refused issue keeps no name: the same request may come again.
  auto live = store.Issue(Request({"dpkg/p/linux/9"}));
  REQUIRE(live);
  auto blocked = Request({"dpkg/p/linux/9"});
  blocked.request_id = "retry-me";
  CHECK(store.Issue(blocked).error().code == ErrorCode::kConflict);  // scope held by `live`
  REQUIRE(store.Revoke(live->info.username));
  CHECK(store.Issue(blocked));
}

TEST_CASE_METHOD(StoreFixture, "an expired token is not live and does not block its scope", "[store]") {
  auto t = store.Issue(Request({"dpkg/p/linux/1"}, 10));
  REQUIRE(t);
  clock.Advance(10);
  CHECK(store.Get(t->info.username).error().code == ErrorCode::kNotFound);
  CHECK(store.List()->empty());
  auto next = store.Issue(Request({"dpkg/p/linux/1"}));
  REQUIRE(next);
  CHECK(TokenFiles() == std::vector<std::string>{".by-user/" + next->info.username, "dpkg/p/linux/1.htpasswd"});
}

TEST_CASE_METHOD(StoreFixture, "no randomness means no token", "[store]") {
  FailingRandom broken;
  TokenStore s(tokens, clock, broken);
  auto r = s.Issue(Request({"dpkg/p/linux/1"}));
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::kUnavailable);
  CHECK(TokenFiles().empty());
}

TEST_CASE_METHOD(StoreFixture, "the health check writes into the store", "[store]") {
  CHECK(store.CheckWritable());
  TokenStore missing(tokens + "/nope", clock, random);
  CHECK_FALSE(missing.CheckWritable());
  CHECK(TokenFiles().empty());
}

TEST_CASE_METHOD(StoreFixture, "renew rewrites every file of the token with the new expiry", "[store]") {
  auto t = store.Issue(Request({"dpkg/p/linux/1", "appimage/p/linux/1"}, 10));
  REQUIRE(t);
  auto r = store.Renew(t->info.username, clock.Now() + 100);
  REQUIRE(r);
  CHECK(r->expires == clock.Now() + 100);
  for (const auto& path : {store.ScopeFilePath("dpkg/p/linux/1"), store.ScopeFilePath("appimage/p/linux/1"),
                           store.RecordPath(t->info.username)}) {
    auto line = PasswordLine::Parse(artifact::ReadSmallFile(path).value());
    REQUIRE(line);
    CHECK(line->info.expires == clock.Now() + 100);
    CHECK(artifact::SshaVerify(t->password, line->hash));  // same password
    CHECK(ModeOf(path) == 0640);
  }
  CHECK(TokenFiles().size() == 3);  // no staging file left behind
  clock.Advance(50);
  CHECK(store.Get(t->info.username));
  // Revoke still finds and removes the renewed (new-inode) files.
  REQUIRE(store.Revoke(t->info.username));
  CHECK(TokenFiles().empty());
}

TEST_CASE_METHOD(StoreFixture, "an expired token cannot be renewed", "[store]") {
  auto t = store.Issue(Request({"dpkg/p/linux/1"}, 10));
  REQUIRE(t);
  clock.Advance(10);
  auto r = store.Renew(t->info.username, clock.Now() + 100);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::kNotFound);
  CHECK(store.Renew("nobody", clock.Now() + 100).error().code == ErrorCode::kNotFound);
}

TEST_CASE_METHOD(StoreFixture, "expiry removes exactly the expired tokens", "[store]") {
  auto short_lived = store.Issue(Request({"dpkg/p/linux/1"}, 5));
  auto long_lived = store.Issue(Request({"dpkg/p/linux/2"}, 50));
  REQUIRE(short_lived);
  REQUIRE(long_lived);
  int64_t next = 0;
  CHECK_FALSE(store.ExpireIfDue(short_lived->info.username, &next).value());
  CHECK(next == clock.Now() + 5);
  clock.Advance(5);
  auto sweep = store.ExpireAll();
  REQUIRE(sweep);
  REQUIRE(sweep->expired.size() == 1);
  CHECK(sweep->expired[0].username == short_lived->info.username);
  REQUIRE(sweep->live.size() == 1);
  CHECK(sweep->live[0].second == long_lived->info.username);
  CHECK(TokenFiles() ==
        std::vector<std::string>{".by-user/" + long_lived->info.username, "dpkg/p/linux/2.htpasswd"});
  CHECK_FALSE(store.ExpireIfDue(short_lived->info.username, &next).value());  // already gone: harmless
}

TEST_CASE_METHOD(StoreFixture, "prune removes expired tokens, stale temp files and orphans only", "[store]") {
  auto live = store.Issue(Request({"dpkg/p/linux/1"}, 500));
  auto dead = store.Issue(Request({"dpkg/p/linux/2"}, 5));
  REQUIRE(live);
  REQUIRE(dead);
  // What a crash can leave: a temp file mid-write, a scope file whose record
  // is gone, an unreadable record.
  std::ofstream(tokens + "/.by-user/.tmp-abc123") << "partial";
  std::filesystem::create_directories(tokens + "/dpkg/p/linux");
  std::filesystem::copy_file(store.ScopeFilePath("dpkg/p/linux/1"), store.ScopeFilePath("dpkg/p/linux/3"));
  std::ofstream(tokens + "/.by-user/broken") << "not a line";
  for (const char* f : {"/.by-user/.tmp-abc123", "/.by-user/broken"}) SetMtime(tokens + f, clock.Now());

  auto first = store.Prune(60);
  INFO((first ? std::string("ok") : first.error().message));
  REQUIRE(first);
  CHECK(first->size() == 1);  // the orphan (no age needed) goes at once
  CHECK(std::filesystem::exists(tokens + "/.by-user/.tmp-abc123"));  // may be in flight: kept
  clock.Advance(100);  // now the dead token has expired and the leftovers are stale
  auto removed = store.Prune(60);
  REQUIRE(removed);
  CHECK(std::find(removed->begin(), removed->end(), "expired token " + dead->info.username) != removed->end());
  CHECK(TokenFiles() == std::vector<std::string>{".by-user/" + live->info.username, "dpkg/p/linux/1.htpasswd"});
  CHECK(store.Get(live->info.username));
  CHECK(store.Prune(60).value().empty());  // nothing left to do
}

TEST_CASE_METHOD(StoreFixture, "a scope file that cannot be read fails the revoke and keeps the token", "[store]") {
  // Found by the multi-node test: an unreadable scope file (EACCES, EIO,
  // ESTALE) was taken for "gone" and the revoke reported success while
  // nginx could still accept the token.
  auto t = store.Issue(Request({"dpkg/p/linux/1"}));
  REQUIRE(t);
  const std::string path = store.ScopeFilePath("dpkg/p/linux/1");
  const std::string saved = path + ".saved";
  std::filesystem::rename(path, saved);
  std::filesystem::create_directory(path);  // read() fails with EISDIR
  auto r = store.Revoke(t->info.username);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == ErrorCode::kUnavailable);
  CHECK(store.Get(t->info.username));  // the record stays: a retry finds the token
  std::filesystem::remove(path);
  std::filesystem::rename(saved, path);
  CHECK(store.Revoke(t->info.username));
  CHECK(TokenFiles().empty());
}

namespace {

// A store whose disk calls a test can pause (hooked_disk.h).
struct RaceFixture : StoreFixture {
  HookedDisk disk;
  TokenStore raced{tokens, clock, random, disk};
};

}  // namespace

TEST_CASE_METHOD(RaceFixture, "prune goes on when a directory vanishes while it walks", "[store][race]") {
  // As when `apt remove` deletes the token files while a prune run walks
  // them: the directory was listed, and is gone when prune opens it.
  REQUIRE(raced.Issue(Request({"dpkg/p/linux/1"}, 500)));
  const std::string gone = tokens + "/dpkg/p/linux/0gone";
  std::filesystem::create_directories(gone + "/deeper");
  // linux/'s entries are handled in name order, 0gone/ listed before the
  // scope file 1.htpasswd is read, and opened after.
  disk.before = [&](const std::string& op, const std::string& path) {
    if (op == "read" && path == raced.ScopeFilePath("dpkg/p/linux/1")) std::filesystem::remove_all(gone);
  };
  auto pruned = raced.Prune(60);
  INFO((pruned ? std::string("ok") : pruned.error().message));
  REQUIRE(pruned);
  CHECK_FALSE(std::filesystem::exists(gone));
  CHECK(pruned->empty());
}

TEST_CASE_METHOD(RaceFixture, "a revoke racing a renew leaves the token revoked", "[store][race]") {
  // Found on main: a revoke that ran while a renew was between reading the
  // token and renaming its new files over the old ones answered 204, and
  // the renew then brought the token (record and scope file) back.
  auto t = raced.Issue(Request({"dpkg/p/linux/1"}, 10));
  REQUIRE(t);
  const std::string user = t->info.username;
  artifact::Result<artifact::TokenInfo> revoked = artifact::Error{ErrorCode::kInternal, "not run"};
  disk.CompeteAt("rename", "/dpkg/p/linux/1.htpasswd", "/.locks/" + user,
                 [&] { revoked = raced.Revoke(user); });
  auto renewed = raced.Renew(user, clock.Now() + 100);
  disk.Join();
  REQUIRE(disk.competed());
  CHECK(renewed);  // the renew went first ...
  REQUIRE(revoked);  // ... and the revoke, which waited for it, removed the renewed token
  CHECK(raced.Get(user).error().code == ErrorCode::kNotFound);
  CHECK(TokenFiles().empty());
}

TEST_CASE_METHOD(RaceFixture, "removing an expired token never removes the next token's scope file",
                 "[store][race]") {
  // Check-then-unlink: the expiry of X has read that the scope file is X's;
  // before it unlinks it, an issue for the same scope removes the expired X
  // itself and publishes Y there. The unlink must not take Y's file.
  auto x = raced.Issue(Request({"dpkg/p/linux/1"}, 5));
  REQUIRE(x);
  clock.Advance(5);
  artifact::Result<artifact::IssuedToken> y = artifact::Error{ErrorCode::kInternal, "not run"};
  disk.CompeteAt("unlink", "/dpkg/p/linux/1.htpasswd", "/.locks/" + x->info.username,
                 [&] { y = raced.Issue(Request({"dpkg/p/linux/1"})); });
  auto expired = raced.ExpireIfDue(x->info.username, nullptr);
  disk.Join();
  REQUIRE(disk.competed());
  REQUIRE(expired);
  CHECK(expired.value());  // X is gone, removed by the expiry
  CHECK(raced.Get(x->info.username).error().code == ErrorCode::kNotFound);
  // Y either found X busy (409, try again) or was issued after X was gone;
  // an issued Y always has its scope file.
  if (y) {
    auto data = artifact::ReadSmallFile(store.ScopeFilePath("dpkg/p/linux/1"));
    REQUIRE(data);  // on main: gone, unlinked by X's expiry
    auto line = PasswordLine::Parse(data.value());
    REQUIRE(line);
    CHECK(line->info.username == y->info.username);
  } else {
    CHECK(y.error().code == ErrorCode::kConflict);
    CHECK(TokenFiles().empty());
  }
}

TEST_CASE_METHOD(RaceFixture, "a revoke during the issue of its token removes the whole token", "[store][race]") {
  // A request_id's name is known before its issue answers. A revoke that ran
  // between the issue's scope links removed what existed so far, and the
  // issue then published its last scope file with no record: a token that
  // uploads, that no revoke or expiry finds.
  auto req = Request({"dpkg/p/linux/1", "dpkg/p/linux/2"});
  req.request_id = "build-7";
  const std::string name = artifact::TokenNameFor("ci", "build-7");
  artifact::Result<artifact::TokenInfo> revoked = artifact::Error{ErrorCode::kInternal, "not run"};
  disk.CompeteAt("link", "/dpkg/p/linux/2.htpasswd", "/.locks/" + name, [&] { revoked = raced.Revoke(name); });
  auto issued = raced.Issue(req);
  disk.Join();
  REQUIRE(disk.competed());
  REQUIRE(issued);
  REQUIRE(revoked);  // it waited for the whole token, then removed all of it
  CHECK(TokenFiles().empty());
}

TEST_CASE_METHOD(RaceFixture, "a retry whose build gets a file meanwhile keeps its token", "[store][race]") {
  // Found by the attack review of request_id: a retry re-opened the build
  // after it had replaced the token's password; an upload that landed in
  // between made the open answer 409 "published", and the roll-back then
  // revoked the live token the retry had not made (no seal, no log line).
  // Opening again could also thaw a build a revoke had sealed meanwhile.
  auto req = Request({"dpkg/p/linux/1"});
  req.request_id = "build-1";
  auto first = artifact::IssueToken(raced, builds, req);
  REQUIRE(first);
  disk.CompeteAt("rename", "/dpkg/p/linux/1.htpasswd", "/.locks/" + first->info.username, [&] {
    std::ofstream(artifacts + "/dpkg/p/linux/1/landed") << "x";
  });
  auto retry = artifact::IssueToken(raced, builds, req);
  disk.Join();
  REQUIRE(disk.competed());
  REQUIRE(retry);
  CHECK(retry->reissued);
  CHECK(raced.Get(first->info.username));  // still live, with the retry's password
  auto line = PasswordLine::Parse(ReadFile(raced.ScopeFilePath("dpkg/p/linux/1")));
  REQUIRE(line);
  CHECK(artifact::SshaVerify(retry->password, line->hash));
}

TEST_CASE_METHOD(StoreFixture, "retries cannot keep a token past the first issue + max_ttl", "[store]") {
  auto req = Request({"dpkg/p/linux/1"}, 100);
  req.request_id = "build-1";
  req.max_ttl = 150;
  auto first = store.Issue(req);
  REQUIRE(first);
  clock.Advance(90);
  auto retry = store.Issue(req);
  REQUIRE(retry);
  CHECK(retry->info.issued == first->info.issued);
  CHECK(retry->info.expires == first->info.issued + 150);  // not now + 100
  clock.Advance(60);
  CHECK(store.Issue(req).error().code == ErrorCode::kConflict);  // expired: never again
}
