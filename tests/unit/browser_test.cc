// The build browser's renderer on plain structs: states, order, escaping,
// the chart, the checksums, the JSON listing, the page's CSP.
#include "browser.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Parser.h>
#include <openssl/evp.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <regex>

#include "base64.h"
#include "unit/test_support.h"

using namespace artifact;
using namespace artifact::testing;

namespace {

constexpr int64_t kNs = 1000000000;

BuildRow Row(const std::string& name, BuildState state, int64_t sealed_at, int64_t bytes = 100) {
  BuildRow row;
  row.summary.name = name;
  row.summary.key.name = name;
  row.summary.key.created_ns = (sealed_at - 60) * kNs;
  row.state = state;
  if (state != BuildState::kInProgress) {
    BuildRecord r;
    r.state = "sealed";
    r.result = state == BuildState::kFailure   ? BuildResult::kFailure
               : state == BuildState::kExpired ? BuildResult::kExpired
                                               : BuildResult::kSuccess;
    r.sealed_at = sealed_at;
    r.report.bytes = bytes;
    r.report.files = 2;
    r.issued_by = "ci";
    row.summary.record = r;
  }
  return row;
}

std::vector<std::string> Names(const std::vector<BuildRow>& rows) {
  std::vector<std::string> out;
  for (const auto& r : rows) out.push_back(r.summary.name);
  return out;
}

size_t Count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("build states come from the record, the freeze and the token", "[browser]") {
  BuildSummary b;
  CHECK(StateOf(b, true) == BuildState::kInProgress);
  CHECK(StateOf(b, false) == BuildState::kUnsealed);
  b.frozen = true;
  CHECK(StateOf(b, false) == BuildState::kSealFailed);
  b.busy = true;
  CHECK(StateOf(b, false) == BuildState::kSealing);
  BuildRecord r;
  r.state = "sealed";
  r.result = BuildResult::kSuccess;
  b.record = r;
  CHECK(StateOf(b, false) == BuildState::kSuccess);
  b.record->result = BuildResult::kFailure;
  CHECK(StateOf(b, false) == BuildState::kFailure);
  b.record->result = BuildResult::kExpired;
  CHECK(StateOf(b, false) == BuildState::kExpired);
  b.record->result = BuildResult::kSuccess;
  b.record->report.mismatches = {"dpkg/p/l/1/x.bin"};
  CHECK(StateOf(b, false) == BuildState::kMismatch);
  b.record->state = "failed";
  CHECK(StateOf(b, false) == BuildState::kSealFailed);
  CHECK(std::string(BuildStateName(BuildState::kSealFailed)) == "seal-failed");
  CHECK(std::string(BuildStateLabel(BuildState::kInProgress)) == "in progress");
}

TEST_CASE("builds sort newest first: numbers by value, then the others by seal time", "[browser]") {
  std::vector<BuildRow> rows = {
      Row("9", BuildState::kSuccess, 1000),       Row("10", BuildState::kFailure, 900),
      Row("100", BuildState::kSuccess, 800),      Row("nightly", BuildState::kSuccess, 2000),
      Row("release", BuildState::kSuccess, 3000), Row("2", BuildState::kInProgress, 5000),
      Row("07", BuildState::kSuccess, 700),       Row("7", BuildState::kSuccess, 600),
  };
  SortNewestFirst(&rows);
  CHECK(Names(rows) == std::vector<std::string>{"100", "10", "9", "07", "7", "2", "release", "nightly"});
}

TEST_CASE("SHA256SUMS lines become a map of path to digest", "[browser]") {
  const std::string a(64, 'a'), b(64, '0');
  auto m =
      ParseManifest(a + "  pkg.deb\n" + b + " *sub/dir/x y.bin\nnot a line\n" + std::string(64, 'Z') + "  upper.bin\n");
  CHECK(m.size() == 2);
  CHECK(m["pkg.deb"] == a);
  CHECK(m["sub/dir/x y.bin"] == b);
}

TEST_CASE("names are escaped for HTML and for URLs", "[browser]") {
  CHECK(HtmlEscape("<a href=\"x\">'&'</a>") == "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
  CHECK(UrlEscapeSegment("a+b c/%\"<") == "a%2Bb%20c%2F%25%22%3C");
  CHECK(UrlEscapeSegment("pkg_1.0~rc-1.deb") == "pkg_1.0~rc-1.deb");
  // A page never carries a name unescaped, in text or in a link.
  IndexPage page;
  page.path = {"dpkg"};
  page.entries.push_back(DirEntry{"<script>alert(1)</script>", false, 5, 0, false});
  page.entries.push_back(DirEntry{"a\"b'c&d", true, -1, 0, false});
  const std::string html = RenderIndex(page);
  CHECK(html.find("<script>") == std::string::npos);
  CHECK(html.find("&lt;script&gt;alert(1)&lt;/script&gt;") != std::string::npos);
  CHECK(html.find("href=\"%3Cscript%3Ealert%281%29%3C%2Fscript%3E\"") != std::string::npos);
  CHECK(html.find("href=\"a%22b%27c%26d/\"") != std::string::npos);
  CHECK(html.find("a&quot;b&#39;c&amp;d/") != std::string::npos);
}

TEST_CASE("an index page links every entry, directories first, with the viewport meta", "[browser]") {
  IndexPage page;
  page.entries = {DirEntry{"zeta.txt", false, 2048, 1800000000, false}, DirEntry{"appimage", true, -1, 0, false},
                  DirEntry{"dpkg", true, -1, 0, false}};
  const std::string html = RenderIndex(page);
  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">") != std::string::npos);
  const auto appimage = html.find("href=\"appimage/\""), dpkg = html.find("href=\"dpkg/\""),
             zeta = html.find("href=\"zeta.txt\"");
  REQUIRE(appimage != std::string::npos);
  CHECK(appimage < dpkg);
  CHECK(dpkg < zeta);
  CHECK(html.find("2.0 KiB") != std::string::npos);
  CHECK(html.find("2027-01-15T08:00:00Z") != std::string::npos);
  // Nothing is loaded from anywhere, and no script at all.
  CHECK(html.find("<script") == std::string::npos);
  CHECK(html.find("src=") == std::string::npos);
  CHECK(html.find("http") == std::string::npos);
}

