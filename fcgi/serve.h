// The wiring of one `serve` process: the token store and the builds (the
// owners of the two volumes), the masters file, metrics, the expiry timer and
// the sealer around the API, and the FastCGI accept loop on standard input.
// cli.cc parses the flags and decides how many of these run.
#pragma once

#include "config.h"
#include "metrics.h"

namespace artifact {

// Runs process number `index` of config.processes until a stop signal;
// returns its exit status. `metrics` is shared by all of them (made before
// the fork, see Metrics::Open).
int ServeProcess(const Config& config, int index, Metrics* metrics);

}  // namespace artifact
