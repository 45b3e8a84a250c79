// The build browser in Debian's headless Chromium, on real nginx and the real
// app: builds made through the API show in numeric order with their states
// and the latest mark, a build page shows each file's SHA-256, a builder of
// 3,000 builds loads within 1 s, and an uploaded HTML or SVG file cannot run
// script as the site. Chromium is driven by tests/integration/browser.py
// (DevTools protocol); screenshots go to <build>/test-output/browser/.
#include "browser.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Parser.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "builds.h"
#include "integration/server_fixture.h"

using artifact::testing::HttpResponse;
using artifact::testing::IssuedToken;
using artifact::testing::ParseObject;
using artifact::testing::RandomBytes;
using artifact::testing::ReadFile;
using artifact::testing::Servers;
using artifact::testing::Sha256Hex;

namespace {

// DESIGN.md: a builder with 3,000 builds usable within 1 s. Under ASan and
// UBSan (make test SANITIZE=1) the app runs several times slower and the
// figure says nothing about the product: there the test only guards against
// a page that got far slower (1,085 ms was measured there once).
#ifdef ARTIFACT_SANITIZED
constexpr double kLoadLimitMs = 3000;
#else
constexpr double kLoadLimitMs = 1000;
#endif

const std::string kOutputDir = std::string(ARTIFACT_TEST_OUTPUT_DIR) + "/browser";


struct Step {
  Step(std::string u, std::string e = "", std::string shot = "", int w = 1280, int h = 900, bool m = false)
      : url(std::move(u)), eval(std::move(e)), screenshot(std::move(shot)), width(w), height(h), mobile(m) {}
  std::string url;
  std::string eval;        // a JavaScript expression evaluated after load, or ""
  std::string screenshot;  // a file name in kOutputDir, or ""
  int width = 1280;
  int height = 900;
  bool mobile = false;
};

struct PageResult {
  double load_ms = 0;
  std::string title;
  Poco::Dynamic::Var value;
};

// Runs the steps in one headless Chromium (bounded: browser.py gives up on
// any step after 30 s, `timeout` ends it all after 180 s).
std::vector<PageResult> RunChromium(const Servers& s, const std::vector<Step>& steps) {
  Poco::JSON::Array list;
  for (const auto& step : steps) {
    Poco::JSON::Object obj;
    obj.set("url", step.url);
    obj.set("eval", step.eval);
    obj.set("screenshot", step.screenshot);
    obj.set("width", step.width);
    obj.set("height", step.height);
    obj.set("mobile", step.mobile);
    list.add(obj);
  }
  const std::string dir = s.state_dir() + "/../chromium";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/steps.json") << [&] {
    std::ostringstream out;
    list.stringify(out);
    return out.str();
  }();
  std::filesystem::create_directories(kOutputDir);
  const std::string cmd = "timeout 180 /usr/bin/python3 '" ARTIFACT_SOURCE_DIR "/tests/integration/browser.py' '" +
                          kOutputDir + "' <'" + dir + "/steps.json' >'" + dir + "/results.json' 2>'" + dir + "/stderr'";
  const int rc = std::system(cmd.c_str());
  INFO(ReadFile(dir + "/stderr"));
  REQUIRE(rc == 0);
  Poco::JSON::Parser parser;
  auto results = parser.parse(ReadFile(dir + "/results.json")).extract<Poco::JSON::Array::Ptr>();
  REQUIRE(results->size() == steps.size());
  std::vector<PageResult> out;
  for (size_t i = 0; i < results->size(); ++i) {
    auto r = results->getObject(static_cast<unsigned>(i));
    PageResult page;
    page.load_ms = r->getValue<double>("load_ms");
    page.title = r->getValue<std::string>("title");
    if (r->has("value")) page.value = r->get("value");
    out.push_back(page);
  }
  return out;
}

Poco::JSON::Array::Ptr ParseArray(const std::string& text) {
  Poco::JSON::Parser parser;
  return parser.parse(text).extract<Poco::JSON::Array::Ptr>();
}

// The rows of a builder page as the browser sees them: [build, state,
// marked latest, the row's visible text].
constexpr const char* kBuilderRows =
    "JSON.stringify([...document.querySelectorAll('tr[data-build]')].map(r => "
    "[r.dataset.build, r.dataset.state, r.classList.contains('latest') && "
    "r.querySelector('.mark') !== null && getComputedStyle(r.querySelector('.mark')).display !== 'none', "
    "r.innerText]))";

void Upload(const Servers& s, const IssuedToken& t, const std::string& path, const std::string& body) {
  HttpResponse r = s.Put(path, body, t.username, t.password);
  INFO(path << ": " << r.body);
  REQUIRE(r.status == 201);
}

}  // namespace

