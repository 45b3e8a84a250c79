// The real filesystem with a hook before each call of the disk seam, to make
// races deterministic: an operation under test is paused between its check
// and its act, and a competing operation runs right there.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "disk.h"

namespace artifact::testing {

class HookedDisk : public PosixDisk {
 public:
  ~HookedDisk() override { Join(); }

  // Called before every call ("read", "link", "rename", "unlink", "lock")
  // on the thread making it, except from inside the hook itself.
  std::function<void(const std::string& op, const std::string& path)> before;

  // The first time the thread that set this up calls `op` on a path ending
  // in `suffix`, `competitor` starts on a thread of its own, and the caller
  // goes on only when the competitor has returned or is about to wait for
  // the lock ending in `lock_suffix` (which the paused operation holds, if
  // the code under test takes it). Join() waits for the competitor.
  void CompeteAt(const std::string& op, const std::string& suffix, const std::string& lock_suffix,
                 std::function<void()> competitor) {
    owner_ = std::this_thread::get_id();
    op_ = op;
    suffix_ = suffix;
    lock_suffix_ = lock_suffix;
    competitor_ = std::move(competitor);
  }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  bool competed() const { return fired_; }

  Result<std::string> Read(const std::string& path, size_t max_bytes) override {
    Hook("read", path);
    return PosixDisk::Read(path, max_bytes);
  }
  int Link(const std::string& from, const std::string& to) override {
    Hook("link", to);
    return PosixDisk::Link(from, to);
  }
  int Rename(const std::string& from, const std::string& to) override {
    Hook("rename", to);
    return PosixDisk::Rename(from, to);
  }
  int Unlink(const std::string& path) override {
    Hook("unlink", path);
    return PosixDisk::Unlink(path);
  }
  Result<FileLock> Lock(const std::string& path, bool wait) override {
    Hook("lock", path);
    return PosixDisk::Lock(path, wait);
  }

 private:
  static bool EndsWith(const std::string& s, const std::string& suffix) {
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
  }

  static bool& IsCompetitor() {
    static thread_local bool competitor = false;
    return competitor;
  }

  void Hook(const std::string& op, const std::string& path) {
    static thread_local bool in_hook = false;
    if (!in_hook && before) {
      in_hook = true;
      before(op, path);
      in_hook = false;
    }
    const auto me = std::this_thread::get_id();
    if (me == owner_ && !fired_ && op == op_ && EndsWith(path, suffix_)) {
      fired_ = true;
      thread_ = std::thread([this] {
        IsCompetitor() = true;
        competitor_();
        std::lock_guard<std::mutex> lock(mu_);
        released_ = true;
        cv_.notify_all();
      });
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return released_; });
    } else if (IsCompetitor() && op == "lock" && EndsWith(path, lock_suffix_)) {
      std::lock_guard<std::mutex> lock(mu_);
      released_ = true;
      cv_.notify_all();
    }
  }

  std::thread::id owner_;
  std::string op_, suffix_, lock_suffix_;
  std::function<void()> competitor_;
  bool fired_ = false;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
};

}  // namespace artifact::testing
