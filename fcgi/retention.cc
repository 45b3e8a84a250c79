#include "retention.h"

#include <algorithm>

#include "scope.h"
#include "split.h"

namespace artifact {
namespace {

std::string Trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t");
  auto e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

}  // namespace

Result<std::vector<RetentionRule>> ParseRetention(const std::string& text) {
  std::vector<RetentionRule> rules;
  if (Trim(text).empty()) return rules;
  for (const auto& part : SplitFields(text, ';')) {
    const std::string item = Trim(part);
    auto colon = item.find(':');
    const Error bad{ErrorCode::kBadRequest, "rule '" + item + "' is not prefix/:keep=N,days=D"};
    if (colon == std::string::npos) return bad;
    RetentionRule rule;
    rule.prefix = Trim(item.substr(0, colon));
    if (!rule.prefix.empty() && rule.prefix.back() != '/') rule.prefix += '/';
    for (const auto& seg : SplitFields(rule.prefix.substr(0, rule.prefix.empty() ? 0 : rule.prefix.size() - 1), '/')) {
      if (!rule.prefix.empty() && !IsValidSegment(seg)) return bad;
    }
    for (const auto& kv : SplitFields(item.substr(colon + 1), ',')) {
      auto eq = kv.find('=');
      if (eq == std::string::npos) return bad;
      const std::string key = Trim(kv.substr(0, eq)), value = Trim(kv.substr(eq + 1));
      auto number = ParseDigits(value, 9);
      if (!number) return bad;
      if (key == "keep" && !rule.keep) {
        rule.keep = number;
      } else if (key == "days" && !rule.days) {
        rule.days = number;
      } else {
        return bad;
      }
    }
    if (!rule.keep && !rule.days) return bad;
    rules.push_back(rule);
  }
  return rules;
}

std::optional<RetentionRule> RuleFor(const std::vector<RetentionRule>& rules, const std::string& builder) {
  std::optional<RetentionRule> best;
  const std::string path = builder + "/";
  for (const auto& r : rules) {
    if (path.compare(0, r.prefix.size(), r.prefix) == 0 && (!best || r.prefix.size() > best->prefix.size())) best = r;
  }
  return best;
}

std::vector<std::string> PlanRemovals(std::vector<BuildEntry> builds, const RetentionRule& rule, int64_t now) {
  // Newest first; the order is total, so the input order never matters.
  std::sort(builds.begin(), builds.end(), [](const BuildEntry& a, const BuildEntry& b) { return b.key < a.key; });
  std::vector<std::string> removals;
  for (size_t i = 0; i < builds.size(); ++i) {
    const BuildEntry& b = builds[i];
    if (b.protect) continue;
    const bool among_newest = rule.keep && static_cast<int64_t>(i) < *rule.keep;
    const bool young = rule.days && now - b.time < *rule.days * 86400;
    if (!among_newest && !young) removals.push_back(b.name);
  }
  return removals;
}

Result<RetentionReport> ApplyRetention(Builds& builds, int depth, const std::vector<RetentionRule>& rules,
                                       int64_t now, bool dry_run,
                                       const std::function<bool(const std::string& scope)>& has_token) {
  RetentionReport report;
  if (depth < 2 || rules.empty()) return report;
  for (const auto& builder : builds.Builders(depth)) {
    ++report.builders;
    auto rule = RuleFor(rules, builder);
    std::vector<BuildEntry> entries = builds.List(builder, has_token);
    report.builds += static_cast<int64_t>(entries.size());
    if (!rule) continue;
    for (const auto& name : PlanRemovals(entries, *rule, now)) {
      const std::string scope = builder + "/" + name;
      if (!dry_run) {
        // A build being sealed or written by the app right now is left for
        // the next run.
        auto lock = builds.Lock(scope, /*wait=*/false);
        if (!lock) {
          if (lock.error().code == ErrorCode::kConflict) continue;
          return lock.error();
        }
        // One build that cannot be removed does not stop the others.
        if (auto st = builds.Remove(scope); !st) {
          report.failed.push_back(scope + ": " + st.error().message);
          continue;
        }
      }
      report.removed.push_back(scope);
    }
  }
  return report;
}

}  // namespace artifact
