// Only an upload (PUT with the build's token), POST /token and a small
// PROPFIND may send a request body. Any other request that announces one is
// refused with 413 before nginx reads it: an anonymous client cannot make
// nginx spool bodies into artifacts/.incoming, on the artifacts disk.
#include <arpa/inet.h>
#include <catch2/catch.hpp>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "integration/server_fixture.h"

using artifact::testing::IssuedToken;
using artifact::testing::ParseObject;
using artifact::testing::Servers;

namespace {

constexpr size_t kBodyBytes = size_t{50} << 20;  // what each attempt announces
constexpr size_t kPiece = size_t{1} << 20;

using Clock = std::chrono::steady_clock;

// Bytes nginx holds below `dir`: the files in the tree, plus the files its
// processes (the master `master` and its workers) have open there. nginx
// unlinks a request body's temp file right after creating it, so only
// /proc/<pid>/fd shows a body being spooled.
int64_t HeldBytes(const std::string& dir, pid_t master) {
  namespace fs = std::filesystem;
  int64_t total = 0;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    if (it->is_regular_file(ec)) total += static_cast<int64_t>(it->file_size(ec));
  }
  const std::string prefix = dir + "/";
  for (const auto& proc : fs::directory_iterator("/proc", ec)) {
    const std::string pid = proc.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos) continue;
    // /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may hold spaces.
    const std::string stat = artifact::testing::ReadFile(proc.path().string() + "/stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    long ppid = -1;
    try {
      ppid = std::stol(stat.substr(close + 4));
    } catch (const std::exception&) {
      continue;
    }
    if (std::stol(pid) != master && ppid != master) continue;
    std::error_code fd_ec;
    for (const auto& fd : fs::directory_iterator(proc.path() / "fd", fd_ec)) {
      std::error_code link_ec;
      const std::string target = fs::read_symlink(fd.path(), link_ec).string();
      if (link_ec || target.compare(0, prefix.size(), prefix) != 0) continue;
      struct stat st {};
      if (::stat(fd.path().c_str(), &st) == 0) total += st.st_size;
    }
  }
  return total;
}

struct Attempt {
  int status = 0;
  std::string body;      // the answer's body
  size_t sent = 0;       // body bytes sent before the answer came
  int64_t most_held = 0;  // the most HeldBytes() seen while sending
};

int ConnectLoopback(const Servers& s) {
  const std::string base = s.BaseUrl();
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(std::stoi(base.substr(base.rfind(':') + 1))));
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  REQUIRE(fd >= 0);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) REQUIRE(errno == EINPROGRESS);
  pollfd p{fd, POLLOUT, 0};
  REQUIRE(::poll(&p, 1, 5000) == 1);
  return fd;
}

// Sends `bytes` unless nginx answers first (or closes); false then.
bool SendUnlessAnswered(int fd, const std::string& bytes, Clock::time_point deadline) {
  size_t off = 0;
  while (off < bytes.size() && Clock::now() < deadline) {
    pollfd p{fd, POLLIN | POLLOUT, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    if ((p.revents & (POLLIN | POLLERR | POLLHUP)) != 0) return false;
    ssize_t n = ::send(fd, bytes.data() + off, bytes.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
    if (n > 0) off += static_cast<size_t>(n);
  }
  return off == bytes.size();
}

// Reads one answer: the status line, the headers, Content-Length bytes of body.
void ReadAnswer(int fd, bool head, Clock::time_point deadline, Attempt* out) {
  std::string in;
  size_t need = std::string::npos;
  while (Clock::now() < deadline && (need == std::string::npos || in.size() < need)) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    in.append(buf, static_cast<size_t>(n));
    const auto end = in.find("\r\n\r\n");
    if (need == std::string::npos && end != std::string::npos) {
      size_t length = 0;
      std::string lower = in.substr(0, end);
      for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      const auto cl = lower.find("\r\ncontent-length:");
      if (cl != std::string::npos && !head) length = std::stoul(lower.substr(cl + 17));
      need = end + 4 + length;
    }
  }
  if (in.rfind("HTTP/1.", 0) == 0 && in.size() >= 12) out->status = std::stoi(in.substr(9, 3));
  const auto end = in.find("\r\n\r\n");
  if (end != std::string::npos) out->body = in.substr(end + 4);
}

// Sends `method target` with a 50 MiB body (Content-Length, or chunked),
// 1 MiB at a time, waiting up to 20 ms for an answer after each piece and
// measuring what nginx holds below `incoming` meanwhile. Bounded: 50 pieces,
// 60 s in all.
Attempt SendBody(const Servers& s, const std::string& method, const std::string& target,
                 const std::map<std::string, std::string>& headers, bool chunked, const std::string& incoming) {
  static const std::string piece = artifact::testing::RandomBytes(kPiece);
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  Attempt out;
  int fd = ConnectLoopback(s);
  std::string head = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  for (const auto& [k, v] : headers) head += k + ": " + v + "\r\n";
  head += chunked ? std::string("Transfer-Encoding: chunked\r\n") : "Content-Length: " + std::to_string(kBodyBytes) + "\r\n";
  head += "Connection: close\r\n\r\n";
  bool sending = SendUnlessAnswered(fd, head, deadline);
  for (size_t i = 0; sending && i < kBodyBytes / kPiece; ++i) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) != 0) break;  // the answer came (or the connection ended)
    std::string bytes = chunked ? "100000\r\n" + piece + "\r\n" : piece;
    if (chunked && i + 1 == kBodyBytes / kPiece) bytes += "0\r\n\r\n";
    sending = SendUnlessAnswered(fd, bytes, deadline);
    if (sending) out.sent += kPiece;
    out.most_held = std::max(out.most_held, HeldBytes(incoming, s.nginx_pid()));
  }
  ReadAnswer(fd, method == "HEAD", deadline, &out);
  ::close(fd);
  return out;
}

