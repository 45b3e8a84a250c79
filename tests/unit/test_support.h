// Shared seams for unit tests: a settable clock, predictable bytes and a
// temp directory removed at scope exit.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "clock.h"

namespace artifact::testing {

class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t now = 1'800'000'000) : now_(now) {}
  int64_t Now() const override { return now_; }
  void Advance(int64_t s) { now_ += s; }

 private:
  int64_t now_;
};

// Counting bytes: distinct on every call, the same in every run.
class CountingRandom : public RandomSource {
 public:
  bool Fill(unsigned char* out, size_t n) override {
    for (size_t i = 0; i < n; ++i) out[i] = static_cast<unsigned char>(next_++);
    return true;
  }

 private:
  unsigned next_ = 1;
};

class FailingRandom : public RandomSource {
 public:
  bool Fill(unsigned char*, size_t) override { return false; }
};

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "artifact-unit-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    if (p == nullptr) std::abort();
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const {
    std::string p = path_ + "/" + name;
    std::filesystem::create_directories(p);
    return p;
  }

 private:
  std::string path_;
};

inline mode_t ModeOf(const std::string& path) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

inline void SetMtime(const std::string& path, int64_t unix_time) {
  struct timespec times[2] = {{static_cast<time_t>(unix_time), 0}, {static_cast<time_t>(unix_time), 0}};
  ::utimensat(AT_FDCWD, path.c_str(), times, 0);
}

}  // namespace artifact::testing
