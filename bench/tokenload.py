#!/usr/bin/env python3
"""Token API load generator (stdlib only).

  tokenload.py cycle    URL USER PASS PREFIX CLIENTS MAX_CYCLES MAX_SECONDS
      each of CLIENTS threads loops POST /token + DELETE /token/<user> on a
      keep-alive connection, a fresh scope PREFIX/c<thread>/<n> every cycle.
      Prints one JSON line: cycles, seconds, cycles_per_s, p50_ms, p99_ms, errors.
  tokenload.py populate URL USER PASS PREFIX COUNT CLIENTS
      issues COUNT tokens (ttl 3600) for scopes PREFIX/p<thread>/<n>, keeps them.
      Prints JSON: issued, seconds, errors.
Every loop is bounded in count and time.
"""
import base64, http.client, json, sys, threading, time
from urllib.parse import urlsplit


def conn_for(url):
    u = urlsplit(url)
    return lambda: http.client.HTTPConnection(u.hostname, u.port, timeout=10)


first_error = []


def worker_cycle(mk, auth, prefix, idx, deadline, budget, out):
    c = mk()
    lat, errors, n = [], 0, 0
    hdr = {"Authorization": auth, "Content-Type": "application/json"}
    while n < budget and time.monotonic() < deadline:
        scope = f"{prefix}/c{idx}/{n}"
        t0 = time.perf_counter()
        try:
            c.request("POST", "/token", json.dumps({"scope": scope, "ttl": 3600}), hdr)
            r = c.getresponse(); body = r.read()
            if r.status != 201:
                errors += 1; n += 1; first_error.append("POST %d %s" % (r.status, body[:200])); continue
            user = json.loads(body)["username"]
            c.request("DELETE", "/token/" + user, headers={"Authorization": auth})
            r = c.getresponse(); body = r.read()
            if r.status not in (200, 204):
                errors += 1; n += 1; first_error.append("DELETE %d %s" % (r.status, body[:200])); continue
        except Exception as e:
            errors += 1; n += 1; first_error.append(repr(e))
            c.close(); c = mk(); continue
        lat.append((time.perf_counter() - t0) * 1000.0)
        n += 1
    c.close()
    out[idx] = (lat, errors)


def worker_populate(mk, auth, prefix, idx, count, deadline, out):
    c = mk(); ok = errors = 0
    hdr = {"Authorization": auth, "Content-Type": "application/json"}
    for n in range(count):
        if time.monotonic() > deadline:
            break
        try:
            c.request("POST", "/token", json.dumps({"scope": f"{prefix}/p{idx}/{n}", "ttl": 3600}), hdr)
            r = c.getresponse(); r.read()
            ok += r.status == 201; errors += r.status != 201
        except Exception:
            errors += 1; c.close(); c = mk()
    c.close()
    out[idx] = (ok, errors)


def pct(xs, p):
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


def main():
    mode, url, user, pw, prefix = sys.argv[1:6]
    auth = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
    mk = conn_for(url)
    # Warm the master-credential cache (bcrypt once) before timing.
    c = mk(); c.request("GET", "/token/t00000000000000000000", headers={"Authorization": auth}); c.getresponse().read(); c.close()
    if mode == "cycle":
        clients, max_cycles, max_s = int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8])
        per = max(1, max_cycles // clients)
        out = [None] * clients
        t0 = time.monotonic(); deadline = t0 + max_s
        ts = [threading.Thread(target=worker_cycle, args=(mk, auth, prefix, i, deadline, per, out)) for i in range(clients)]
        for t in ts: t.start()
        for t in ts: t.join(max_s + 30)
        secs = time.monotonic() - t0
        lat = sorted(x for o in out if o for x in o[0])
        errors = sum(o[1] for o in out if o)
        print(json.dumps({"clients": clients, "cycles": len(lat), "seconds": round(secs, 3),
                          "cycles_per_s": round(len(lat) / secs, 1), "p50_ms": round(pct(lat, .5), 3),
                          "p99_ms": round(pct(lat, .99), 3), "errors": errors,
                          "first_error": first_error[0] if first_error else None}))
    elif mode == "populate":
        count, clients = int(sys.argv[6]), int(sys.argv[7])
        out = [None] * clients
        t0 = time.monotonic(); deadline = t0 + 600
        per = [count // clients + (1 if i < count % clients else 0) for i in range(clients)]
        ts = [threading.Thread(target=worker_populate, args=(mk, auth, prefix, i, per[i], deadline, out)) for i in range(clients)]
        for t in ts: t.start()
        for t in ts: t.join(700)
        print(json.dumps({"issued": sum(o[0] for o in out if o), "seconds": round(time.monotonic() - t0, 3),
                          "errors": sum(o[1] for o in out if o)}))
    else:
        sys.exit("unknown mode " + mode)


if __name__ == "__main__":
    main()
