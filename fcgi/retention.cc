#include "retention.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "posix_file.h"
#include "scope.h"
#include "split.h"
#include "seal.h"

namespace artifact {
namespace {

std::string Trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t");
  auto e = s.find_last_not_of(" \t");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

bool IsNumber(const std::string& s) {
  return !s.empty() && s.size() < 19 && s.find_first_not_of("0123456789") == std::string::npos;
}

std::vector<std::string> Subdirectories(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name.empty() || name[0] == '.') continue;
    struct stat st{};
    if (::lstat((dir + "/" + name).c_str(), &st) == 0 && S_ISDIR(st.st_mode)) out.push_back(name);
  }
  ::closedir(d);
  return out;
}

int64_t MtimeOf(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0 ? static_cast<int64_t>(st.st_mtim.tv_sec) : 0;
}

bool Exists(const std::string& path) {
  struct stat st{};
  return ::lstat(path.c_str(), &st) == 0;
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
      if (!IsNumber(value) || value.size() > 9) return bad;
      if (key == "keep" && !rule.keep) {
        rule.keep = std::stoll(value);
      } else if (key == "days" && !rule.days) {
        rule.days = std::stoll(value);
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
  std::sort(builds.begin(), builds.end(), [](const BuildEntry& a, const BuildEntry& b) {
    if (IsNumber(a.name) && IsNumber(b.name)) return std::stoll(a.name) > std::stoll(b.name);
    if (a.time != b.time) return a.time > b.time;
    return a.name > b.name;
  });
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

Result<RetentionReport> ApplyRetention(const std::string& artifacts_dir, const std::string& tokens_dir, int depth,
                                       const std::vector<RetentionRule>& rules, int64_t now, bool dry_run) {
  RetentionReport report;
  if (depth < 2 || rules.empty()) return report;
  // Builders are the directories depth - 1 levels down.
  std::vector<std::string> level = {""};
  for (int d = 1; d < depth; ++d) {
    std::vector<std::string> next;
    for (const auto& rel : level) {
      for (const auto& name : Subdirectories(rel.empty() ? artifacts_dir : artifacts_dir + "/" + rel)) {
        next.push_back(rel.empty() ? name : rel + "/" + name);
      }
    }
    level = std::move(next);
  }
  for (const auto& builder : level) {
    ++report.builders;
    auto rule = RuleFor(rules, builder);
    std::vector<BuildEntry> builds;
    for (const auto& name : Subdirectories(artifacts_dir + "/" + builder)) {
      const std::string scope = builder + "/" + name;
      const std::string dir = artifacts_dir + "/" + scope;
      BuildEntry b;
      b.name = name;
      b.time = std::max(MtimeOf(dir), MtimeOf(dir + "/" + kManifestName));
      b.protect = Exists(dir + "/KEEP") || Exists(tokens_dir + "/" + scope + ".htpasswd");
      builds.push_back(b);
    }
    report.builds += static_cast<int64_t>(builds.size());
    if (!rule) continue;
    for (const auto& name : PlanRemovals(builds, *rule, now)) {
      const std::string scope = builder + "/" + name;
      if (!dry_run) {
        std::error_code ec;
        // remove_all deletes symlinks themselves, never what they point to.
        std::filesystem::remove_all(artifacts_dir + "/" + scope, ec);
        if (ec) return Error{ErrorCode::kUnavailable, "removing " + scope + ": " + ec.message()};
      }
      report.removed.push_back(scope);
    }
  }
  return report;
}

}  // namespace artifact
