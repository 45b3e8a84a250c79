// The artifact-token subcommands. Each takes its arguments (without the
// program and subcommand names) and returns the exit code.
#pragma once

#include <string>
#include <vector>

namespace artifact {

int RunServe(const std::vector<std::string>& args);
int RunNginxMap(const std::vector<std::string>& args);

// Usage text of the whole program.
std::string ProgramUsage();

}  // namespace artifact
