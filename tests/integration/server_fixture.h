// A real nginx and the real artifact-token under spawn-fcgi, started through
// scripts/run.sh (the `make run` script) on a free loopback port with a state
// directory of their own, and stopped by the PID the fixture started.
#pragma once

#include <Poco/JSON/Object.h>
#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace artifact::testing {

struct HttpResponse {
  int status = 0;
  std::string reason;  // the status line's reason phrase
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
};

// A token as POST /token answered it.
struct IssuedToken {
  std::string username;
  std::string password;
  Poco::JSON::Object::Ptr json;
};

struct ServerOptions {
  int scope_depth = 4;
  std::string token_rate = "1000r/s";  // high: tests issue many tokens quickly
  int token_burst = 1000;
  int app_processes = 1;  // artifact-token processes accepting on the socket
  std::string trusted_proxies;  // ARTIFACT_TRUSTED_PROXIES: whose X-Forwarded-For counts
  // true: through scripts/run.sh, exactly as `make run` (which ends both
  // servers when one dies). false: the test starts the app and nginx itself
  // with the same scripts, so it can kill and restart the app alone.
  bool via_run_script = true;
  // When set, a tmpfs with these mount options (e.g. "size=96k") becomes the
  // tokens or artifacts volume: a small disk to fill. Needs root.
  std::string tokens_tmpfs;
  std::string artifacts_tmpfs;
  // When set, the two volumes of another node (its tokens_dir() and
  // artifacts_dir()): this one is a second node on the same storage.
  std::string shared_tokens_dir;
  std::string shared_artifacts_dir;
};

class Servers {
 public:
  explicit Servers(ServerOptions options = {});
  ~Servers();
  Servers(const Servers&) = delete;
  Servers& operator=(const Servers&) = delete;

  // Sends one request to nginx. `target` goes on the request line verbatim.
  HttpResponse Request(const std::string& method, const std::string& target, const std::string& body = "",
                       const std::map<std::string, std::string>& headers = {}) const;
  // Sends `raw` bytes as they are (for malformed requests); returns the
  // status of the first response, or 0 when the connection closed first.
  int RawStatus(const std::string& raw) const;
  HttpResponse Get(const std::string& target) const { return Request("GET", target); }
  // MKCOL: directories are made before files are PUT into them.
  HttpResponse Mkcol(const std::string& target, const std::string& user, const std::string& password) const;
  HttpResponse Put(const std::string& target, const std::string& body, const std::string& user,
                   const std::string& password) const;

  static std::string Basic(const std::string& user, const std::string& password);
  // {"scope": scope, "ttl": ttl} for POST /token.
  static std::string ScopeBody(const std::string& scope, int ttl = 600);

  // POST /token with a JSON body, as the fixture's master unless `auth` is given.
  HttpResponse IssueRaw(const std::string& json_body, const std::string& auth = "") const;
  // The same, and the answer must be 201 (else it throws with the body).
  IssuedToken Issue(const std::string& json_body) const;
  // DELETE /token/<username><query> as the fixture's master.
  HttpResponse Revoke(const std::string& username, const std::string& query = "") const;
  std::string MasterAuth() const { return Basic(master_user_, master_password_); }
  const std::string& master_user() const { return master_user_; }

  // Adds or replaces a master with `htpasswd -B` (third field optional).
  void AddMaster(const std::string& name, const std::string& password, const std::string& options = "") const;

  // True for files below tokens/ that are tokens (records, scope files and
  // their temp files), false for the seal statuses, metrics, the names
  // ever used and the lock files of operations in flight kept there.
  bool IsPasswordFile(const std::string& path) const {
    return path.find("/.seals/") == std::string::npos && path.find("/.metrics/") == std::string::npos &&
           path.find("/.locks/") == std::string::npos && path.find("/.names/") == std::string::npos;
  }

  // Every path below tokens/ and artifacts/ (the trees a request may change).
  std::vector<std::string> Snapshot() const;

  // http://127.0.0.1:<port>, for clients run as commands (rclone, litmus).
  std::string BaseUrl() const { return "http://127.0.0.1:" + std::to_string(port_); }
  const std::string& state_dir() const { return state_; }
  std::string tokens_dir() const { return tokens_dir_; }
  std::string artifacts_dir() const { return artifacts_dir_; }
  std::string ErrorLog() const;
  std::string AccessLog() const;  // nginx's audit trail
  std::string AppLog() const;  // run.sh output: app's stderr and the banner
  // Waits (bounded) until the app log holds `needle`: the app logs an event
  // just after the change a client can already see.
  bool WaitForAppLog(const std::string& needle, std::chrono::milliseconds limit = std::chrono::seconds(5)) const;
  // nginx writes a request's log line after the response went out.
  bool WaitForAccessLog(const std::string& needle, std::chrono::milliseconds limit = std::chrono::seconds(5)) const;
  pid_t app_pid() const { return app_pid_; }
  pid_t nginx_pid() const { return nginx_pid_; }

  // Runs `artifact-token ARGS --config <state>/artifact-token.conf`.
  struct CliResult {
    int exit_code = -1;
    std::string out;  // stdout and stderr
  };
  CliResult Cli(const std::string& args) const;

  // Only without run.sh: signals the app and reaps it; starts it again and
  // waits until /token/healthz answers through nginx.
  void KillApp(int sig);
  void StartApp();

  // Stops run.sh with SIGTERM and waits for it; true when it and both
  // servers are gone.
  bool Stop();

 private:
  bool Start(const ServerOptions& options);
  bool StartDirect(const ServerOptions& options);
  bool WaitHealthy(pid_t watched, bool need_banner);
  pid_t Spawn(const std::vector<std::string>& argv) const;

  std::string base_;
  std::string state_;
  std::string tokens_dir_;
  std::string artifacts_dir_;
  int port_ = 0;
  pid_t runner_pid_ = -1;  // run.sh, or -1 without it
  std::vector<std::string> env_;
  std::vector<std::string> mounts_;
  pid_t app_pid_ = -1;
  pid_t nginx_pid_ = -1;
  std::string master_user_ = "ci";
  std::string master_password_;
};

// `command` run by sh: its exit status (-1 when it did not exit) and stdout.
struct ShellResult {
  int exit_code = -1;
  std::string out;
};
ShellResult RunShell(const std::string& command);

// The whole file, or "" when it cannot be read.
std::string ReadFile(const std::string& path);

// A JSON object from a response or command output (throws when it is not one).
Poco::JSON::Object::Ptr ParseObject(const std::string& text);

// Random bytes for upload bodies.
std::string RandomBytes(size_t n);

// The hex SHA-256 of `data`, computed by coreutils' sha256sum, not by the
// code under test.
std::string Sha256Hex(const std::string& data);

}  // namespace artifact::testing
