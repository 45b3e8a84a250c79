// The artifact-token subcommands. Each takes its arguments (without the
// program and subcommand names) and returns the exit code: 0 success,
// 1 the operation failed, 2 bad usage or configuration.
#pragma once

#include <string>
#include <vector>

namespace artifact {

int RunServe(const std::vector<std::string>& args);
int RunIssue(const std::vector<std::string>& args);
int RunRevoke(const std::vector<std::string>& args);
int RunList(const std::vector<std::string>& args);
int RunPrune(const std::vector<std::string>& args);
int RunSeal(const std::vector<std::string>& args);
int RunRetention(const std::vector<std::string>& args);
int RunCheck(const std::vector<std::string>& args);
int RunNginxMap(const std::vector<std::string>& args);

// Usage text of the whole program.
std::string ProgramUsage();

}  // namespace artifact
