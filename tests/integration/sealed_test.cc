// Sealed means sealed (issue 14), on real nginx + app: uploads in flight
// across a revoke or an expiry fail and leave nothing, expiry seals, client
// times decide nothing, retention keeps latest, operators and masters can
// seal a build whose token vanished, a failed seal says so, and the API
// keeps answering while large seals run.
#include <Poco/JSON/Object.h>
#include <arpa/inet.h>
#include <catch2/catch.hpp>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "integration/server_fixture.h"
#include "unit/tar_builder.h"

using artifact::testing::HttpResponse;
using artifact::testing::IssuedToken;
using artifact::testing::ParseObject;
using artifact::testing::ReadFile;
using artifact::testing::Servers;
using artifact::testing::ServerOptions;
namespace fs = std::filesystem;

namespace {

// Files nginx is writing a request body into (artifacts/.incoming/...).
size_t BodiesInFlight(const Servers& s) {
  size_t n = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(s.artifacts_dir() + "/.incoming", ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->is_regular_file(ec)) ++n;
  }
  return n;
}

// The first part of a slow upload: more than nginx's client_body_buffer_size
// (256k in nginx/artifact-repository.conf.in), so that nginx has written it
// to its temp file, which is what WaitForBodies sees.
constexpr size_t kPastBuffer = 400000;

// An upload whose body is sent in two parts: the headers and a first part
// now (nginx checks the token and starts its temp file), the rest on
// Finish(). A PUT of filler bytes, or `method` with `body` (and headers).
class SlowPut {
 public:
  SlowPut(const Servers& s, const std::string& target, const std::string& auth, size_t total, size_t first,
          const std::string& method = "PUT", std::string body = "", const std::string& headers = "")
      : total_(body.empty() ? total : body.size()), body_(std::move(body)) {
    if (body_.empty()) body_ = std::string(first, 'x') + std::string(total - first, 'y');
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(s.BaseUrl().substr(s.BaseUrl().rfind(':') + 1))));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    Send(method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + auth + "\r\n" + headers +
         "Content-Length: " + std::to_string(total_) + "\r\nConnection: close\r\n\r\n" + body_.substr(0, first));
    sent_ = first;
  }
  ~SlowPut() {
    if (fd_ >= 0) ::close(fd_);
  }
  SlowPut(const SlowPut&) = delete;
  SlowPut& operator=(const SlowPut&) = delete;

  // Sends the rest of the body; returns the response's status (0: none).
  int Finish() {
    Send(body_.substr(sent_));
    std::string in;
    char buf[4096];
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (in.find("\r\n") == std::string::npos) {
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
    }
    if (in.compare(0, 9, "HTTP/1.1 ") != 0 || in.size() < 12) return 0;
    return std::stoi(in.substr(9, 3));
  }

 private:
  void Send(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;  // nginx may close early: Finish() reads its answer
      off += static_cast<size_t>(n);
    }
  }
  int fd_ = -1;
  size_t total_;
  std::string body_;
  size_t sent_ = 0;
};

// Waits (10 s at most) until nginx has `n` bodies in flight: each upload
// passed its token check and is being written.
bool WaitForBodies(const Servers& s, size_t n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (BodiesInFlight(s) < n) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// Waits (10 s at most) until nginx has removed every body's temp file: a
// request's is removed when its connection is done with it.
bool WaitForNoBodies(const Servers& s) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (BodiesInFlight(s) > 0) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

std::string ScopeOf(int build) { return "dpkg/sealed/amd64/" + std::to_string(build); }
std::string UrlOf(int build) { return "/" + ScopeOf(build) + "/"; }

}  // namespace

