// The libfcgi accept loop: the only code that knows FastCGI. Accepts on the
// socket spawn-fcgi hands over as fd 0, turns FCGX params into a Request,
// hands it to the Api and writes the Response. Stops cleanly on SIGTERM,
// SIGINT or SIGHUP after the request in flight.
#pragma once

#include "api.h"

namespace artifact {

// Whether fd 0 is a FastCGI listening socket; otherwise prints why and
// returns false. Safe to call before forking the serve processes.
bool FastCgiSocketOnStdin();

// Returns the process exit code.
int RunFastCgiLoop(Api& api);

}  // namespace artifact
