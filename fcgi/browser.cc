#include "browser.h"

#include <Poco/JSON/Array.h>
#include <Poco/JSON/Object.h>
#include <Poco/JSON/Stringifier.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <tuple>

#include "api.h"
#include "base64.h"
#include "split.h"

namespace artifact {
namespace {

// Small and phone-first: one column that scrolls sideways only inside the
// tables. States are told by word and colour (never colour alone).
constexpr const char* kStyle =
    "body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:72rem;padding:.5rem 1rem;color:#1f2328;"
    "background:#fff}"
    "a{color:#0550ae}nav{margin:.5rem 0;word-break:break-all}h1{font-size:1.3rem;margin:.4rem 0;"
    "word-break:break-all}"
    ".wrap{overflow-x:auto}table{border-collapse:collapse;width:100%}"
    "th,td{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #d8dee4;vertical-align:top}"
    "th{font-weight:600;background:#f6f8fa}td.n{text-align:right;white-space:nowrap}"
    "code,pre{font:13px/1.4 ui-monospace,monospace}pre{background:#f6f8fa;padding:.5rem;overflow-x:auto}"
    "code.sha{word-break:break-all}time{white-space:nowrap}"
    ".st{display:inline-block;padding:0 .4rem;border-radius:.6rem;font-size:.85em;white-space:nowrap;"
    "border:1px solid}"
    ".s-success{color:#1a7f37}.s-failure,.s-seal-failed,.s-mismatch{color:#cf222e}"
    ".s-expired,.s-unsealed{color:#9a6700}.s-in-progress,.s-sealing{color:#0969da}"
    ".mark{display:inline-block;margin-left:.4rem;padding:0 .4rem;border-radius:.6rem;font-size:.8em;"
    "background:#1a7f37;color:#fff;font-weight:600}"
    "tr.latest td{background:#dafbe1}"
    "svg.chart{display:block;width:100%;max-width:640px;height:auto;margin:.5rem 0}"
    ".b-success{fill:#2da44e}.b-failure,.b-seal-failed,.b-mismatch{fill:#cf222e}"
    ".b-expired,.b-unsealed{fill:#bf8700}.b-in-progress,.b-sealing{fill:#54aeff}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem}dt{font-weight:600}dd{margin:0}"
    "footer{margin:1rem 0;color:#656d76;font-size:.85em}";

std::string Time(int64_t unix_time) {
  if (unix_time <= 0) return "-";
  const std::string t = Rfc3339(unix_time);
  return "<time datetime=\"" + t + "\">" + t + "</time>";
}

// The URL of the directory made of the first `n` segments of `path`.
std::string DirUrl(const std::vector<std::string>& path, size_t n) {
  std::string url = "/";
  for (size_t i = 0; i < n && i < path.size(); ++i) url += UrlEscapeSegment(path[i]) + "/";
  return url;
}

std::string Head(const std::vector<std::string>& path, const std::string& what) {
  std::string title = "/";
  for (const auto& s : path) title += s + "/";
  std::string out =
      "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
      "<meta name=\"referrer\" content=\"no-referrer\"><title>" +
      HtmlEscape(title) + " - " + what + "</title><style>" + StyleSheet() + "</style></head>\n<body>\n<nav>";
  out += "<a href=\"/\">artifacts</a>";
  for (size_t i = 0; i < path.size(); ++i) {
    out += " / <a href=\"" + DirUrl(path, i + 1) + "\">" + HtmlEscape(path[i]) + "</a>";
  }
  out += "</nav>\n";
  return out;
}

std::string Foot(const std::string& json_href, const std::string& json_what) {
  return "<footer>As JSON: <a href=\"" + json_href + "\">" + json_what +
         "</a>. Listings also answer <code>?format=json</code> and WebDAV PROPFIND.</footer>\n</body></html>\n";
}

std::string StateBadge(BuildState state) {
  return std::string("<span class=\"st s-") + BuildStateName(state) + "\">" + BuildStateLabel(state) + "</span>";
}

// The chart of the newest kChartBuilds builds (rows newest first), drawn
// oldest to newest, left to right; a bar's height is its bytes against the
// largest, its colour its state, its tooltip the numbers.
std::string Chart(const std::vector<BuildRow>& rows) {
  const size_t n = std::min(rows.size(), kChartBuilds);
  if (n == 0) return "";
  int64_t max_bytes = 1;
  for (size_t i = 0; i < n; ++i) {
    if (const auto& r = rows[i].summary.record) max_bytes = std::max(max_bytes, r->report.bytes);
  }
  constexpr int kWidth = 640, kHeight = 80, kBar = kWidth / static_cast<int>(kChartBuilds);
  std::string out = "<svg class=\"chart\" viewBox=\"0 0 " + std::to_string(kWidth) + " " + std::to_string(kHeight) +
                    "\" role=\"img\" aria-label=\"sizes of the last " + std::to_string(n) +
                    " builds, oldest left\" xmlns=\"http://www.w3.org/2000/svg\">";
  for (size_t i = 0; i < n; ++i) {
    const BuildRow& row = rows[n - 1 - i];
    const int64_t bytes = row.summary.record ? row.summary.record->report.bytes : 0;
    const auto h = std::max<int64_t>(2, bytes * (kHeight - 2) / max_bytes);
    out += "<rect class=\"b-" + std::string(BuildStateName(row.state)) + "\" x=\"" +
           std::to_string(static_cast<int>(i) * kBar) + "\" y=\"" + std::to_string(kHeight - h) + "\" width=\"" +
           std::to_string(kBar - 2) + "\" height=\"" + std::to_string(h) + "\"><title>" + HtmlEscape(row.summary.name) +
           ": " + BuildStateLabel(row.state) + ", " + HumanBytes(bytes) + "</title></rect>";
  }
  return out + "</svg>\n";
}

std::string EntryRows(const BuildPage* build, const std::vector<DirEntry>& entries, const std::string& prefix) {
  // Directories first, then files, each by name: autoindex's order.
  std::vector<const DirEntry*> sorted;
  for (const auto& e : entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const DirEntry* a, const DirEntry* b) {
    return std::tie(b->directory, a->name) < std::tie(a->directory, b->name);
  });
  std::string out;
  for (const DirEntry* e : sorted) {
    const std::string href = UrlEscapeSegment(e->name) + (e->directory ? "/" : "");
    const std::string shown = HtmlEscape(e->name) + (e->directory ? "/" : "");
    out += e->directory ? "<tr data-dir=\"" : "<tr data-file=\"";
    out += HtmlEscape(e->name) + "\"><td><a href=\"" + href + "\">" + shown + "</a></td>";
    if (e->directory) {
      out += "<td class=\"n\">-</td>";
    } else {
      out += "<td class=\"n\" title=\"" + std::to_string(e->size) + " bytes\">" + HumanBytes(e->size) + "</td>";
    }
    if (build != nullptr) {
      auto sha = e->directory ? build->sha256.end() : build->sha256.find(prefix + e->name);
      out += sha == build->sha256.end() ? "<td>-</td>"
                                        : "<td><code class=\"sha\">" + HtmlEscape(sha->second) + "</code></td>";
    } else {
      out += "<td>" + Time(e->mtime) + "</td>";
    }
    out += "</tr>\n";
  }
  return out;
}

}  // namespace