TEST_CASE("uploads in flight across a revoke fail and leave nothing", "[integration][sealed]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody(ScopeOf(1)));
  const std::string auth = Servers::Basic(t.username, t.password);
  REQUIRE(s.Put(UrlOf(1) + "pkg.bin", "original", t.username, t.password).status == 201);
  REQUIRE(s.Mkcol(UrlOf(1) + "sub/", t.username, t.password).status == 201);

  // A new file, a replacement, a file in a subdirectory and a forged
  // manifest, all started with the token live.
  SlowPut fresh(s, UrlOf(1) + "new.bin", auth, 700000, kPastBuffer);
  SlowPut replace(s, UrlOf(1) + "pkg.bin", auth, 700000, kPastBuffer);
  SlowPut nested(s, UrlOf(1) + "sub/deep.bin", auth, 700000, kPastBuffer);
  REQUIRE(WaitForBodies(s, 3));

  HttpResponse revoked = s.Revoke(t.username, "?result=success");
  REQUIRE(revoked.status == 200);
  const std::string manifest = s.Get(UrlOf(1) + "SHA256SUMS").body;
  REQUIRE(manifest.find(" pkg.bin\n") != std::string::npos);

  CHECK(fresh.Finish() >= 400);
  CHECK(replace.Finish() >= 400);
  CHECK(nested.Finish() >= 400);
  CHECK(s.Get(UrlOf(1) + "new.bin").status == 404);
  CHECK(s.Get(UrlOf(1) + "sub/deep.bin").status == 404);
  CHECK(s.Get(UrlOf(1) + "pkg.bin").body == "original");
  CHECK(s.Get(UrlOf(1) + "SHA256SUMS").body == manifest);
  CHECK(s.Get("/dpkg/sealed/amd64/latest/pkg.bin").status == 302);
  CHECK(BodiesInFlight(s) == 0);
}

TEST_CASE("a tree upload in flight across a revoke fails and leaves nothing", "[integration][sealed][upload]") {
  using namespace artifact::testing;
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody(ScopeOf(3)));
  const std::string auth = Servers::Basic(t.username, t.password);
  REQUIRE(s.Put(UrlOf(3) + "pkg.bin", "original", t.username, t.password).status == 201);
  const std::string archive = TarFile("./logs/late.log", std::string(500000, 'l')) +
                              TarFile("./pkg.bin", "replaced") + TarEnd();
  SlowPut tree(s, UrlOf(3), auth, 0, kPastBuffer, "POST", archive, "Content-Type: application/x-tar\r\n");
  REQUIRE(WaitForBodies(s, 1));
  REQUIRE(s.Revoke(t.username, "?result=success").status == 200);
  const std::string manifest = s.Get(UrlOf(3) + "SHA256SUMS").body;
  CHECK(tree.Finish() >= 400);
  CHECK(s.Get(UrlOf(3) + "logs/late.log").status == 404);
  CHECK(s.Get(UrlOf(3) + "pkg.bin").body == "original");
  CHECK(s.Get(UrlOf(3) + "SHA256SUMS").body == manifest);
  CHECK(WaitForNoBodies(s));
  // Nothing staged is left beside the build.
  for (const auto& e : fs::directory_iterator(s.artifacts_dir() + "/dpkg/sealed/amd64")) {
    CHECK(e.path().filename().string().find(".upload-") == std::string::npos);
  }
}

TEST_CASE("an expired token seals its build as expired and uploads in flight fail", "[integration][sealed]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody(ScopeOf(2), 3));
  const std::string auth = Servers::Basic(t.username, t.password);
  REQUIRE(s.Put(UrlOf(2) + "pkg.bin", "payload", t.username, t.password).status == 201);
  SlowPut late(s, UrlOf(2) + "late.bin", auth, 700000, kPastBuffer);
  REQUIRE(WaitForBodies(s, 1));

  // The expiry timer removes the token within a second of its expiry and
  // seals the build: wait for the seal's log line (bounded), then finish.
  REQUIRE(s.WaitForAppLog("username=" + t.username + " files=1", std::chrono::seconds(10)));
  CHECK(late.Finish() >= 400);
  CHECK(s.Get(UrlOf(2) + "late.bin").status == 404);
  HttpResponse sums = s.Get(UrlOf(2) + "SHA256SUMS");
  CHECK(sums.status == 200);
  CHECK(sums.body.find(" pkg.bin\n") != std::string::npos);
  auto record = ParseObject(ReadFile(s.artifacts_dir() + "/" + ScopeOf(2) + "/.build.json"));
  CHECK(record->getValue<std::string>("result") == "expired");
  CHECK(record->getValue<bool>("latest_eligible") == false);
  // Never latest, and a later revoke finds no token.
  CHECK(s.Get("/dpkg/sealed/amd64/latest/").status == 404);
  CHECK(s.Revoke(t.username).status == 404);
}

