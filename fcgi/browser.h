// The build browser: the HTML pages (and JSON listings) of the artifact
// tree, as pure functions from what Builds read to text. No disk, no
// FastCGI: api's Browse gathers the data, these render it, and the unit
// tests call them on plain structs.
//
// Four kinds of page, by the number of segments of the directory:
//   fewer than scope_depth - 1   the root, types, projects: a plain list;
//   scope_depth - 1              a builder: its builds newest first, each
//                                with its state, seal time, files, bytes and
//                                the `latest` mark, and a chart of the last
//                                kChartBuilds builds' sizes by state;
//   scope_depth and deeper       a build (or a directory in it): its files
//                                with size and SHA-256 from SHA256SUMS, the
//                                record's facts and the line that verifies it.
// Every page is a plain HTML document: links (<a href>) to every file and
// subdirectory, so wget -r and JavaScript-less browsers work; no script at
// all; one inline stylesheet allowed by its hash (ContentSecurityPolicy);
// nothing loaded from anywhere. Every name is escaped, for HTML and for URLs.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "builds.h"

namespace artifact {

// How many of a builder's newest builds its chart shows.
inline constexpr size_t kChartBuilds = 50;
// How many builds one builder page lists; older ones are on the next pages
// (?page=2, ...), linked from each. Measured in headless Chromium on a
// loaded 2-core machine: a page of all 3,000 builds (860 KB, 33,000
// elements) took 1.3-2.3 s from navigation to load, almost all of it
// parsing and layout; 200 rows stay far below 1 s whatever the builder's size.
inline constexpr size_t kBuildsPerPage = 200;

// A build's state as people see it (docs/builds.md "States").
enum class BuildState {
  kInProgress,  // not frozen, no record, a live token
  kSuccess,     // sealed, result success, no mismatch
  kFailure,     // sealed, result failure
  kExpired,     // sealed, its token ran out
  kMismatch,    // sealed, a name.sha256 sidecar disagreed
  kSealing,     // frozen, no record yet, a seal holds the build's lock
  kSealFailed,  // frozen, no record, nobody sealing: the seal failed
  kUnsealed,    // not frozen, no record, no token (?seal=false, a crash)
};
// The name used in data-state attributes, CSS classes and JSON:
// "in-progress", "success", "failure", "expired", "mismatch", "sealing",
// "seal-failed", "unsealed".
const char* BuildStateName(BuildState state);
// The words shown: "in progress", ..., "seal failed".
const char* BuildStateLabel(BuildState state);
BuildState StateOf(const BuildSummary& build, bool has_token);

struct BuildRow {
  BuildSummary summary;
  BuildState state = BuildState::kUnsealed;
  bool latest = false;  // its builder's `latest` names it
};

// Newest first: builds named by a number by that number, descending; then
// the others by when they were sealed (else started), newest first, then by
// name. Equal numbers ("7", "07") by seal time too.
void SortNewestFirst(std::vector<BuildRow>* rows);
// The order SortNewestFirst sorts by: true when `a` is listed before `b`.
// A numbered build's place needs only its name.
bool NewerThan(const BuildRow& a, const BuildRow& b);

// SHA256SUMS as sha256sum writes it: "<64 hex>  <path>" (or " *<path>") per
// line, path relative to the build. Lines that are not that are skipped.
std::map<std::string, std::string> ParseManifest(const std::string& text);

struct IndexPage {
  std::vector<std::string> path;  // the directory's segments; empty: the root
  std::vector<DirEntry> entries;
};

struct BuilderPage {
  std::vector<std::string> path;  // the builder's segments
  std::vector<BuildRow> builds;   // all of them, newest first (SortNewestFirst)
  size_t page = 1;                // which kBuildsPerPage rows to list, from 1; clamped to the last
};

struct BuildPage {
  std::vector<std::string> path;  // the directory's segments: the build's, then any below it
  size_t scope_segments = 0;      // how many of them are the build's scope
  BuildRow build;
  std::vector<DirEntry> entries;
  std::map<std::string, std::string> sha256;  // path relative to the build -> hex (ParseManifest)
  std::string base_url;                       // scheme://host, for the commands shown; may be empty
};

std::string RenderIndex(const IndexPage& page);
std::string RenderBuilder(const BuilderPage& page);
std::string RenderBuild(const BuildPage& page);

// A directory listing as JSON: an array of {"name", "type": "file" or
// "directory", "mtime" (RFC 3339 UTC), "size"}. A directory's size is the
// bytes of its files when it is a sealed build (its record's `bytes`, given
// in `directory_bytes`); other directories have no size, as it would take a
// walk of the tree on every listing.
std::string ListingJson(const std::vector<DirEntry>& entries, const std::map<std::string, int64_t>& directory_bytes);

// The headers of every page: Content-Type, a Content-Security-Policy that
// allows nothing but the page's own stylesheet (by its SHA-256), nosniff.
std::vector<std::pair<std::string, std::string>> PageHeaders();

// Helpers exposed for tests.
std::string HtmlEscape(const std::string& text);
// Percent-encodes every byte outside [A-Za-z0-9._~-] (RFC 3986 unreserved):
// one path segment.
std::string UrlEscapeSegment(const std::string& segment);
// "1.2 MiB"; bytes below 1 KiB as "123 B".
std::string HumanBytes(int64_t bytes);
const std::string& StyleSheet();
std::string ContentSecurityPolicy();

}  // namespace artifact