TEST_CASE("build browser in Chromium: builds in numeric order with states and the latest mark, checksums",
          "[integration][browser]") {
  Servers s;
  const std::string b = "/dpkg/web/linux-amd64";
  // Build 10 expires (ttl 3 s) while the others are made.
  IssuedToken t1 = s.Issue(Servers::ScopeBody("dpkg/web/linux-amd64/1"));
  Upload(s, t1, b + "/1/pkg.deb", RandomBytes(20000));
  REQUIRE(s.Revoke(t1.username).status == 200);
  IssuedToken t2 = s.Issue(Servers::ScopeBody("dpkg/web/linux-amd64/2"));
  Upload(s, t2, b + "/2/build.log", "error: it broke\n");
  REQUIRE(s.Revoke(t2.username, "?result=failure").status == 200);
  IssuedToken t3 = s.Issue(Servers::ScopeBody("dpkg/web/linux-amd64/3"));
  Upload(s, t3, b + "/3/x.bin", RandomBytes(5000));
  Upload(s, t3, b + "/3/x.bin.sha256", std::string(64, '0') + "  x.bin\n");  // a wrong sidecar
  REQUIRE(s.Revoke(t3.username).status == 200);
  IssuedToken t9 = s.Issue(Servers::ScopeBody("dpkg/web/linux-amd64/9"));
  const std::string deb = RandomBytes(50000), log = "all good\n";
  Upload(s, t9, b + "/9/pkg_1.0_amd64.deb", deb);
  Upload(s, t9, b + "/9/logs/build.log", log);
  REQUIRE(s.Revoke(t9.username).status == 200);
  IssuedToken t10 = s.Issue(Servers::ScopeBody("dpkg/web/linux-amd64/10", 3));
  Upload(s, t10, b + "/10/partial.bin", RandomBytes(3000));
  IssuedToken t11 = s.Issue(Servers::ScopeBody("dpkg/web/linux-amd64/11"));
  Upload(s, t11, b + "/11/wip.bin", RandomBytes(1000));
  REQUIRE(s.WaitForAppLog("seal master=ci username=" + t10.username, std::chrono::seconds(10)));

  // The public records, for machines: the same states, newest first.
  auto records = ParseObject(s.Get("/token/builds/dpkg/web/linux-amd64").body);
  CHECK(records->getValue<std::string>("latest") == "9");
  auto builds = records->getArray("builds");
  REQUIRE(builds->size() == 6);
  CHECK(builds->getObject(0)->getValue<std::string>("state") == "in-progress");
  CHECK(builds->getObject(1)->getValue<std::string>("state") == "expired");
  auto record9 = ParseObject(s.Get("/token/builds/dpkg/web/linux-amd64/9").body);
  CHECK(record9->getValue<bool>("latest"));
  CHECK(record9->getObject("record")->getValue<std::string>("issued_by") == "ci");
  CHECK(record9->getObject("record")->getValue<int>("files") == 2);
  CHECK(s.Get("/token/builds/dpkg/web/linux-amd64/12").status == 404);
  // The JSON listing: ISO 8601 times, a sealed build's size.
  auto listing = ParseArray(s.Get(b + "/?format=json").body);
  REQUIRE(listing->size() == 6);
  for (size_t i = 0; i < listing->size(); ++i) {
    auto e = listing->getObject(static_cast<unsigned>(i));
    CHECK(e->getValue<std::string>("mtime").size() == 20);  // 2026-01-02T03:04:05Z
    if (e->getValue<std::string>("name") == "9") CHECK(e->getValue<int64_t>("size") == 50000 + 9);
    if (e->getValue<std::string>("name") == "11") CHECK_FALSE(e->has("size"));
  }
  // The page's own policy: no script at all, its stylesheet by hash.
  HttpResponse page = s.Get(b + "/");
  CHECK(page.headers["content-type"] == "text/html; charset=utf-8");
  CHECK(page.headers["content-security-policy"].rfind("default-src 'none'; style-src 'sha256-", 0) == 0);
  CHECK(page.headers["x-content-type-options"] == "nosniff");
  CHECK(s.Request("HEAD", b + "/").status == 200);

  const std::string url = s.BaseUrl();
  auto pages =
      RunChromium(s, {
                         {url + "/", "document.body.innerText", "root.png"},
                         {url + b + "/", kBuilderRows, "builder.png"},
                         {url + b + "/9/",
                          "JSON.stringify(Object.fromEntries([...document.querySelectorAll('tr[data-file]')].map(r => "
                          "[r.dataset.file, r.cells[2].innerText])))",
                          "build.png"},
                         {url + b + "/9/logs/",
                          "JSON.stringify([...document.querySelectorAll('tr[data-file]')].map(r => [r.dataset.file, "
                          "r.cells[2].innerText]))"},
                         {url + b + "/2/",
                          "document.querySelector('dd[data-state]').innerText + '|' + "
                          "document.querySelector('h1').innerText"},
                         {url + b + "/3/", "document.querySelector('.mismatches').innerText"},
                         {url + b + "/", "document.documentElement.scrollWidth <= window.innerWidth",
                          "builder-phone.png", 390, 844, true},
                     });

  // The root lists the type.
  CHECK(pages[0].value.toString().find("dpkg/") != std::string::npos);
  // Builds newest first by number, each with its state; only 9 is latest.
  auto rows = ParseArray(pages[1].value.toString());
  REQUIRE(rows->size() == 6);
  const std::vector<std::pair<std::string, std::string>> want = {{"11", "in-progress"}, {"10", "expired"},
                                                                 {"9", "success"},      {"3", "mismatch"},
                                                                 {"2", "failure"},      {"1", "success"}};
  for (size_t i = 0; i < want.size(); ++i) {
    auto row = rows->getArray(static_cast<unsigned>(i));
    INFO("row " << i << ": " << row->getElement<std::string>(3));
    CHECK(row->getElement<std::string>(0) == want[i].first);
    CHECK(row->getElement<std::string>(1) == want[i].second);
    CHECK(row->getElement<bool>(2) == (want[i].first == "9"));
    // The state is written out, not only coloured.
    const std::string text = row->getElement<std::string>(3);
    const std::string label = want[i].second == "in-progress" ? "in progress"
                              : want[i].second == "mismatch"  ? "mismatches"
                                                              : want[i].second;
    CHECK(text.find(label) != std::string::npos);
  }
  CHECK(rows->getArray(2)->getElement<std::string>(3).find("latest") != std::string::npos);
  // A build page shows each file's SHA-256, as coreutils computes it.
  auto shas = ParseObject(pages[2].value.toString());
  CHECK(shas->getValue<std::string>("pkg_1.0_amd64.deb") == Sha256Hex(deb));
  auto sub = ParseArray(pages[3].value.toString());
  REQUIRE(sub->size() == 1);
  CHECK(sub->getArray(0)->getElement<std::string>(1) == Sha256Hex(log));
  // The failed build says so.
  CHECK(pages[4].value.toString().rfind("failure|2", 0) == 0);
  INFO(pages[5].value.toString());
  CHECK(pages[5].value.toString().find("x.bin") != std::string::npos);
  // On a phone the page does not scroll sideways.
  CHECK(pages[6].value.toString() == "true");
  for (const char* shot : {"root.png", "builder.png", "build.png", "builder-phone.png"}) {
    CHECK(std::filesystem::file_size(kOutputDir + "/" + shot) > 1000);
  }
}