TEST_CASE("client Date headers decide neither latest nor retention", "[integration][sealed]") {
  Servers s;
  // Build 1 is issued first, so it is older, whatever its files' mtimes say.
  IssuedToken old_build = s.Issue(Servers::ScopeBody(ScopeOf(1)));
  IssuedToken new_build = s.Issue(Servers::ScopeBody(ScopeOf(2)));
  auto put_dated = [&](int build, const IssuedToken& t, const std::string& date) {
    return s.Request("PUT", UrlOf(build) + "pkg.bin", "bytes",
                     {{"Authorization", Servers::Basic(t.username, t.password)}, {"Date", date}});
  };
  REQUIRE(put_dated(1, old_build, "Wed, 01 Jan 2031 00:00:00 GMT").status == 201);
  REQUIRE(put_dated(2, new_build, "Mon, 01 Jan 2001 00:00:00 GMT").status == 201);
  // nginx did take the client's word for the file's time...
  struct stat st{};
  REQUIRE(::stat((s.artifacts_dir() + "/" + ScopeOf(1) + "/pkg.bin").c_str(), &st) == 0);
  REQUIRE(st.st_mtime > 1900000000);
  // ...and nothing the server decides follows it.
  REQUIRE(s.Revoke(new_build.username).status == 200);
  REQUIRE(s.Revoke(old_build.username).status == 200);
  HttpResponse latest = s.Get("/dpkg/sealed/amd64/latest/pkg.bin");
  CHECK(latest.status == 302);
  CHECK(latest.headers["location"].find("/amd64/2/pkg.bin") != std::string::npos);
  auto dry = s.Cli("retention --dry-run --retention 'dpkg/:keep=1'");
  CHECK(dry.exit_code == 0);
  INFO(dry.out);
  CHECK(dry.out.find(ScopeOf(1)) != std::string::npos);
  CHECK(dry.out.find(ScopeOf(2)) == std::string::npos);
}

TEST_CASE("retention never removes the build latest points at", "[integration][sealed]") {
  Servers s;
  // 1 succeeds (latest); 2 and 3, newer, fail.
  for (int build : {1, 2, 3}) {
    IssuedToken t = s.Issue(Servers::ScopeBody(ScopeOf(build)));
    REQUIRE(s.Put(UrlOf(build) + "pkg.bin", "b" + std::to_string(build), t.username, t.password).status == 201);
    REQUIRE(s.Revoke(t.username, build == 1 ? "?result=success" : "?result=failure").status == 200);
  }
  auto run = s.Cli("retention --retention 'dpkg/:keep=1'");
  INFO(run.out);
  CHECK(run.exit_code == 0);
  CHECK(s.Get(UrlOf(1) + "pkg.bin").status == 200);  // latest
  CHECK(s.Get(UrlOf(2) + "pkg.bin").status == 404);  // neither newest nor latest
  CHECK(s.Get(UrlOf(3) + "pkg.bin").status == 200);  // newest
  CHECK(s.Get("/dpkg/sealed/amd64/latest/pkg.bin").status == 302);
}