const char* BuildStateName(BuildState state) {
  switch (state) {
    case BuildState::kInProgress:
      return "in-progress";
    case BuildState::kSuccess:
      return "success";
    case BuildState::kFailure:
      return "failure";
    case BuildState::kExpired:
      return "expired";
    case BuildState::kMismatch:
      return "mismatch";
    case BuildState::kSealing:
      return "sealing";
    case BuildState::kSealFailed:
      return "seal-failed";
    case BuildState::kUnsealed:
      return "unsealed";
  }
  return "unsealed";
}

const char* BuildStateLabel(BuildState state) {
  switch (state) {
    case BuildState::kInProgress:
      return "in progress";
    case BuildState::kMismatch:
      return "mismatches";
    case BuildState::kSealFailed:
      return "seal failed";
    default:
      return BuildStateName(state);
  }
}

BuildState StateOf(const BuildSummary& build, bool has_token) {
  if (const auto& r = build.record) {
    if (r->state != "sealed") return BuildState::kSealFailed;
    if (!r->report.mismatches.empty()) return BuildState::kMismatch;
    switch (r->result) {
      case BuildResult::kSuccess:
        return BuildState::kSuccess;
      case BuildResult::kFailure:
        return BuildState::kFailure;
      case BuildResult::kExpired:
        return BuildState::kExpired;
    }
  }
  if (build.frozen) return build.busy ? BuildState::kSealing : BuildState::kSealFailed;
  return has_token ? BuildState::kInProgress : BuildState::kUnsealed;
}

