// Seams for time and randomness, passed in the way leveldb passes its Env,
// so expiry and token generation are testable with fixed values.
#pragma once

#include <cstddef>
#include <cstdint>

namespace artifact {

class Clock {
 public:
  virtual ~Clock() = default;
  // Seconds since the Unix epoch.
  virtual int64_t Now() const = 0;
  // Nanoseconds since the Unix epoch, where order within a second matters.
  virtual int64_t NowNanos() const { return Now() * 1'000'000'000; }
};

class SystemClock : public Clock {
 public:
  int64_t Now() const override;
  int64_t NowNanos() const override;
};

class RandomSource {
 public:
  virtual ~RandomSource() = default;
  // Fills `out` with `n` unpredictable bytes; false when no randomness is
  // available (the caller must then refuse, never fall back).
  virtual bool Fill(unsigned char* out, size_t n) = 0;
};

// OpenSSL RAND_bytes.
class OpenSslRandom : public RandomSource {
 public:
  bool Fill(unsigned char* out, size_t n) override;
};

}  // namespace artifact