TEST_CASE("build browser in Chromium: a builder with 3000 builds loads within 1 s", "[integration][browser]") {
  Servers s;
  // 3,000 sealed builds written straight into the artifacts volume, exactly
  // as the app leaves them (a shortcut: through the API this takes minutes):
  // the directory frozen (0555), its `.created` stamp (nanoseconds, builds.cc
  // Open) and its record `.build.json` (BuildRecord::ToJson, what Seal
  // writes), and the builder's `.latest` pointer.
  const std::string builder = s.artifacts_dir() + "/dpkg/big/linux-amd64";
  std::filesystem::create_directories(builder);
  const int64_t t0 = 1'800'000'000;
  for (int n = 1; n <= 3000; ++n) {
    const std::string dir = builder + "/" + std::to_string(n);
    std::filesystem::create_directory(dir);
    std::ofstream(dir + "/.created") << (t0 + n * 60) * 1000000000LL << "\n";
    artifact::BuildRecord r;
    r.scope = "dpkg/big/linux-amd64/" + std::to_string(n);
    r.state = "sealed";
    r.result = n % 7 == 0    ? artifact::BuildResult::kFailure
               : n % 50 == 0 ? artifact::BuildResult::kExpired
                             : artifact::BuildResult::kSuccess;
    r.issued_by = "ci";
    r.username = "t" + std::to_string(n);
    r.created = t0 + n * 60;
    r.sealed_at = t0 + n * 60 + 30;
    r.report.files = 3;
    r.report.bytes = 40'000'000 + (n % 13) * 1'000'000 + (n > 2980 ? 30'000'000 : 0);  // a jump at the end
    std::ofstream(dir + "/.build.json") << r.ToJson() << "\n";
    REQUIRE(::chmod(dir.c_str(), 0555) == 0);
  }
  std::ofstream(builder + "/.latest") << "2999\n";

  const std::string url = s.BaseUrl() + "/dpkg/big/linux-amd64/";
  // A first visit elsewhere starts Chromium's renderer; then the builder.
  const std::string facts_js =
      "JSON.stringify([[...document.querySelectorAll('tr[data-build]')].map(r => r.dataset.build), "
      "document.querySelector('tr.latest') && document.querySelector('tr.latest').dataset.build, "
      "document.querySelectorAll('svg.chart rect').length, "
      "document.querySelector('a[rel=next]') && document.querySelector('a[rel=next]').getAttribute('href')])";
  auto pages =
      RunChromium(s, {{s.BaseUrl() + "/", ""}, {url, facts_js, "builder-3000.png"}, {url + "?page=15", facts_js}});
  // The newest kBuildsPerPage builds, newest first, the latest marked, the
  // chart of the last 50, and a plain link to the older ones.
  auto facts = ParseArray(pages[1].value.toString());
  auto names = facts->getArray(0);
  REQUIRE(names->size() == artifact::kBuildsPerPage);
  CHECK(names->getElement<std::string>(0) == "3000");
  CHECK(names->getElement<std::string>(199) == "2801");
  CHECK(facts->getElement<std::string>(1) == "2999");
  CHECK(facts->getElement<int>(2) == 50);
  CHECK(facts->getElement<std::string>(3) == "?page=2");
  // The last page ends with build 1.
  auto oldest = ParseArray(pages[2].value.toString());
  CHECK(oldest->getArray(0)->size() == 200);
  CHECK(oldest->getArray(0)->getElement<std::string>(199) == "1");
  CHECK(oldest->isNull(3));
  std::cout << "FIGURE browser: builder page with 3000 builds, navigation start to load end in Chromium: "
            << static_cast<int>(pages[1].load_ms) << " ms (limit " << kLoadLimitMs << ")\n";
  CHECK(pages[1].load_ms < kLoadLimitMs);
}

