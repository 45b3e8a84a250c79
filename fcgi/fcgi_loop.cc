#include "fcgi_loop.h"

#include <fcgiapp.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <cstring>
#include <iostream>
#include <string>

namespace artifact {
namespace {

std::atomic<bool> g_stop{false};

void OnStopSignal(int /*sig*/) {
  g_stop = true;
  FCGX_ShutdownPending();
}

// No SA_RESTART: accept() returns EINTR so the loop sees the stop flag.
void InstallSignalHandlers() {
  struct sigaction sa{};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) sigaction(sig, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
}

std::string Param(FCGX_Request& r, const char* name) {
  const char* v = FCGX_GetParam(name, r.envp);
  return v == nullptr ? std::string() : std::string(v);
}

Request ReadRequest(FCGX_Request& r) {
  Request req;
  req.method = Param(r, "REQUEST_METHOD");
  req.path = Param(r, "DOCUMENT_URI");
  if (req.path.empty()) req.path = Param(r, "SCRIPT_NAME");
  req.query = Param(r, "QUERY_STRING");
  req.content_type = Param(r, "CONTENT_TYPE");
  req.authorization = Param(r, "HTTP_AUTHORIZATION");
  req.tree_path = Param(r, "ARTIFACT_TREE_PATH");
  req.host = Param(r, "ARTIFACT_REQUEST_HOST");
  if (req.host.empty()) req.host = Param(r, "HTTP_HOST");
  req.scheme = Param(r, "REQUEST_SCHEME");
  if (req.scheme.empty()) req.scheme = Param(r, "HTTPS") == "on" ? "https" : "http";

  // The tree upload reads its body as a stream, as it unpacks it.
  if (req.path == "/token/tree/unpack") {
    req.body_stream = [&r](char* buf, size_t n) -> Result<size_t> {
      const int got = FCGX_GetStr(buf, static_cast<int>(std::min<size_t>(n, 1 << 20)), r.in);
      if (got < 0 || FCGX_GetError(r.in) != 0) return Error{ErrorCode::kBadRequest, "the request body was cut off"};
      return static_cast<size_t>(got);
    };
    return req;
  }
  // Read at most kMaxBodyBytes + 1: enough to know the body is too large
  // without ever holding a large one in memory.
  char buf[8192];
  while (req.body.size() <= kMaxBodyBytes) {
    int n = FCGX_GetStr(buf, sizeof buf, r.in);
    if (n <= 0) break;
    req.body.append(buf, static_cast<size_t>(n));
  }
  if (req.body.size() > kMaxBodyBytes) {
    req.body_too_large = true;
    req.body.clear();
  }
  return req;
}

// A JSON body goes out as one line: ended by a newline, like nginx's own
// refusal bodies, so a shell prompt does not stick to curl's output and line
// tools (grep -x, read) see a complete line.
bool IsUnterminatedJson(const Response& resp) {
  if (resp.body.empty() || resp.body.back() == '\n') return false;
  for (const auto& [k, v] : resp.headers) {
    if (k == "Content-Type" && v.rfind("application/json", 0) == 0) return true;
  }
  return false;
}

void WriteResponse(FCGX_Request& r, const Response& resp, bool head) {
  const bool newline = IsUnterminatedJson(resp);
  std::string out = "Status: " + std::to_string(resp.status) + " " + ReasonPhrase(resp.status) + "\r\n";
  for (const auto& [k, v] : resp.headers) out += k + ": " + v + "\r\n";
  if (resp.status != 204) {
    out += "Content-Length: " + std::to_string(resp.body.size() + (newline ? 1 : 0)) + "\r\n";
  }
  out += "\r\n";
  if (!head) out += resp.body + (newline ? "\n" : "");
  FCGX_PutStr(out.data(), static_cast<int>(out.size()), r.out);
}

}  // namespace

bool FastCgiSocketOnStdin() {
  if (FCGX_Init() != 0) {
    std::cerr << "artifact-token serve: FCGX_Init failed\n";
    return false;
  }
  if (FCGX_IsCGI()) {
    std::cerr << "artifact-token serve: fd 0 is not a FastCGI socket; start it with spawn-fcgi\n";
    return false;
  }
  return true;
}

int RunFastCgiLoop(Api& api) {
  if (!FastCgiSocketOnStdin()) return 2;
  InstallSignalHandlers();
  FCGX_Request request;
  FCGX_InitRequest(&request, 0, FCGI_FAIL_ACCEPT_ON_INTR);
  while (!g_stop) {
    if (FCGX_Accept_r(&request) < 0) break;
    Request req = ReadRequest(request);
    Response resp;
    try {
      resp = api.Handle(req);
    } catch (const std::exception& e) {
      // A bug, not a bad request: never take the process down for it.
      std::cerr << "artifact-token serve: internal error: " << e.what() << "\n";
      resp = ErrorResponse(Error{ErrorCode::kInternal, "internal error; the server log says why"});
    }
    WriteResponse(request, resp, req.method == "HEAD");
    if (!req.body.empty()) std::fill(req.body.begin(), req.body.end(), '\0');
    FCGX_Finish_r(&request);
  }
  FCGX_Free(&request, 1);
  return 0;
}

}  // namespace artifact