TEST_CASE("a build whose token vanished is sealed by its master or the operator", "[integration][sealed]") {
  Servers s;
  IssuedToken a = s.Issue(Servers::ScopeBody(ScopeOf(1)));
  IssuedToken b = s.Issue(Servers::ScopeBody(ScopeOf(2)));
  REQUIRE(s.Put(UrlOf(1) + "pkg.bin", "one", a.username, a.password).status == 201);
  REQUIRE(s.Put(UrlOf(2) + "pkg.bin", "two", b.username, b.password).status == 201);
  // A live token: sealing is the revoke's job.
  HttpResponse live = s.Request("POST", "/token/seal/" + ScopeOf(1) + "?result=success", "",
                                {{"Authorization", s.MasterAuth()}});
  CHECK(live.status == 409);
  REQUIRE(s.Revoke(a.username, "?seal=false").status == 204);
  REQUIRE(s.Revoke(b.username, "?seal=false").status == 204);
  CHECK(s.Get(UrlOf(1) + "SHA256SUMS").status == 404);

  HttpResponse sealed = s.Request("POST", "/token/seal/" + ScopeOf(1) + "?result=success", "",
                                  {{"Authorization", s.MasterAuth()}});
  INFO(sealed.body);
  CHECK(sealed.status == 200);
  CHECK(s.Get(UrlOf(1) + "SHA256SUMS").status == 200);
  CHECK(s.Get("/dpkg/sealed/amd64/latest/pkg.bin").headers["location"].find("/amd64/1/") != std::string::npos);
  // Again: the record, unchanged.
  HttpResponse again = s.Request("POST", "/token/seal/" + ScopeOf(1) + "?result=failure", "",
                                 {{"Authorization", s.MasterAuth()}});
  CHECK(again.status == 200);
  CHECK(ParseObject(again.body)->getValue<std::string>("result") == "success");
  // Without master credentials: 401.
  CHECK(s.Request("POST", "/token/seal/" + ScopeOf(2)).status == 401);
  // The log says "requested" for the one request that sealed, not for the
  // refused one (409) nor for the one that found the build sealed.
  const std::string requested =
      "seal master=" + s.master_user() + " username=- scopes=" + ScopeOf(1) + " outcome=requested";
  const std::string log = s.AppLog();
  size_t count = 0;
  for (auto at = log.find(requested); at != std::string::npos; at = log.find(requested, at + 1)) ++count;
  CHECK(count == 1);

  auto cli = s.Cli("seal " + ScopeOf(2));
  INFO(cli.out);
  CHECK(cli.exit_code == 0);
  CHECK(cli.out.find("1 files") != std::string::npos);
  auto record = ParseObject(ReadFile(s.artifacts_dir() + "/" + ScopeOf(2) + "/.build.json"));
  CHECK(record->getValue<std::string>("result") == "failure");
  // Sealed: the directory takes no more writes, not even from the app's user.
  struct stat st{};
  REQUIRE(::stat((s.artifacts_dir() + "/" + ScopeOf(2)).c_str(), &st) == 0);
  CHECK((st.st_mode & 0222) == 0);
  CHECK(s.Cli("seal " + ScopeOf(2)).out.find("sealed already") != std::string::npos);
  CHECK(s.Cli("seal dpkg/sealed/amd64/99").exit_code == 1);
}

TEST_CASE("a seal that fails answers 500 and names no server path", "[integration][sealed]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody(ScopeOf(1)));
  REQUIRE(s.Put(UrlOf(1) + "pkg.bin", "one", t.username, t.password).status == 201);
  // A directory where the manifest goes (made before tokens could not make
  // it): the seal cannot write SHA256SUMS.
  const std::string in_the_way = s.artifacts_dir() + "/" + ScopeOf(1) + "/SHA256SUMS";
  REQUIRE(fs::create_directory(in_the_way));
  fs::permissions(in_the_way, fs::perms::all);
  HttpResponse r = s.Revoke(t.username, "?result=success");
  INFO(r.body);
  CHECK(r.status == 500);
  CHECK(ParseObject(r.body)->getValue<std::string>("error") == "seal_failed");
  CHECK(r.body.find(s.artifacts_dir()) == std::string::npos);
  CHECK(r.body.find("/var/") == std::string::npos);
  // The build is back under its name and still frozen; no latest.
  CHECK(s.Get(UrlOf(1) + "pkg.bin").body == "one");
  CHECK(s.Get("/dpkg/sealed/amd64/latest/").status == 404);
  CHECK(s.WaitForAppLog("outcome=failed"));
}

