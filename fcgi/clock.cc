#include "clock.h"

#include <openssl/rand.h>

#include <climits>
#include <ctime>

namespace artifact {

int64_t SystemClock::Now() const { return static_cast<int64_t>(std::time(nullptr)); }

int64_t SystemClock::NowNanos() const {
  struct timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<int64_t>(ts.tv_nsec);
}

bool OpenSslRandom::Fill(unsigned char* out, size_t n) {
  return n <= INT_MAX && RAND_bytes(out, static_cast<int>(n)) == 1;
}

}  // namespace artifact