TEST_CASE("build browser in Chromium: an uploaded HTML or SVG file cannot run script as the site",
          "[integration][browser]") {
  Servers s;
  const std::string b = "/dpkg/evil/linux-amd64/1";
  // Each would change the title, set a marker and call /token (which the
  // access log would show) if its script ran.
  const std::string script =
      "document.title='pwned';document.documentElement.setAttribute('data-pwned','1');"
      "fetch('/token/evil-from-page').catch(function(){});";
  const std::string html = "<!DOCTYPE html><html><head><title>harmless</title></head><body><p>report</p><script>" +
                           script + "</script><img src=x onerror=\"document.title='pwned-img'\"></body></html>";
  const std::string svg =
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"><script>" + script + "</script></svg>";
  IssuedToken t = s.Issue(Servers::ScopeBody("dpkg/evil/linux-amd64/1"));
  Upload(s, t, b + "/evil.html", html);
  Upload(s, t, b + "/evil.svg", svg);
  // Served as what they are, but in a sandbox, never sniffed.
  for (const char* name : {"/evil.html", "/evil.svg"}) {
    HttpResponse r = s.Get(b + name);
    REQUIRE(r.status == 200);
    CHECK(r.headers["content-security-policy"].rfind("sandbox; default-src 'none'", 0) == 0);
    CHECK(r.headers["x-content-type-options"] == "nosniff");
  }
  REQUIRE(s.Revoke(t.username).status == 200);

  const std::string probe =
      "JSON.stringify([document.title, document.documentElement.getAttribute('data-pwned'), window.origin])";
  auto pages = RunChromium(s, {
                                  // The control: the same script on a page without the policy runs.
                                  {"data:text/html," + html, probe},
                                  {s.BaseUrl() + b + "/evil.html", probe},
                                  {s.BaseUrl() + b + "/evil.svg", probe},
                                  {s.BaseUrl() + b + "/", "document.title"},
                              });
  auto control = ParseArray(pages[0].value.toString());
  CHECK(control->getElement<std::string>(0).rfind("pwned", 0) == 0);
  CHECK(control->getElement<std::string>(1) == "1");
  for (int i : {1, 2}) {
    auto got = ParseArray(pages[static_cast<size_t>(i)].value.toString());
    INFO("page " << i);
    CHECK(got->getElement<std::string>(0).find("pwned") == std::string::npos);
    CHECK(got->isNull(1));
    CHECK(got->getElement<std::string>(2) == "null");  // an opaque origin, not the site's
  }
  CHECK(pages[1].title == "harmless");
  // The build page lists them, as links, and stays the site's page.
  CHECK(pages[3].title.find("/dpkg/evil/linux-amd64/1/") != std::string::npos);
  // No request of theirs reached /token.
  CHECK(s.WaitForAccessLog("GET /dpkg/evil/linux-amd64/1/"));
  CHECK(s.AccessLog().find("evil-from-page") == std::string::npos);
}