bool NewerThan(const BuildRow& a, const BuildRow& b) {
  auto time_of = [](const BuildRow& r) {
    if (r.summary.record && r.summary.record->sealed_at > 0) return r.summary.record->sealed_at * 1000000000;
    return r.summary.key.created_ns;
  };
  // Descending on (numbered, number, time, name). Open builds have no seal
  // time and sort by their stamp, which is older than any seal after it.
  const auto na = ParseDigits(a.summary.name), nb = ParseDigits(b.summary.name);
  const int ka = na ? 1 : 0, kb = nb ? 1 : 0;
  return std::make_tuple(ka, na.value_or(0), time_of(a), a.summary.name) >
         std::make_tuple(kb, nb.value_or(0), time_of(b), b.summary.name);
}

void SortNewestFirst(std::vector<BuildRow>* rows) { std::stable_sort(rows->begin(), rows->end(), NewerThan); }

std::map<std::string, std::string> ParseManifest(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.size() < 67 || line[64] != ' ' || (line[65] != ' ' && line[65] != '*')) continue;
    const std::string hex = line.substr(0, 64);
    if (!std::all_of(hex.begin(), hex.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); })) {
      continue;
    }
    out[line.substr(66)] = hex;
  }
  return out;
}

std::string HtmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string UrlEscapeSegment(const std::string& segment) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (char c : segment) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z') || (u >= '0' && u <= '9') || u == '.' || u == '_' ||
        u == '~' || u == '-') {
      out += c;
    } else {
      out += '%';
      out += hex[u >> 4];
      out += hex[u & 15];
    }
  }
  return out;
}

std::string HumanBytes(int64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(bytes) / 1024;
  size_t u = 0;
  while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, v < 10 ? "%.1f %s" : "%.0f %s", v, units[u]);
  return buf;
}

const std::string& StyleSheet() {
  static const std::string css = kStyle;
  return css;
}

std::string ContentSecurityPolicy() {
  static const std::string policy = [] {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(StyleSheet().data(), StyleSheet().size(), digest, &n, EVP_sha256(), nullptr);
    // Nothing but the page and its own stylesheet: no script, no frame, no
    // form, no request anywhere (the links are navigations, not loads).
    return "default-src 'none'; style-src 'sha256-" + Base64Encode(digest, n) +
           "'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
  }();
  return policy;
}

std::vector<std::pair<std::string, std::string>> PageHeaders() {
  return {{"Content-Type", "text/html; charset=utf-8"},
          {"Content-Security-Policy", ContentSecurityPolicy()},
          {"X-Content-Type-Options", "nosniff"},
          {"Referrer-Policy", "no-referrer"},
          {"Cache-Control", "no-cache"}};
}

