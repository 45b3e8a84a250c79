#include "integration/server_fixture.h"

#include <Poco/Base64Encoder.h>
#include <Poco/JSON/Parser.h>
#include <Poco/Net/HTTPClientSession.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/StreamCopier.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/rand.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace artifact::testing {
namespace {

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw std::runtime_error("no free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

pid_t ReadPid(const std::string& path) {
  std::string text = ReadFile(path);
  return text.empty() ? -1 : static_cast<pid_t>(std::stol(text));
}

bool Alive(pid_t pid) { return pid > 0 && ::kill(pid, 0) == 0; }

// Waits for a child, bounded; true when it was reaped.
bool WaitChild(pid_t pid, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid || r < 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

Poco::JSON::Object::Ptr ParseObject(const std::string& text) {
  Poco::JSON::Parser parser;
  return parser.parse(text).extract<Poco::JSON::Object::Ptr>();
}

std::string Sha256Hex(const std::string& data) {
  std::string path = std::filesystem::temp_directory_path() / ("artifact-sha-" + std::to_string(::getpid()));
  std::ofstream(path, std::ios::binary) << data;
  FILE* p = ::popen(("sha256sum '" + path + "'").c_str(), "r");
  char buf[65] = {};
  size_t n = std::fread(buf, 1, 64, p);
  ::pclose(p);
  std::filesystem::remove(path);
  return std::string(buf, n);
}

std::string RandomBytes(size_t n) {
  std::string s(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), static_cast<int>(n));
  return s;
}

std::string Servers::Basic(const std::string& user, const std::string& password) {
  std::ostringstream out;
  Poco::Base64Encoder enc(out);
  enc.rdbuf()->setLineLength(0);
  enc << user << ":" << password;
  enc.close();
  return "Basic " + out.str();
}

std::string Servers::ScopeBody(const std::string& scope, int ttl) {
  return "{\"scope\": \"" + scope + "\", \"ttl\": " + std::to_string(ttl) + "}";
}

HttpResponse Servers::IssueRaw(const std::string& json_body, const std::string& auth) const {
  return Request("POST", "/token", json_body,
                 {{"Authorization", auth.empty() ? MasterAuth() : auth}, {"Content-Type", "application/json"}});
}

IssuedToken Servers::Issue(const std::string& json_body) const {
  auto r = IssueRaw(json_body);
  if (r.status != 201) {
    throw std::runtime_error("POST /token " + json_body + " answered " + std::to_string(r.status) + ": " + r.body);
  }
  IssuedToken t;
  t.json = ParseObject(r.body);
  t.username = t.json->getValue<std::string>("username");
  t.password = t.json->getValue<std::string>("password");
  return t;
}

HttpResponse Servers::Revoke(const std::string& username, const std::string& query) const {
  return Request("DELETE", "/token/" + username + query, "", {{"Authorization", MasterAuth()}});
}

Servers::Servers(ServerOptions options) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "artifact-it-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  base_ = tmpl;
  ::chmod(base_.c_str(), 0755);  // nginx's workers and the app run as www-data under root
  state_ = base_ + "/state";
  tokens_dir_ = options.shared_tokens_dir.empty() ? state_ + "/tokens" : options.shared_tokens_dir;
  artifacts_dir_ = options.shared_artifacts_dir.empty() ? state_ + "/artifacts" : options.shared_artifacts_dir;
  master_password_ = "pw-" + std::to_string(::getpid()) + "-" + std::to_string(FreePort());
  for (const auto& [dir, opts] : {std::pair<std::string, std::string>{state_ + "/tokens", options.tokens_tmpfs},
                                  {state_ + "/artifacts", options.artifacts_tmpfs}}) {
    if (opts.empty()) continue;
    std::filesystem::create_directories(dir);
    const std::string cmd = "mount -t tmpfs -o '" + opts + "' tmpfs '" + dir + "' 2>&1";
    if (::geteuid() != 0 || std::system(cmd.c_str()) != 0) {
      throw std::runtime_error("cannot mount a tmpfs at " + dir + " (the disk-full tests need root)");
    }
    mounts_.push_back(dir);
  }
  // A port taken between FreePort() and nginx's bind makes run.sh exit: retry.
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (Start(options)) return;
  }
  std::string log = ReadFile(base_ + "/run.log");
  Stop();
  throw std::runtime_error("servers did not start:\n" + log);
}

pid_t Servers::Spawn(const std::vector<std::string>& argv_in) const {
  const std::string log = base_ + "/run.log";
  std::vector<std::string> argv = argv_in;
  std::vector<std::string> env = env_;
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> envp, args;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
  return pid;
}

