// libFuzzer: the API router on arbitrary requests. Input lines: method,
// path, query, content type, authorization, then the body. Never crashes,
// always answers a status it documents, and every answer but 204 is a body
// of the declared type. Works on a temp token store.
#include <Poco/JSON/Parser.h>
#include <crypt.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "api.h"

namespace {

class FixedClock : public artifact::Clock {
 public:
  int64_t Now() const override { return 1'800'000'000; }
};

struct World {
  std::string dir;
  artifact::Config config;
  FixedClock clock;
  artifact::OpenSslRandom random;
  std::ostringstream log_text;
  artifact::EventLog log{log_text};
  std::unique_ptr<artifact::TokenStore> store;
  std::unique_ptr<artifact::Builds> builds;
  std::unique_ptr<artifact::MastersFile> masters;
  std::unique_ptr<artifact::Api> api;

  World() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "artifact-fuzz-XXXXXX").string();
    dir = ::mkdtemp(tmpl.data());
    config.tokens_dir = dir + "/tokens";
    config.artifacts_dir = dir + "/artifacts";
    config.masters_file = dir + "/masters";
    std::filesystem::create_directories(config.tokens_dir);
    std::filesystem::create_directories(config.artifacts_dir);
    // ci:pw, at the lowest bcrypt cost so the fuzzer stays fast.
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    crypt_gensalt_rn("$2y$", 4, nullptr, 0, salt, sizeof salt);
    struct crypt_data data {};
    std::ofstream(config.masters_file) << "ci:" << crypt_r("pw", salt, &data) << "\n"
                                       << "narrow:" << crypt_r("pw", salt, &data) << ":allow=dpkg/\n";
    store = std::make_unique<artifact::TokenStore>(config.tokens_dir, clock, random);
    builds = std::make_unique<artifact::Builds>(config.artifacts_dir, clock);
    masters = std::make_unique<artifact::MastersFile>(config.masters_file);
    api = std::make_unique<artifact::Api>(config, *store, *builds, *masters, clock, log);
  }
  ~World() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

World& TheWorld() {
  static World world;
  return world;
}

std::string NextLine(std::string& rest) {
  auto nl = rest.find('\n');
  std::string line = rest.substr(0, nl);
  rest = nl == std::string::npos ? "" : rest.substr(nl + 1);
  return line;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = TheWorld();
  std::string rest(reinterpret_cast<const char*>(data), size);
  artifact::Request req;
  req.method = NextLine(rest);
  req.path = NextLine(rest);
  req.query = NextLine(rest);
  req.content_type = NextLine(rest);
  req.authorization = NextLine(rest);
  req.host = "repo.test";
  req.body = rest;
  req.body_too_large = req.body.size() > artifact::kMaxBodyBytes;
  artifact::Response resp = w.api->Handle(req);
  static const std::set<int> documented = {200, 201, 204, 400, 401, 403, 404, 405, 409, 413, 415, 503, 507};
  if (documented.count(resp.status) == 0) std::abort();
  if (resp.status == 204) return 0;
  if (resp.Header("Content-Type") == "application/json") {
    try {
      Poco::JSON::Parser().parse(resp.body);
    } catch (...) {
      std::abort();
    }
  } else if (resp.Header("Content-Type") != "text/plain") {
    std::abort();
  }
  return 0;
}