std::string RenderIndex(const IndexPage& page) {
  std::string out = Head(page.path, "artifacts");
  out += "<h1>" + HtmlEscape(page.path.empty() ? std::string("Artifacts") : page.path.back()) + "</h1>\n";
  if (page.entries.empty()) out += "<p>Nothing here yet.</p>\n";
  out += "<div class=\"wrap\"><table><thead><tr><th>Name</th><th>Size</th><th>Modified</th></tr></thead><tbody>\n";
  out += EntryRows(nullptr, page.entries, "");
  out += "</tbody></table></div>\n";
  return out + Foot("?format=json", "this listing");
}

std::string RenderBuilder(const BuilderPage& page) {
  std::string builder;
  for (const auto& s : page.path) builder += (builder.empty() ? "" : "/") + s;
  std::string out = Head(page.path, "builds");
  const size_t total = page.builds.size();
  const size_t pages = std::max<size_t>(1, (total + kBuildsPerPage - 1) / kBuildsPerPage);
  const size_t current = std::min(std::max<size_t>(page.page, 1), pages);
  const size_t first = (current - 1) * kBuildsPerPage, last = std::min(total, current * kBuildsPerPage);
  out += "<h1>" + HtmlEscape(builder) + "</h1>\n<p>" + std::to_string(total) + " builds, newest first.";
  for (const auto& b : page.builds) {
    if (b.latest) {
      out += " Latest good build: <a href=\"" + UrlEscapeSegment(b.summary.name) + "/\">" + HtmlEscape(b.summary.name) +
             "</a>, always at <a href=\"latest/\">latest/</a>.";
      break;
    }
  }
  out += "</p>\n" + Chart(page.builds);
  // Plain links between the pages, so every build is reachable without
  // script (and by wget -r).
  std::string pager;
  if (pages > 1) {
    pager = "<p class=\"pager\">Builds " + std::to_string(first + 1) + "-" + std::to_string(last) + " of " +
            std::to_string(total) + ".";
    if (current > 1) pager += " <a rel=\"prev\" href=\"?page=" + std::to_string(current - 1) + "\">newer</a>";
    if (current < pages) pager += " <a rel=\"next\" href=\"?page=" + std::to_string(current + 1) + "\">older</a>";
    pager += " Page";
    for (size_t p = 1; p <= pages; ++p) {
      pager += p == current ? " <b>" + std::to_string(p) + "</b>"
                            : " <a href=\"?page=" + std::to_string(p) + "\">" + std::to_string(p) + "</a>";
    }
    pager += "</p>\n";
  }
  out += pager;
  out +=
      "<div class=\"wrap\"><table><thead><tr><th>Build</th><th>State</th><th>Sealed</th><th>Files</th>"
      "<th>Size</th><th>Issued by</th></tr></thead><tbody>\n";
  for (size_t i = first; i < last; ++i) {
    const BuildRow& b = page.builds[i];
    const auto& r = b.summary.record;
    out += "<tr data-build=\"" + HtmlEscape(b.summary.name) + "\" data-state=\"" + BuildStateName(b.state) + "\"" +
           (b.latest ? " class=\"latest\"" : "") + "><td><a href=\"" + UrlEscapeSegment(b.summary.name) + "/\">" +
           HtmlEscape(b.summary.name) + "</a>" + (b.latest ? "<span class=\"mark\">latest</span>" : "") + "</td><td>" +
           StateBadge(b.state) + "</td><td>" + Time(r ? r->sealed_at : 0) + "</td>";
    if (r) {
      out += "<td class=\"n\">" + std::to_string(r->report.files) + "</td><td class=\"n\" title=\"" +
             std::to_string(r->report.bytes) + " bytes\">" + HumanBytes(r->report.bytes) + "</td><td>" +
             HtmlEscape(r->issued_by) + "</td>";
    } else {
      out += "<td class=\"n\">-</td><td class=\"n\">-</td><td>-</td>";
    }
    out += "</tr>\n";
  }
  out += "</tbody></table></div>\n" + pager;
  return out + Foot("/token/builds/" + DirUrl(page.path, page.path.size()).substr(1), "the builds and their records");
}

