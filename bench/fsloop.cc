// Raw filesystem limit for one token issue+revoke, exactly as DESIGN.md and
// issue 7 define it: create a temp file, write a password line, fsync, rename
// into place, fsync the directory, unlink. Two fsyncs: the definition has no
// directory fsync after the unlink (the app does one, for a durable revoke,
// and pays for it in the ratio). Bounded by a count and a time limit. Prints: cycles seconds cycles_per_s p50_ms p99_ms
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>
#include <fcntl.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc < 4) { std::fprintf(stderr, "usage: fsloop DIR MAX_CYCLES MAX_SECONDS\n"); return 2; }
  const std::string dir = argv[1];
  const long max_cycles = std::atol(argv[2]);
  const double max_s = std::atof(argv[3]);
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd < 0) { perror("open dir"); return 1; }
  const char line[] = "t0123456789abcdef0123:{SSHA}S6JQZYXJr0CIomu17ri9zx0WVQB6HNS4IBYggA==:issued_by=bench;issued=1795688327;expires=1795691927\n";
  using clk = std::chrono::steady_clock;
  std::vector<double> lat;
  const auto t0 = clk::now();
  long n = 0;
  for (; n < max_cycles; ++n) {
    const auto s = clk::now();
    if (std::chrono::duration<double>(s - t0).count() > max_s) break;
    std::string tmp = dir + "/.tmp." + std::to_string(n), fin = dir + "/f" + std::to_string(n) + ".htpasswd";
    int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0) { perror("open"); return 1; }
    if (write(fd, line, sizeof line - 1) != (ssize_t)(sizeof line - 1)) { perror("write"); return 1; }
    if (fsync(fd) != 0) { perror("fsync"); return 1; }
    close(fd);
    if (rename(tmp.c_str(), fin.c_str()) != 0) { perror("rename"); return 1; }
    if (fsync(dfd) != 0) { perror("fsync dir"); return 1; }
    if (unlink(fin.c_str()) != 0) { perror("unlink"); return 1; }
    lat.push_back(std::chrono::duration<double, std::milli>(clk::now() - s).count());
  }
  const double secs = std::chrono::duration<double>(clk::now() - t0).count();
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) { return lat.empty() ? 0.0 : lat[std::min(lat.size() - 1, (size_t)(p * lat.size()))]; };
  std::printf("%ld %.3f %.1f %.3f %.3f\n", n, secs, n / secs, pct(0.50), pct(0.99));
  close(dfd);
  return 0;
}