// The regular files below `dir` (temp files nginx left behind).
std::vector<std::string> FilesBelow(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_directory()) out.push_back(e.path().string());
  }
  return out;
}

}  // namespace

TEST_CASE("a request that needs no body is refused with 413 before nginx reads or spools one",
          "[integration][attack]") {
  Servers s;
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/p/linux/1"));
  const auto auth = Servers::Basic(t.username, t.password);
  REQUIRE(s.Put("/dpkg/p/linux/1/f", "artifact", t.username, t.password).status == 201);
  REQUIRE(s.Mkcol("/dpkg/p/linux/1/d/", t.username, t.password).status == 201);
  const std::string incoming = s.artifacts_dir() + "/.incoming";
  REQUIRE(HeldBytes(incoming, s.nginx_pid()) == 0);

  struct Case {
    std::string method, target;
    std::map<std::string, std::string> headers;
    bool chunked = false;
  };
  const std::vector<Case> cases = {
      {"GET", "/dpkg/p/linux/1/f", {}, false},
      {"GET", "/dpkg/p/linux/latest/f", {}, false},  // rewritten to the app
      {"GET", "/dpkg/p/linux/latest/f", {}, true},
      {"PUT", "/dpkg/p/linux/latest/f", {}, false},  // a write method, but no build
      {"HEAD", "/dpkg/p/linux/1/f", {}, false},
      {"OPTIONS", "/dpkg/p/linux/1/", {}, false},
      {"GET", "/token/metrics", {}, false},
      {"GET", "/dpkg/p/linux/1/?format=json", {}, false},
      {"GET", "/token/healthz", {}, true},
      // With the build's token: a directory DELETE goes to the app, which
      // needs no body either.
      {"DELETE", "/dpkg/p/linux/1/d/", {{"Authorization", auth}}, false},
  };
  for (const auto& c : cases) {
    INFO(c.method << " " << c.target << (c.chunked ? " chunked" : " with Content-Length"));
    Attempt a = SendBody(s, c.method, c.target, c.headers, c.chunked, incoming);
    CHECK(a.status == 413);
    // nginx answered before the body was sent, and held none of it.
    CHECK(a.sent < kBodyBytes);
    CHECK(a.most_held == 0);
    if (c.method != "HEAD") {
      INFO(a.body);
      const bool is_json = a.body.rfind('{', 0) == 0;
      CHECK(is_json);
      if (is_json) {
        auto json = ParseObject(a.body);
        CHECK(json->getValue<std::string>("error") == "body_not_allowed");
        CHECK(json->getValue<std::string>("message").find("may send a request body") != std::string::npos);
      }
    }
    CHECK(HeldBytes(incoming, s.nginx_pid()) == 0);
  }
  // Nothing was written or left below .incoming, and the directory is still there.
  CHECK(FilesBelow(incoming).empty());
  CHECK(std::filesystem::is_directory(s.artifacts_dir() + "/dpkg/p/linux/1/d"));

  // What may send a body still does: an upload larger than nginx's memory
  // buffer (so it goes through .incoming), a small PROPFIND, POST /token.
  const std::string big = artifact::testing::RandomBytes(size_t{2} << 20);
  CHECK(s.Put("/dpkg/p/linux/1/big", big, t.username, t.password).status == 201);
  CHECK(s.Get("/dpkg/p/linux/1/big").body == big);
  // One whose directories the app makes first (an auth_request subrequest).
  CHECK(s.Put("/dpkg/p/linux/1/new/dir/big", big, t.username, t.password).status == 201);
  CHECK(s.Get("/dpkg/p/linux/1/new/dir/big").body == big);
  const std::string propfind =
      "<?xml version=\"1.0\"?><D:propfind xmlns:D=\"DAV:\"><D:prop><D:getcontentlength/></D:prop></D:propfind>";
  CHECK(s.Request("PROPFIND", "/dpkg/p/linux/1/", propfind, {{"Depth", "1"}}).status == 207);
  CHECK(s.IssueRaw(Servers::ScopeBody("dpkg/p/linux/2"), s.MasterAuth()).status == 201);
  CHECK(FilesBelow(incoming).empty());
}