TEST_CASE("healthz and issue answer within 500 ms while four 50,000-file builds are sealed",
          "[integration][sealed][slow]") {
  ServerOptions options;
  options.app_processes = 2;
  Servers s(options);
  std::vector<IssuedToken> tokens;
  for (int build = 1; build <= 4; ++build) {
    tokens.push_back(s.Issue(Servers::ScopeBody(ScopeOf(build))));
    // Written straight into the build directory: 50,000 PUTs would take
    // minutes and test nginx, not the seal.
    const std::string dir = s.artifacts_dir() + "/" + ScopeOf(build);
    for (int i = 0; i < 50000; ++i) std::ofstream(dir + "/f" + std::to_string(i)) << i;
  }
  std::vector<HttpResponse> revokes;
  for (const auto& t : tokens) revokes.push_back(s.Revoke(t.username, "?result=success"));
  for (const auto& r : revokes) REQUIRE(r.status == 202);  // hashing left the request path

  // While the seals run (bounded: 60 s), healthz and an issue keep answering.
  double worst_ms = 0;
  int probes = 0;
  int running = 4;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (int round = 0; running > 0 && std::chrono::steady_clock::now() < deadline; ++round) {
    const auto start = std::chrono::steady_clock::now();
    HttpResponse health = s.Get("/token/healthz");
    HttpResponse issued = s.IssueRaw(Servers::ScopeBody("dpkg/sealed/probe/" + std::to_string(round)));
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    CHECK(health.status == 200);
    CHECK(issued.status == 201);
    worst_ms = std::max(worst_ms, ms);
    ++probes;
    running = 0;
    for (const auto& t : tokens) {
      HttpResponse st = s.Request("GET", "/token/" + t.username + "/seal", "", {{"Authorization", s.MasterAuth()}});
      if (st.status == 200 && ParseObject(st.body)->getValue<std::string>("state") == "running") ++running;
    }
  }
  INFO("probes " << probes << ", worst healthz + issue " << worst_ms << " ms");
  CHECK(running == 0);
  CHECK(probes >= 2);
  CHECK(worst_ms < 500);
  for (int build = 1; build <= 4; ++build) {
    CHECK(ParseObject(ReadFile(s.artifacts_dir() + "/" + ScopeOf(build) + "/.build.json"))
              ->getValue<int>("files") == 50000);
  }
  std::printf("FIGURE sealed: %d probes during four 50,000-file seals, worst healthz+issue %.1f ms\n", probes,
              worst_ms);
}

TEST_CASE("a token cannot make a build too deep for its seal", "[integration][sealed]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody(ScopeOf(1)));
  std::string deep = UrlOf(1);
  for (int i = 0; i < 40; ++i) deep += "a/";
  // Issue 14's attack: 1,100 levels made by one PUT exhausted the seal's
  // descriptors and left the deepest directories writable after the revoke.
  HttpResponse put = s.Put(deep + "f.txt", "x", t.username, t.password);
  CHECK(put.status >= 400);
  CHECK(s.Mkcol(deep, t.username, t.password).status >= 400);
  CHECK_FALSE(fs::exists(s.artifacts_dir() + "/" + ScopeOf(1) + "/a"));
  std::string ok = UrlOf(1);
  for (int i = 0; i < 31; ++i) ok += "b/";
  CHECK(s.Put(ok + "f.txt", "x", t.username, t.password).status == 201);
  CHECK(s.Revoke(t.username).status == 200);
}

TEST_CASE("an issue while a seal has the build renamed away cannot reopen it", "[integration][sealed]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody(ScopeOf(1)));
  REQUIRE(s.Put(UrlOf(1) + "pkg.bin", "sealed bytes", t.username, t.password).status == 201);
  REQUIRE(s.Revoke(t.username, "?result=success").status == 200);
  // The moment of Builds::WriteIntoFrozen, frozen in time (as a seal that
  // died there leaves it): the build's root is under its hidden name.
  const std::string builder = s.artifacts_dir() + "/dpkg/sealed/amd64";
  fs::rename(builder + "/1", builder + "/.sealing-1");
  HttpResponse again = s.IssueRaw(Servers::ScopeBody(ScopeOf(1)));
  INFO(again.body);
  CHECK(again.status == 409);
  CHECK(fs::is_directory(builder + "/1"));  // put back under its name
  CHECK_FALSE(fs::exists(builder + "/.sealing-1"));
  CHECK(s.Get(UrlOf(1) + "pkg.bin").body == "sealed bytes");
  struct stat st{};
  REQUIRE(::stat((builder + "/1").c_str(), &st) == 0);
  CHECK((st.st_mode & 0222) == 0);  // still frozen
}

TEST_CASE("only the master that opened a build may seal it", "[integration][sealed]") {
  Servers s;
  s.AddMaster("other", "other-password");
  IssuedToken t = s.Issue(Servers::ScopeBody(ScopeOf(1)));
  REQUIRE(s.Put(UrlOf(1) + "pkg.bin", "x", t.username, t.password).status == 201);
  REQUIRE(s.Revoke(t.username, "?seal=false").status == 204);
  HttpResponse r = s.Request("POST", "/token/seal/" + ScopeOf(1) + "?result=success", "",
                             {{"Authorization", Servers::Basic("other", "other-password")}});
  CHECK(r.status == 403);
  CHECK(s.Get(UrlOf(1) + "SHA256SUMS").status == 404);
}
