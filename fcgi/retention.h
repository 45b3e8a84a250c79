// Retention: which published builds to delete so the disk does not fill.
// Rules come from the `retention` configuration key:
//
//   retention = dpkg/:keep=10,days=30; appimage/myproj/:keep=5
//
// For each builder (a scope without its build segment) the rule with the
// longest matching prefix applies (whole segments); builders without a rule
// keep everything. A build is kept when it is among the `keep` newest (in the
// build order of builds.h, the one `latest` uses) or younger than `days`
// (either, when both are given). A build with a live token, a KEEP file (a
// pin), or that its builder's `latest` names is never removed; neither is
// one the app holds locked (being sealed) at that moment.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "builds.h"
#include "result.h"

namespace artifact {

struct RetentionRule {
  std::string prefix;  // ends with '/'
  std::optional<int64_t> keep;
  std::optional<int64_t> days;
};

Result<std::vector<RetentionRule>> ParseRetention(const std::string& text);

// The rule for `builder` ("dpkg/myproj/linux"), or nullopt.
std::optional<RetentionRule> RuleFor(const std::vector<RetentionRule>& rules, const std::string& builder);

// The names of `builds` the rule removes at `now`, newest first by BuildKey.
std::vector<std::string> PlanRemovals(std::vector<BuildEntry> builds, const RetentionRule& rule, int64_t now);

struct RetentionReport {
  int64_t builders = 0;
  int64_t builds = 0;
  std::vector<std::string> removed;  // scopes
  std::vector<std::string> failed;   // "scope: why", builds it could not remove
};

// Applies the rules to the builds (scope_depth levels); `has_token(scope)`
// tells which have a live token. With `dry_run` nothing is deleted and
// `removed` lists what would be.
Result<RetentionReport> ApplyRetention(Builds& builds, int depth, const std::vector<RetentionRule>& rules,
                                       int64_t now, bool dry_run,
                                       const std::function<bool(const std::string& scope)>& has_token);

}  // namespace artifact