TEST_CASE("a builder page: rows with state and the latest mark, a chart of the last builds", "[browser]") {
  BuilderPage page;
  page.path = {"dpkg", "myproj", "linux-amd64"};
  for (int i = 1; i <= 60; ++i) {
    page.builds.push_back(
        Row(std::to_string(i), i % 10 == 0 ? BuildState::kFailure : BuildState::kSuccess, 1800000000 + i, 1000 * i));
  }
  page.builds.push_back(Row("61", BuildState::kInProgress, 1800000100));
  page.builds[58].latest = true;  // build 59
  SortNewestFirst(&page.builds);
  const std::string html = RenderBuilder(page);
  CHECK(html.find("<h1>dpkg/myproj/linux-amd64</h1>") != std::string::npos);
  // Newest first, each row a link to its build.
  CHECK(html.find("data-build=\"61\"") < html.find("data-build=\"60\""));
  CHECK(html.find("data-build=\"60\"") < html.find("data-build=\"9\""));
  CHECK(html.find("data-build=\"9\"") < html.find("data-build=\"1\""));
  CHECK(Count(html, "<tr data-build=") == 61);
  CHECK(html.find("<tr data-build=\"60\" data-state=\"failure\"><td><a href=\"60/\">60</a>") != std::string::npos);
  CHECK(html.find("<tr data-build=\"61\" data-state=\"in-progress\">") != std::string::npos);
  CHECK(html.find("<tr data-build=\"59\" data-state=\"success\" class=\"latest\"><td><a href=\"59/\">59</a>"
                  "<span class=\"mark\">latest</span>") != std::string::npos);
  CHECK(Count(html, "<span class=\"mark\">latest</span>") == 1);
  CHECK(html.find("href=\"latest/\"") != std::string::npos);
  CHECK(html.find("2027-01-15T08:00:59Z") != std::string::npos);  // seal time, ISO 8601
  CHECK(html.find("59 KiB") != std::string::npos);                // 60,000 bytes
  // The chart: kChartBuilds bars, coloured by state, the largest full height.
  CHECK(Count(html, "<rect ") == kChartBuilds);
  CHECK(Count(html, "<rect class=\"b-failure\"") == 5);
  CHECK(html.find("<title>60: failure, 59 KiB</title>") != std::string::npos);
  CHECK(html.find("<title>61: in progress, 0 B</title>") != std::string::npos);
  CHECK(html.find("<title>12: success") != std::string::npos);
  CHECK(html.find("<title>11: ") == std::string::npos);  // older than the last 50
  CHECK(html.find("height=\"78\"><title>60:") != std::string::npos);
}