std::string RenderBuild(const BuildPage& page) {
  const size_t n = std::min(page.scope_segments, page.path.size());
  const std::string build_url = DirUrl(page.path, n);
  std::string prefix;  // the directory's path below the build, for SHA256SUMS
  for (size_t i = n; i < page.path.size(); ++i) prefix += page.path[i] + "/";
  std::string out = Head(page.path, "build");
  const BuildRow& b = page.build;
  const auto& r = b.summary.record;
  out += "<h1>" + HtmlEscape(page.path.empty() ? std::string() : page.path[n == 0 ? 0 : n - 1]) +
         (prefix.empty() ? "" : " / " + HtmlEscape(prefix)) + " " + StateBadge(b.state) +
         (b.latest ? "<span class=\"mark\">latest</span>" : "") + "</h1>\n<dl>";
  out += "<dt>State</dt><dd data-state=\"" + std::string(BuildStateName(b.state)) + "\">" + BuildStateLabel(b.state) +
         "</dd>";
  if (r) {
    out += "<dt>Result</dt><dd>" + std::string(BuildResultName(r->result)) + "</dd>";
    out += "<dt>Issued by</dt><dd class=\"issued-by\">" + HtmlEscape(r->issued_by) + "</dd>";
    out += "<dt>Started</dt><dd>" + Time(r->created) + "</dd><dt>Sealed</dt><dd>" + Time(r->sealed_at) + "</dd>";
    out += "<dt>Files</dt><dd>" + std::to_string(r->report.files) + " (" + HumanBytes(r->report.bytes) + ")</dd>";
    if (!r->report.mismatches.empty()) {
      out += "<dt>Mismatches</dt><dd class=\"mismatches\">";
      for (const auto& m : r->report.mismatches) out += "<code>" + HtmlEscape(m) + "</code> ";
      out += "</dd>";
    }
  } else if (b.summary.key.created_ns > 0) {
    out += "<dt>Started</dt><dd>" + Time(b.summary.key.created_ns / 1000000000) + "</dd>";
  }
  out += "</dl>\n";
  if (!page.sha256.empty()) {
    // wget cuts the host and the build's own directories (-nH --cut-dirs).
    out += "<p>Download and verify the whole build:</p><pre>wget -q -r -np -nH --cut-dirs=" + std::to_string(n) +
           " -R 'index.html*' " + HtmlEscape(page.base_url) + build_url + "\nsha256sum -c SHA256SUMS</pre>\n";
  }
  out += "<div class=\"wrap\"><table><thead><tr><th>Name</th><th>Size</th><th>SHA-256</th></tr></thead><tbody>\n";
  out += EntryRows(&page, page.entries, prefix);
  out += "</tbody></table></div>\n";
  return out + Foot("/token/builds" + build_url.substr(0, build_url.size() - 1), "the build's record");
}

std::string ListingJson(const std::vector<DirEntry>& entries, const std::map<std::string, int64_t>& directory_bytes) {
  std::vector<const DirEntry*> sorted;
  for (const auto& e : entries) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const DirEntry* a, const DirEntry* b) {
    return std::tie(b->directory, a->name) < std::tie(a->directory, b->name);
  });
  Poco::JSON::Array list;
  for (const DirEntry* e : sorted) {
    Poco::JSON::Object obj(Poco::JSON_PRESERVE_KEY_ORDER);
    obj.set("name", e->name);
    obj.set("type", std::string(e->directory ? "directory" : "file"));
    obj.set("mtime", Rfc3339(e->mtime));
    if (!e->directory) {
      obj.set("size", static_cast<Poco::Int64>(e->size));
    } else if (auto it = directory_bytes.find(e->name); it != directory_bytes.end()) {
      obj.set("size", static_cast<Poco::Int64>(it->second));
    }
    list.add(obj);
  }
  std::ostringstream out;
  Poco::JSON::Stringifier::condense(list, out);
  return out.str();
}

}  // namespace artifact