bool Servers::WaitHealthy(pid_t watched, bool need_banner) {
  // Ready when /token/healthz answers 200 through nginx and, with run.sh,
  // when run.sh has finished its own checks (its banner is out), so nothing
  // of the start-up runs into the test. Bounded: 20 s.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(watched, &status, WNOHANG) == watched) return false;
    try {
      if ((!need_banner ||
           ReadFile(base_ + "/run.log").find("Ctrl-C stops both servers.") != std::string::npos) &&
          Get("/token/healthz").status == 200) {
        return true;
      }
    } catch (const std::exception&) {
      // not listening yet
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  return false;
}

bool Servers::Start(const ServerOptions& options) {
  port_ = FreePort();
  env_ = {
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "ARTIFACT_BIN=" + std::string(ARTIFACT_TOKEN_BIN),
      "ARTIFACT_STATE_DIR=" + state_,
      "ARTIFACT_LISTEN=127.0.0.1:" + std::to_string(port_),
      "ARTIFACT_MASTER_USER=" + master_user_,
      "ARTIFACT_MASTER_PASSWORD=" + master_password_,
      "ARTIFACT_SCOPE_DEPTH=" + std::to_string(options.scope_depth),
      "ARTIFACT_TOKEN_RATE=" + options.token_rate,
      "ARTIFACT_TOKEN_BURST=" + std::to_string(options.token_burst),
      "ARTIFACT_PROCESSES=" + std::to_string(options.app_processes),
      "ARTIFACT_TRUSTED_PROXIES=" + options.trusted_proxies,
      "ARTIFACT_TOKENS_DIR=" + tokens_dir_,
      "ARTIFACT_ARTIFACTS_DIR=" + artifacts_dir_,
  };
  if (!options.via_run_script) return StartDirect(options);
  runner_pid_ = Spawn({"/bin/bash", std::string(ARTIFACT_SOURCE_DIR) + "/scripts/run.sh"});
  if (!WaitHealthy(runner_pid_, true)) {
    Stop();
    return false;
  }
  app_pid_ = ReadPid(state_ + "/app.pid");
  nginx_pid_ = ReadPid(state_ + "/nginx-master.pid");
  return true;
}

bool Servers::StartDirect(const ServerOptions&) {
  const std::string scripts = std::string(ARTIFACT_SOURCE_DIR) + "/scripts/";
  pid_t prep = Spawn({"/bin/bash", scripts + "prepare-state.sh", state_});
  int status = 0;
  ::waitpid(prep, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return false;
  const std::string masters = state_ + "/masters";
  std::ofstream(masters, std::ios::app).close();
  ::chmod(masters.c_str(), 0640);
  struct stat st{};
  if (::stat(tokens_dir().c_str(), &st) == 0) (void)::chown(masters.c_str(), 0, st.st_gid);
  AddMaster(master_user_, master_password_);
  nginx_pid_ = Spawn({"/bin/bash", scripts + "start-nginx.sh", state_});
  StartApp();
  return app_pid_ > 0;
}

void Servers::StartApp() {
  app_pid_ = Spawn({"/bin/bash", std::string(ARTIFACT_SOURCE_DIR) + "/scripts/start-app.sh", state_});
  if (!WaitHealthy(app_pid_, false)) {
    throw std::runtime_error("the app did not come up:\n" + AppLog());
  }
}

void Servers::KillApp(int sig) {
  if (runner_pid_ > 0) throw std::logic_error("KillApp needs via_run_script = false");
  ::kill(app_pid_, sig);
  if (!WaitChild(app_pid_, std::chrono::seconds(10))) {
    ::kill(app_pid_, SIGKILL);
    WaitChild(app_pid_, std::chrono::seconds(5));
  }
}

bool Servers::Stop() {
  if (runner_pid_ < 0) {
    // Direct mode: the servers are our own children.
    for (pid_t pid : {app_pid_, nginx_pid_}) {
      if (pid <= 0 || !Alive(pid)) continue;
      ::kill(pid, SIGTERM);
      if (!WaitChild(pid, std::chrono::seconds(10))) {
        ::kill(pid, SIGKILL);
        WaitChild(pid, std::chrono::seconds(5));
      }
    }
  }
  if (runner_pid_ > 0) {
    ::kill(runner_pid_, SIGTERM);
    if (!WaitChild(runner_pid_, std::chrono::seconds(10))) {
      ::kill(runner_pid_, SIGKILL);
      WaitChild(runner_pid_, std::chrono::seconds(5));
    }
    runner_pid_ = -1;
  }
  // run.sh waits for both servers before it exits; give the kernel a moment
  // to reap them (they are run.sh's children, not ours), bounded.
  for (int i = 0; i < 100 && (Alive(app_pid_) || Alive(nginx_pid_)); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return !Alive(app_pid_) && !Alive(nginx_pid_);
}

Servers::~Servers() {
  if (!Stop()) {
    // Never leave our own servers behind, even when run.sh failed to.
    if (Alive(app_pid_)) ::kill(app_pid_, SIGKILL);
    if (Alive(nginx_pid_)) ::kill(nginx_pid_, SIGKILL);
  }
  for (const auto& dir : mounts_) std::system(("umount '" + dir + "'").c_str());
  std::error_code ec;
  std::filesystem::remove_all(base_, ec);
}

HttpResponse Servers::Request(const std::string& method, const std::string& target, const std::string& body,
                              const std::map<std::string, std::string>& headers) const {
  Poco::Net::HTTPClientSession session("127.0.0.1", static_cast<Poco::UInt16>(port_));
  session.setTimeout(Poco::Timespan(30, 0));
  Poco::Net::HTTPRequest req(method, target, Poco::Net::HTTPMessage::HTTP_1_1);
  for (const auto& [k, v] : headers) req.set(k, v);
  if (method != "GET" && method != "HEAD") req.setContentLength(static_cast<std::streamsize>(body.size()));
  session.sendRequest(req) << body;
  Poco::Net::HTTPResponse resp;
  std::istream& in = session.receiveResponse(resp);
  HttpResponse out;
  out.status = static_cast<int>(resp.getStatus());
  out.reason = resp.getReason();
  for (const auto& [k, v] : resp) {
    std::string key = k;
    for (char& c : key) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[key] = v;
  }
  if (method != "HEAD") Poco::StreamCopier::copyToString(in, out.body);
  return out;
}

int Servers::RawStatus(const std::string& raw) const {
  Poco::Net::StreamSocket socket;
  socket.connect(Poco::Net::SocketAddress("127.0.0.1", static_cast<Poco::UInt16>(port_)), Poco::Timespan(5, 0));
  socket.setReceiveTimeout(Poco::Timespan(10, 0));
  socket.sendBytes(raw.data(), static_cast<int>(raw.size()));
  std::string head;
  char buf[512];
  while (head.find("\r\n") == std::string::npos) {
    int n = socket.receiveBytes(buf, sizeof buf);
    if (n <= 0) break;
    head.append(buf, static_cast<size_t>(n));
  }
  if (head.rfind("HTTP/1.", 0) != 0 || head.size() < 12) return 0;
  return std::stoi(head.substr(9, 3));
}

HttpResponse Servers::Mkcol(const std::string& target, const std::string& user, const std::string& password) const {
  return Request("MKCOL", target, "", {{"Authorization", Basic(user, password)}});
}

HttpResponse Servers::Put(const std::string& target, const std::string& body, const std::string& user,
                          const std::string& password) const {
  return Request("PUT", target, body, {{"Authorization", Basic(user, password)}});
}

void Servers::AddMaster(const std::string& name, const std::string& password, const std::string& options) const {
  const std::string masters = state_ + "/masters";
  const std::string cmd = "htpasswd -iB '" + masters + "' '" + name + "' >/dev/null 2>&1";
  FILE* p = ::popen(cmd.c_str(), "w");
  if (p == nullptr) throw std::runtime_error("popen htpasswd failed");
  std::fputs((password + "\n").c_str(), p);
  if (::pclose(p) != 0) throw std::runtime_error("htpasswd failed");
  if (options.empty()) return;
  // htpasswd knows nothing of the third field: append it to the master's line.
  std::string text = ReadFile(masters), out, line;
  std::istringstream in(text);
  while (std::getline(in, line)) {
    if (line.rfind(name + ":", 0) == 0) line += ":" + options;
    out += line + "\n";
  }
  std::ofstream(masters, std::ios::trunc) << out;
}

std::vector<std::string> Servers::Snapshot() const {
  std::vector<std::string> paths;
  for (const std::string& root : {tokens_dir(), artifacts_dir()}) {
    for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
      paths.push_back(e.path().string() + (e.is_directory() ? "/" : " " + std::to_string(e.is_regular_file() ? e.file_size() : 0)));
    }
  }
  std::sort(paths.begin(), paths.end());
  return paths;
}

ShellResult RunShell(const std::string& command) {
  ShellResult r;
  FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

Servers::CliResult Servers::Cli(const std::string& args) const {
  ShellResult r = RunShell(std::string(ARTIFACT_TOKEN_BIN) + " " + args + " --config '" + state_ +
                           "/artifact-token.conf' 2>&1");
  return CliResult{r.exit_code, r.out};
}

namespace {

// Polls `read` until its text holds `needle`, at most `limit`.
bool WaitForText(const std::function<std::string()>& read, const std::string& needle,
                 std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (read().find(needle) == std::string::npos) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

}  // namespace

bool Servers::WaitForAppLog(const std::string& needle, std::chrono::milliseconds limit) const {
  return WaitForText([this] { return AppLog(); }, needle, limit);
}

bool Servers::WaitForAccessLog(const std::string& needle, std::chrono::milliseconds limit) const {
  return WaitForText([this] { return AccessLog(); }, needle, limit);
}

std::string Servers::ErrorLog() const { return ReadFile(state_ + "/logs/error.log"); }
std::string Servers::AccessLog() const { return ReadFile(state_ + "/logs/access.log"); }
std::string Servers::AppLog() const { return ReadFile(base_ + "/run.log"); }

}  // namespace artifact::testing