TEST_CASE("a build page: files with size and SHA-256, the verify line, who issued it", "[browser]") {
  BuildPage page;
  page.path = {"dpkg", "myproj", "linux-amd64", "42"};
  page.scope_segments = 4;
  page.base_url = "https://repo.example";
  page.build = Row("42", BuildState::kMismatch, 1800000000, 3000000);
  page.build.summary.record->report.mismatches = {"dpkg/myproj/linux-amd64/42/x.bin"};
  page.build.latest = false;
  page.entries = {DirEntry{"pkg.deb", false, 3000000, 0, false}, DirEntry{"logs", true, -1, 0, false},
                  DirEntry{"SHA256SUMS", false, 150, 0, false}};
  const std::string sha(64, 'c');
  page.sha256 = {{"pkg.deb", sha}, {"logs/build.log", std::string(64, 'd')}};
  std::string html = RenderBuild(page);
  CHECK(html.find("<tr data-file=\"pkg.deb\"><td><a href=\"pkg.deb\">pkg.deb</a></td><td class=\"n\" "
                  "title=\"3000000 bytes\">2.9 MiB</td><td><code class=\"sha\">" +
                  sha + "</code></td></tr>") != std::string::npos);
  CHECK(html.find("<a href=\"logs/\">logs/</a>") != std::string::npos);
  CHECK(html.find("wget -q -r -np -nH --cut-dirs=4 -R 'index.html*' https://repo.example/dpkg/myproj/"
                  "linux-amd64/42/\nsha256sum -c SHA256SUMS") != std::string::npos);
  CHECK(html.find("<dd class=\"issued-by\">ci</dd>") != std::string::npos);
  CHECK(html.find("<dd data-state=\"mismatch\">mismatches</dd>") != std::string::npos);
  CHECK(html.find("<code>dpkg/myproj/linux-amd64/42/x.bin</code>") != std::string::npos);
  CHECK(html.find("href=\"/token/builds/dpkg/myproj/linux-amd64/42\"") != std::string::npos);
  // A directory below the build takes its checksums from the build's manifest.
  page.path.push_back("logs");
  page.entries = {DirEntry{"build.log", false, 10, 0, false}};
  html = RenderBuild(page);
  CHECK(html.find("<code class=\"sha\">" + std::string(64, 'd') + "</code>") != std::string::npos);
  CHECK(html.find("<h1>42 / logs/") != std::string::npos);
}

TEST_CASE("JSON listings: RFC 3339 mtime, sizes of files and of sealed builds", "[browser]") {
  std::vector<DirEntry> entries = {DirEntry{"a.deb", false, 5, 1800000000, false},
                                   DirEntry{"7", true, -1, 1800000001, true}, DirEntry{"8", true, -1, 0, false}};
  Poco::JSON::Parser parser;
  auto list = parser.parse(ListingJson(entries, {{"7", 1234}})).extract<Poco::JSON::Array::Ptr>();
  REQUIRE(list->size() == 3);
  auto seven = list->getObject(0), eight = list->getObject(1), deb = list->getObject(2);
  CHECK(seven->getValue<std::string>("name") == "7");
  CHECK(seven->getValue<std::string>("type") == "directory");
  CHECK(seven->getValue<int64_t>("size") == 1234);
  CHECK(seven->getValue<std::string>("mtime") == "2027-01-15T08:00:01Z");
  CHECK_FALSE(eight->has("size"));
  CHECK(deb->getValue<std::string>("type") == "file");
  CHECK(deb->getValue<int64_t>("size") == 5);
  CHECK(deb->getValue<std::string>("mtime") == "2027-01-15T08:00:00Z");
}

