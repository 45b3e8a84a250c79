// artifact-token: subcommand dispatch only.
#include <iostream>
#include <string>
#include <vector>

#include "cli.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    std::cout << artifact::ProgramUsage();
    return args.empty() ? 2 : 0;
  }
  const std::string cmd = args[0];
  args.erase(args.begin());
  if (cmd == "serve") return artifact::RunServe(args);
  if (cmd == "issue") return artifact::RunIssue(args);
  if (cmd == "revoke") return artifact::RunRevoke(args);
  if (cmd == "list") return artifact::RunList(args);
  if (cmd == "prune") return artifact::RunPrune(args);
  if (cmd == "seal") return artifact::RunSeal(args);
  if (cmd == "retention") return artifact::RunRetention(args);
  if (cmd == "check") return artifact::RunCheck(args);
  if (cmd == "nginx-map") return artifact::RunNginxMap(args);
  std::cerr << "artifact-token: unknown command '" << cmd << "'\n\n" << artifact::ProgramUsage();
  return 2;
}