TEST_CASE("the page's CSP allows exactly its own stylesheet, by hash", "[browser]") {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  EVP_Digest(StyleSheet().data(), StyleSheet().size(), digest, &n, EVP_sha256(), nullptr);
  const std::string csp = ContentSecurityPolicy();
  CHECK(csp.find("default-src 'none'") != std::string::npos);
  CHECK(csp.find("style-src 'sha256-" + Base64Encode(digest, n) + "'") != std::string::npos);
  CHECK(csp.find("script-src") == std::string::npos);  // none: default-src 'none' applies
  CHECK(csp.find("unsafe") == std::string::npos);
  // The stylesheet in the page is byte for byte the hashed one.
  const std::string html = RenderIndex(IndexPage{});
  CHECK(html.find("<style>" + StyleSheet() + "</style>") != std::string::npos);
  bool has_csp = false;
  for (const auto& [k, v] : PageHeaders()) has_csp = has_csp || (k == "Content-Security-Policy" && v == csp);
  CHECK(has_csp);
}

TEST_CASE("human sizes", "[browser]") {
  CHECK(HumanBytes(0) == "0 B");
  CHECK(HumanBytes(1023) == "1023 B");
  CHECK(HumanBytes(1024) == "1.0 KiB");
  CHECK(HumanBytes(10 * 1024 * 1024) == "10 MiB");
  CHECK(HumanBytes(int64_t{3} << 40) == "3.0 TiB");
}

TEST_CASE("a build record reads back what the seal wrote", "[browser]") {
  BuildRecord r;
  r.scope = "dpkg/p/l/3";
  r.state = "sealed";
  r.result = BuildResult::kExpired;
  r.issued_by = "ci";
  r.username = "t1";
  r.created = 1800000000;
  r.sealed_at = 1800000100;
  r.report.files = 3;
  r.report.bytes = 99;
  r.report.mismatches = {"dpkg/p/l/3/x"};
  auto back = BuildRecord::FromJson(r.ToJson());
  REQUIRE(back);
  CHECK(back->ToJson() == r.ToJson());
  CHECK_FALSE(BuildRecord::FromJson("{\"state\": \"sealed\"}"));
  CHECK_FALSE(BuildRecord::FromJson("not json"));
}

TEST_CASE("a builder page lists kBuildsPerPage builds and links the other pages", "[browser]") {
  BuilderPage page;
  page.path = {"dpkg", "p", "l"};
  for (int i = 1; i <= 450; ++i) page.builds.push_back(Row(std::to_string(i), BuildState::kSuccess, 1800000000 + i));
  SortNewestFirst(&page.builds);
  std::string html = RenderBuilder(page);
  CHECK(Count(html, "<tr data-build=") == kBuildsPerPage);
  CHECK(html.find("data-build=\"450\"") != std::string::npos);
  CHECK(html.find("data-build=\"250\"") == std::string::npos);
  CHECK(html.find("Builds 1-200 of 450.") != std::string::npos);
  CHECK(html.find("<a rel=\"next\" href=\"?page=2\">older</a>") != std::string::npos);
  CHECK(html.find("rel=\"prev\"") == std::string::npos);
  CHECK(Count(html, "<rect ") == kChartBuilds);
  page.page = 3;
  html = RenderBuilder(page);
  CHECK(Count(html, "<tr data-build=") == 50);
  CHECK(html.find("data-build=\"1\"") != std::string::npos);
  CHECK(html.find("Builds 401-450 of 450.") != std::string::npos);
  CHECK(html.find("<a rel=\"prev\" href=\"?page=2\">newer</a>") != std::string::npos);
  CHECK(html.find("<a href=\"?page=1\">1</a>") != std::string::npos);
  page.page = 99;  // past the end: the last page
  CHECK(RenderBuilder(page) == html);
  // A small builder has no pager.
  page.builds.resize(10);
  page.page = 1;
  CHECK(RenderBuilder(page).find("pager") == std::string::npos);
}
