#!/usr/bin/env python3
"""artifact-repository benchmarks (issue 7): see bench/README.md.

Started by bench/run.sh, which builds the binaries first. Starts its own servers
on 127.0.0.1 (the product through scripts/run.sh, and one plain nginx holding
every baseline), measures, and writes bench/RESULTS.md. Every figure in the
output comes from this run; baselines and subjects alternate (A B A B ...) and
the medians are reported. Every load loop is bounded in count and time, and
only the processes started here are stopped.
"""
import argparse
import base64
import hashlib
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN_DIR = os.environ.get("BENCH_BUILD_DIR", "/tmp/bench-build")
APP_BIN = os.path.join(BIN_DIR, "artifact-token")
FSLOOP = os.path.join(BIN_DIR, "bench-fsloop")
MASTER_USER = "bench"
MiB = 1024 * 1024

started = []  # Popen objects we own, stopped in reverse order


def log(*a):
    print("[bench %s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def stop_all():
    while started:
        p = started.pop()
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            except ProcessLookupError:
                pass


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


def run(cmd, timeout, **kw):
    return subprocess.run(cmd, check=True, timeout=timeout, capture_output=True, text=True, **kw)


def http(method, url, body=None, auth=None, timeout=10):
    req = urllib.request.Request(url, data=body, method=method)
    if auth:
        req.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(url, proc, seconds=20, any_status=False):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("server exited early: %r" % proc.args)
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200 or any_status:
                    return
        except urllib.error.HTTPError:
            if any_status:
                return
        except Exception:
            pass
        time.sleep(0.1)
    raise SystemExit("server not ready: " + url)


def ssha(password):
    salt = os.urandom(8)
    return "{SSHA}" + base64.b64encode(hashlib.sha1(password.encode() + salt).digest() + salt).decode()


def state_pid(state, name):
    """A PID file written by scripts/run.sh (in the state dir, or its run/ in older versions)."""
    for path in (os.path.join(state, name), os.path.join(state, "run", name)):
        if os.path.exists(path):
            return int(open(path).read().strip())
    raise SystemExit("no %s under %s" % (name, state))


def state_conf(state, key):
    """A key of the artifact-token.conf that scripts/prepare-state.sh wrote."""
    for line in open(os.path.join(state, "artifact-token.conf")):
        k, _, v = line.partition("=")
        if k.strip() == key:
            return v.strip()
    raise SystemExit("no %s in %s/artifact-token.conf" % (key, state))


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------- servers

def start_product(tmp, port, master_pw):
    state = os.path.join(tmp, "state")
    # The product as shipped: scripts/run.sh's default number of app processes.
    env = {k: v for k, v in os.environ.items() if k != "ARTIFACT_PROCESSES"}
    env = dict(env, ARTIFACT_BIN=APP_BIN, ARTIFACT_STATE_DIR=state,
               ARTIFACT_LISTEN="127.0.0.1:%d" % port, ARTIFACT_MASTER_USER=MASTER_USER,
               ARTIFACT_MASTER_PASSWORD=master_pw, ARTIFACT_TOKEN_RATE="100000r/s",
               ARTIFACT_TOKEN_BURST="100000")
    out = open(os.path.join(tmp, "product-run.log"), "w")
    p = subprocess.Popen([os.path.join(REPO, "scripts", "run.sh")], env=env, stdout=out,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    started.append(p)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise SystemExit("scripts/run.sh exited: see " + out.name + "\n" + open(out.name).read()[-2000:])
        if "Ctrl-C stops both servers." in open(out.name).read():
            break
        time.sleep(0.1)
    else:
        raise SystemExit("scripts/run.sh did not become ready")
    wait_ready("http://127.0.0.1:%d/token/healthz" % port, p)
    return state


BASE_CONF = """{user_line}
worker_processes 2;
pid {base}/nginx.pid;
error_log {base}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    server_tokens off;
    log_format artifact '$remote_addr - $remote_user [$time_iso8601] "$request" $status $body_bytes_sent';
    access_log {base}/access.log artifact;
    fastcgi_temp_path {base}/tmp/fastcgi;
    proxy_temp_path {base}/tmp/proxy;
    scgi_temp_path {base}/tmp/scgi;
    uwsgi_temp_path {base}/tmp/uwsgi;
    root {base}/artifacts;
    client_body_temp_path {base}/artifacts/.incoming;
    client_max_body_size 10g;
{servers}
}}
"""

SERVER = """    server {{
        listen 127.0.0.1:{port};
        location ~ /\\. {{ return 404; }}
        location / {{
{auth}            dav_methods PUT DELETE MKCOL;
            dav_access user:rw group:rw all:r;
            create_full_put_path on;
        }}
    }}
"""


baseline_masters = []


def started_pid(kind, ports):
    return baseline_masters[-1]


def start_baseline(tmp, files):
    """One plain nginx (same worker settings as the product): a server without
    auth and one per password file in `files` (name -> path). Returns ports."""
    base = os.path.join(tmp, "base")
    for d in ("artifacts/.incoming", "tmp/fastcgi", "tmp/proxy", "tmp/scgi", "tmp/uwsgi"):
        os.makedirs(os.path.join(base, d), exist_ok=True)
    ports = {"plain": free_port()}
    servers = SERVER.format(port=ports["plain"], auth="")
    for name, path in files.items():
        ports[name] = free_port()
        servers += SERVER.format(port=ports[name], auth='            auth_basic "bench";\n'
                                 '            auth_basic_user_file %s;\n' % path)
    user_line = "user www-data www-data;" if os.getuid() == 0 else "# not root"
    conf = os.path.join(base, "nginx.conf")
    with open(conf, "w") as f:
        f.write(BASE_CONF.format(user_line=user_line, base=base, servers=servers))
    if os.getuid() == 0:
        for root, dirs, fs in os.walk(os.path.join(base, "artifacts")):
            shutil.chown(root, "www-data", "www-data")
        for d in ("fastcgi", "proxy", "scgi", "uwsgi"):
            shutil.chown(os.path.join(base, "tmp", d), "www-data", "www-data")
    run(["nginx", "-t", "-q", "-p", base, "-c", conf, "-e", base + "/error.log"], 30)
    p = subprocess.Popen(["nginx", "-p", base, "-c", conf, "-e", base + "/error.log", "-g", "daemon off;"],
                         stdin=subprocess.DEVNULL)
    started.append(p)
    baseline_masters.append(p.pid)
    wait_ready("http://127.0.0.1:%d/" % ports["plain"], p, any_status=True)
    return ports


def write_htpasswd(path, lines):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("".join(l + "\n" for l in lines))
    os.chmod(tmp, 0o640)
    if os.getuid() == 0:
        shutil.chown(tmp, "root", "www-data")
    os.rename(tmp, path)


# ---------------------------------------------------------------- measurements

def wrk_put(url, auth, seconds, conns, want_count=False):
    env = dict(os.environ, BENCH_AUTH=base64.b64encode(auth.encode()).decode() if auth else "")
    r = run(["wrk", "-t1", "-c%d" % conns, "-d%ds" % seconds, "--timeout", "5s",
             "-s", os.path.join(HERE, "put.lua"), url], seconds + 60, env=env)
    m = re.search(r"BENCH_RESULT (.*)", r.stdout)
    if not m:
        raise SystemExit("wrk output not understood:\n" + r.stdout + r.stderr)
    d = {k: int(v) for k, v in (kv.split("=") for kv in m.group(1).split())}
    errors = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    if d["requests"] == 0 or errors > 0.01 * d["requests"]:
        raise SystemExit("wrk %s: %d errors in %d requests (%r)" % (url, errors, d["requests"], d))
    return (d["requests"] / (d["duration_us"] / 1e6), d["requests"]) if want_count else d["requests"] / (d["duration_us"] / 1e6)


def rounds(n, runs, seconds, conns):
    """n rounds over `runs` (name, url, auth), the order reversed every other
    round (A B C, C B A, ...) so a drift does not favour one side. Returns
    {name: [req/s per round]}."""
    res = {name: [] for name, _, _ in runs}
    for i in range(n):
        for name, url, auth in (runs if i % 2 == 0 else runs[::-1]):
            res[name].append(wrk_put(url, auth, seconds, conns))
    return res


def ratio_of(res, a, b):
    """Median over rounds of a/b measured in the same round."""
    return median([x / y for x, y in zip(res[a], res[b])])


def check_put(url, auth, want=(201, 204)):
    st, body = http("PUT", url, b"x" * 1024, auth)
    if st not in want:
        raise SystemExit("sanity PUT %s -> %d %r" % (url, st, body[:200]))


def issue(port, master_pw, scope):
    st, body = http("POST", "http://127.0.0.1:%d/token" % port,
                    json.dumps({"scope": scope, "ttl": 3600}).encode(), "%s:%s" % (MASTER_USER, master_pw))
    if st != 201:
        raise SystemExit("issue %s -> %d %r" % (scope, st, body))
    d = json.loads(body)
    return d["username"], d["password"]


def tokenload(*args, timeout):
    r = run([sys.executable, os.path.join(HERE, "tokenload.py")] + [str(a) for a in args], timeout)
    return json.loads(r.stdout.strip().splitlines()[-1])


def live_tokens(state):
    return len([n for n in os.listdir(os.path.join(state_conf(state, "tokens_dir"), ".by-user")) if not n.startswith(".")])


def curl_speed(args, timeout):
    r = run(["curl", "-sS", "--fail", "-o", "/dev/null", "-w", "%{http_code} %{speed_upload} %{speed_download}"]
            + args, timeout)
    code, up, down = r.stdout.split()
    return int(code), float(up) / 1e6, float(down) / 1e6


def app_processes(pid):
    """The artifact-token processes at and under `pid` (scripts/run.sh's app.pid:
    the app, or with several processes their supervisor and its children)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            if open("/proc/%d/comm" % p).read().strip() == "artifact-token":
                found.append(p)
            for task in os.listdir("/proc/%d/task" % p):
                todo += [int(c) for c in open("/proc/%d/task/%s/children" % (p, task)).read().split()]
        except OSError:
            pass
    if not found:
        raise SystemExit("no artifact-token process under pid %d" % pid)
    return sorted(found)


def proc_kib(pid, name, key):
    """The `key:` line of /proc/PID/NAME, in KiB."""
    with open("/proc/%d/%s" % (pid, name)) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise SystemExit("no %s in /proc/%d/%s" % (key, pid, name))


def vm_hwm_kib(pid):
    return proc_kib(pid, "status", "VmHWM")


def pss_kib(pid):
    """Proportional set size: pages shared between the forked processes (code,
    libraries, what the supervisor touched before forking) counted once overall."""
    return proc_kib(pid, "smaps_rollup", "Pss")


def strace_counts(path):
    counts = {}
    for line in open(path):
        f = line.split()
        if len(f) >= 5 and f[-1].isidentifier() and f[0][0].isdigit():
            counts[f[-1]] = int(f[3])
    return counts


def syscalls_per_put(master_pid, url, auth, tmp, name):
    """strace -c on the nginx workers of `master_pid` during a 1 s wrk run:
    syscalls per PUT, in all and openat alone."""
    workers = run(["pgrep", "-P", str(master_pid)], 10).stdout.split()
    out = os.path.join(tmp, "strace-%s.txt" % name)
    cmd = ["strace", "-f", "-c", "-o", out]
    for w in workers:
        cmd += ["-p", w]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started.append(p)
    time.sleep(1.0)
    _, n = wrk_put(url, auth, 1, 4, want_count=True)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=15)
    started.remove(p)
    c = strace_counts(out)
    skip = ("epoll_wait", "gettimeofday", "total")
    return sum(v for k, v in c.items() if k not in skip) / n, c.get("openat", 0) / n


def start_variant(state, port, tmp, tag, replacement):
    """A second nginx on the product's state with its rendered site config
    changed in one place only: `disable_symlinks on ...;` becomes `replacement`. Diagnostic, never the
    product's own files (copies in the state directory of this run)."""
    nd = os.path.join(state, "nginx")
    site = open(os.path.join(nd, "artifact-repository.conf")).read()
    main_conf = open(os.path.join(nd, "nginx.conf")).read()
    site2, n1 = re.subn(r"listen\s+[^;]+;", "listen 127.0.0.1:%d;" % port, site)
    site2, n2 = re.subn(r"disable_symlinks\s+on(?:\s+from=[^;]*)?\s*;", replacement, site2)
    main2, n3 = re.subn(r"include\s+\S*artifact-repository\.conf\s*;",
                        "include %s/bench-%s-site.conf;" % (nd, tag), main_conf)
    main2, n4 = re.subn(r"(?m)^pid\s+[^;]+;", "pid %s/bench-%s.pid;" % (state, tag), main2)
    if not (n1 == 1 and n2 >= 1 and n3 == 1 and n4 == 1):
        return None
    open(os.path.join(nd, "bench-%s-site.conf" % tag), "w").write(site2)
    conf = os.path.join(nd, "bench-%s.conf" % tag)
    open(conf, "w").write(main2)
    err = os.path.join(tmp, "variant-%s-error.log" % tag)
    p = subprocess.Popen(["nginx", "-p", state, "-c", conf, "-e", err, "-g", "daemon off;"], stdin=subprocess.DEVNULL)
    started.append(p)
    wait_ready("http://127.0.0.1:%d/" % port, p, any_status=True)
    return p


def strace_cycles(app_pids, port, master_pw, cycles, tmp):
    """Counts the app's syscalls (every app process) over `cycles` issue+revoke cycles (1 client)."""
    out = os.path.join(tmp, "strace-cycle.txt")
    p = subprocess.Popen(["strace", "-f", "-c", "-o", out] + [a for pid in app_pids for a in ("-p", str(pid))],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started.append(p)
    time.sleep(1.0)
    res = tokenload("cycle", "http://127.0.0.1:%d" % port, MASTER_USER, master_pw, "strace/x", 1, cycles, 30,
                    timeout=90)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    p.wait(timeout=15)
    started.remove(p)
    counts = strace_counts(out)
    counts.pop("total", None)
    n = max(1, res["cycles"] + 1)  # +1: tokenload's warm-up request
    return {k: v / n for k, v in counts.items()}, res["cycles"]


# ---------------------------------------------------------------- figure 7: the seal

SEAL_BIG = "bench/seal/big/1"    # scopes at scope_depth 4, scripts/run.sh's default
SEAL_MANY = "bench/seal/many/1"
RAM_FS = ("tmpfs", "ramfs")


def fstype(path):
    return run(["findmnt", "-n", "-o", "FSTYPE", "-T", path], 10).stdout.split()[0]


def seal_parent(disk_parent):
    """Where figure 7 makes its own temp dir: BENCH_SEALDIR, else the disk tmpdir of
    figures 2-4, unless that is a RAM filesystem (then /var/tmp, when it is not)."""
    if os.environ.get("BENCH_SEALDIR"):
        return os.environ["BENCH_SEALDIR"]
    if fstype(disk_parent) in RAM_FS and os.path.isdir("/var/tmp") and fstype("/var/tmp") not in RAM_FS:
        return "/var/tmp"
    return disk_parent


def thaw(root):
    """chmod u+w every directory at and below `root`: undoes a seal's freeze (0555),
    so the build can be reset or removed by a user who is not root."""
    for d, _, _ in os.walk(root):
        mode = os.lstat(d).st_mode
        if not mode & 0o200:
            os.chmod(d, (mode & 0o7777) | 0o200)


def remove_tree(d):
    if d and os.path.isdir(d):
        try:
            thaw(d)
        except OSError:
            pass
        shutil.rmtree(d, ignore_errors=True)


def reset_build(path):
    """What a seal changed in a build, undone (untimed): its directories writable again,
    SHA256SUMS and .build.json deleted."""
    thaw(path)
    for name in ("SHA256SUMS", ".build.json"):
        try:
            os.unlink(os.path.join(path, name))
        except FileNotFoundError:
            pass


def make_seal_builds(artifacts, big_bytes, big_files, many_files, many_dirs):
    """Two builds in `artifacts`: SEAL_BIG, `big_files` files of `big_bytes` in all, and
    SEAL_MANY, `many_files` files of 256 B to 4 KiB in `many_dirs` directories. Distinct
    random content. Returns {scope: (files, bytes, sorted relative paths)}."""
    blk = os.urandom(8 * MiB)
    out = {}
    big = os.path.join(artifacts, SEAL_BIG)
    os.makedirs(big)
    names, total = [], 0
    for j in range(big_files):
        names.append("part%02d.bin" % j)
        with open(os.path.join(big, names[-1]), "wb") as fo:
            left, k = big_bytes // big_files, 0
            while left:
                n = min(left, len(blk))
                fo.write((b"%08d%08d" % (j, k) + blk[16:n])[:n])
                left, k, total = left - n, k + 1, total + n
    out[SEAL_BIG] = (big_files, total, sorted(names))
    many = os.path.join(artifacts, SEAL_MANY)
    names, total = [], 0
    for d in range(many_dirs):
        os.makedirs(os.path.join(many, "d%03d" % d))
    for i in range(many_files):
        size = 256 + (i * 2654435761) % 3841
        off = (i * 4099) % (len(blk) - 4096)
        names.append("d%03d/f%06d.dat" % (i % many_dirs, i))
        with open(os.path.join(many, names[-1]), "wb") as fo:
            fo.write((b"%08d" % i + blk[off:off + size])[:size])
        total += size
    out[SEAL_MANY] = (many_files, total, sorted(names))
    return out


def resident(root, names):
    """Fraction of the pages of `names` (relative to `root`) in the page cache (fincore)."""
    ps = os.sysconf("SC_PAGE_SIZE")
    have = want = 0
    for i in range(0, len(names), 2000):
        r = run(["fincore", "-b", "-n", "-r", "-o", "PAGES,SIZE"] + names[i:i + 2000], 120, cwd=root)
        for line in r.stdout.splitlines():
            pages, size = (int(x) for x in line.split())
            have, want = have + pages, want + (size + ps - 1) // ps
    return have / want if want else float("nan")


def timed(cmd, cwd, timeout):
    """Wall clock of one command, and its stdout (bytes)."""
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, timeout=timeout)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit("figure 7: %r exited %d:\n%s" % (cmd, r.returncode, (r.stdout + r.stderr).decode()[-2000:]))
    return dt, r.stdout


def sums(text):
    """A sha256sum-style listing as {relative path: digest}."""
    out = {}
    for line in text.decode().splitlines():
        digest, _, name = line.partition("  ")
        out[name[2:] if name.startswith("./") else name] = digest
    return out


def evp_sha256_mbps():
    """OpenSSL's EVP SHA-256 in memory, 1 MiB blocks, 1 s: MB/s (None if not understood)."""
    r = subprocess.run(["openssl", "speed", "-evp", "sha256", "-bytes", "1048576", "-seconds", "1"],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"(?mi)^sha256\s+([\d.]+)k\s*$", r.stdout)
    return float(m.group(1)) * 1000 / 1e6 if m else None


def seal_figure(sealtmp, q):
    """Figure 7: `artifact-token seal` (the product's binary, wall clock of the whole
    command) against sha256sum over the same builds. Returns (rows, notes, raw, method)."""
    big_bytes, big_files = (128 if q else 1024) * MiB, 8
    many_files, many_dirs = (5000, 10) if q else (50000, 50)
    max_rounds = 3 if q else 5
    limit_s = 15 if q else 50      # per build: no new round starts after this (at least one runs)
    t_fig = time.monotonic()
    tokens, artifacts = os.path.join(sealtmp, "tokens"), os.path.join(sealtmp, "artifacts")
    os.makedirs(tokens, 0o750)
    os.makedirs(artifacts)
    open(os.path.join(sealtmp, "masters"), "w").close()
    conf = os.path.join(sealtmp, "artifact-token.conf")
    with open(conf, "w") as f:
        f.write("tokens_dir = %s\nartifacts_dir = %s\nmasters_file = %s\nscope_depth = 4\n"
                % (tokens, artifacts, os.path.join(sealtmp, "masters")))
    log("figure 7: writing a %d MiB build and a %d-file build in %s" % (big_bytes // MiB, many_files, sealtmp))
    builds = make_seal_builds(artifacts, big_bytes, big_files, many_files, many_dirs)
    # Writeback of what was just written would otherwise land in the timed runs;
    # `sync -f` flushes this filesystem and keeps the pages cached.
    run(["sync", "-f", artifacts], 600)
    log("figure 7: builds written and flushed in %.1f s" % (time.monotonic() - t_fig))

    def seal_cmd(scope):
        return [APP_BIN, "seal", scope, "--result", "success", "--config", conf]

    def base_cmd(scope):
        if scope == SEAL_BIG:
            return ["sha256sum", "--"] + builds[scope][2]
        return ["sh", "-c", "find . -type f -print0 | xargs -0 sha256sum"]

    raw, med, ratios, res = {}, {}, {}, {}
    for scope in (SEAL_BIG, SEAL_MANY):
        path = os.path.join(artifacts, scope)
        nfiles, nbytes, names = builds[scope]
        timeout = 300 if scope == SEAL_BIG else 600
        # Untimed warm-up of both commands (page cache, dentries, the binaries), which
        # also checks the seal: its SHA256SUMS equals sha256sum's output.
        reset_build(path)
        _, out = timed(seal_cmd(scope), artifacts, timeout)
        if ("sealed %s: %d files" % (scope, nfiles)).encode() not in out:
            raise SystemExit("figure 7: unexpected seal output %r" % out[-500:])
        with open(os.path.join(path, "SHA256SUMS"), "rb") as fi:
            sealed = sums(fi.read())
        reset_build(path)
        _, out = timed(base_cmd(scope), path, timeout)
        if sealed != sums(out) or len(sealed) != nfiles:
            raise SystemExit("figure 7: the seal's SHA256SUMS differs from sha256sum's for " + scope)
        before = resident(path, names)
        log("figure 7: %s, up to %d rounds of (seal, sha256sum)" % (scope, max_rounds))
        runs = {"seal": [], "sha256sum": []}
        t0 = time.monotonic()
        for i in range(max_rounds):
            if i and time.monotonic() - t0 > limit_s:
                break
            for who in (("seal", "sha256sum") if i % 2 == 0 else ("sha256sum", "seal")):
                reset_build(path)
                dt, _ = timed(seal_cmd(scope) if who == "seal" else base_cmd(scope), artifacts if who == "seal" else path,
                              timeout)
                runs[who].append(dt)
        reset_build(path)
        res[scope] = (before, resident(path, names))
        raw[scope] = runs
        med[scope] = {k: median(v) for k, v in runs.items()}
        ratios[scope] = median([b / s for s, b in zip(runs["seal"], runs["sha256sum"])])  # rate ratio
    evp = evp_sha256_mbps()

    f = lambda x, d=0: "{:,.{}f}".format(x, d)
    rows = []
    nfiles, nbytes, _ = builds[SEAL_BIG]
    size = "1 GiB" if nbytes == 1024 * MiB else "%d MiB" % (nbytes // MiB)
    big_rate = {k: nbytes / v / 1e6 for k, v in med[SEAL_BIG].items()}
    ok = ratios[SEAL_BIG] >= 0.9
    rows.append(("7", "seal of a %s build (%d files): SHA-256 MB/s, `artifact-token seal` wall clock" % (size, nfiles),
                 f(big_rate["seal"]), "%s (`sha256sum` over the same files)" % f(big_rate["sha256sum"]),
                 "%.3f" % ratios[SEAL_BIG], ">= 0.9", "pass" if ok else "**FAIL**"))
    mfiles, mbytes, _ = builds[SEAL_MANY]
    many_rate = {k: mfiles / v for k, v in med[SEAL_MANY].items()}
    rows.append(("7", "seal of a %s-file build (%.0f MB): files/s" % (f(mfiles), mbytes / 1e6), f(many_rate["seal"]),
                 "%s (`find -print0 \\| xargs -0 sha256sum`)" % f(many_rate["sha256sum"]),
                 "%.3f" % ratios[SEAL_MANY], "(report)", "—"))
    if evp:
        rows.append(("7", "diagnosis: SHA-256 in memory, OpenSSL EVP (`openssl speed -evp sha256`, 1 MiB blocks), MB/s",
                     f(evp), "%s (`sha256sum`, %s build above)" % (f(big_rate["sha256sum"]), size),
                     "%.3f" % (evp / big_rate["sha256sum"]), "(diagnosis)", "—"))

    sha_bin = shutil.which("sha256sum")
    links = "libcrypto" in run(["ldd", sha_bin], 10).stdout if sha_bin else False
    flags = open("/proc/cpuinfo").read()
    shani = bool(re.search(r"\bsha_ni\b", flags))
    ver = run(["sha256sum", "--version"], 10).stdout.splitlines()[0]
    notes = [
        "Figure 7, page cache: both builds were written, flushed with `sync -f` and then hashed once by each "
        "command untimed (that warm-up also checks that the seal's SHA256SUMS equals sha256sum's output). "
        "`fincore` found %.1f%% / %.1f%% of the %s build's pages cached before / after the timed rounds, and "
        "%.1f%% / %.1f%% of the %s-file build's." % (100 * res[SEAL_BIG][0], 100 * res[SEAL_BIG][1], size,
                                                    100 * res[SEAL_MANY][0], 100 * res[SEAL_MANY][1], f(mfiles)),
        "Figure 7, why the ratio is what it is: `%s` %s libcrypto, so it hashes with %s; the seal hashes "
        "with OpenSSL's EVP SHA-256 in one thread, 1 MiB reads, and this CPU %s the SHA extensions (`sha_ni`), "
        "which OpenSSL uses. The seal's whole command reached %.0f%% of EVP's in-memory rate on the %s build%s."
        % (ver, "links" if links else "does not link",
           "OpenSSL" if links else "gnulib's portable C SHA-256 (no SHA extensions)",
           "has" if shani else "lacks", 100 * big_rate["seal"] / evp if evp else float("nan"), size,
           "" if evp else " (openssl speed's output was not understood)"),
        "Figure 7, per file: the seal took %.1f µs per file on the %s-file build (freeze, walk, open+read+hash, "
        "SHA256SUMS and .build.json written and fsynced, `latest` updated), find | xargs sha256sum %.1f µs."
        % (1e6 * med[SEAL_MANY]["seal"] / mfiles, f(mfiles), 1e6 * med[SEAL_MANY]["sha256sum"] / mfiles),
    ]
    n_rounds = {s: len(raw[s]["seal"]) for s in raw}
    method = ("Figure 7: the product's own `artifact-token seal SCOPE --result success --config C` (Release build; "
              "it freezes the build, chmod 0555 of its directories, walks and hashes every file in one thread with "
              "1 MiB reads, writes SHA256SUMS and .build.json and fsyncs them, updates `latest`), timed as the wall "
              "clock of the whole command, nothing subtracted, against `sha256sum FILE...` over the same %d files of "
              "the %s build and against `find . -type f -print0 | xargs -0 sha256sum` over a build of %s files "
              "(256 B to 4 KiB, in %d directories). Rounds alternate, the order reversed every other round: %d for "
              "the %s build, %d for the %s-file build (at most %d; no new round starts after %d s per build). The "
              "build is reset before every run, untimed: its directories chmod u+w, SHA256SUMS and .build.json "
              "deleted. The builds are in a temp dir of their own on %s (BENCH_SEALDIR, else BENCH_TMPDIR), with an "
              "empty token store. Page cache warm for both: see Measured findings.%s"
              % (nfiles, size, f(mfiles), many_dirs, n_rounds[SEAL_BIG], size, n_rounds[SEAL_MANY], f(mfiles),
                 max_rounds, limit_s, fstype(sealtmp),
                 " **Quick mode: a %s build instead of 1 GiB and %s files instead of 50,000.**" % (size, f(mfiles))
                 if q else ""))
    raw_out = {"figure 7 (seconds per run)": {s: raw[s] for s in raw}, "figure 7 seconds (setup and all runs)":
               round(time.monotonic() - t_fig, 1)}
    return rows, notes, raw_out, method


# ---------------------------------------------------------------- main

def machine(tmp, ram, seal):
    """The machine table; `tmp` and `ram` are None when figures 1-6 do not run."""
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    where = lambda d: " ".join(run(["findmnt", "-n", "-o", "FSTYPE,SOURCE", "-T", d], 10).stdout.splitlines()[0].split())
    ngx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    wrkv = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
    wrkv = (wrkv.stdout + wrkv.stderr).splitlines()[0].strip()
    mem = open("/proc/meminfo").readline().split()[1]
    try:
        rev = run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], 10).stdout.strip()
        dirty = run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"], 10).stdout.strip()
        rev += " (+ uncommitted changes)" if dirty else ""
    except Exception:
        rev = "?"
    out = [("date (UTC)", time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())), ("product commit", rev),
           ("nproc", str(os.cpu_count())), ("CPU", cpu), ("memory", "%.1f GiB" % (int(mem) / 1048576)),
           ("kernel", platform.release())]
    if tmp:
        out += [("filesystem, figures 2-4 (disk tmpdir)", "%s (%s)" % (where(tmp), tmp)),
                ("filesystem, figures 1 and 6 (RAM tmpdir)", "%s (%s)" % (where(ram), ram))]
    out.append(("filesystem, figure 7 (seal tmpdir)", "%s (%s)" % (where(seal), seal)))
    if tmp:
        out += [("nginx", ngx), ("wrk", wrkv)]
    return out + [("sha256sum", run(["sha256sum", "--version"], 10).stdout.splitlines()[0]),
                  ("openssl", run(["openssl", "version"], 10).stdout.strip()), ("python", platform.python_version())]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short runs (under two minutes)")
    ap.add_argument("--out", help="the report (default bench/RESULTS.md; required with --only)")
    ap.add_argument("--only", choices=["seal"], help="run figure 7 alone (no servers): a partial report")
    args = ap.parse_args()
    if args.out is None:
        if args.only:
            ap.error("--only writes a partial report: name it with --out FILE")
        args.out = os.path.join(HERE, "RESULTS.md")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.only == "seal":
        return main_seal_only(args)

    q = args.quick
    reps = 3                             # rounds per figure (A B, B A, A B)
    reps6 = 2 if q else 3
    put_s = 1 if q else 5                # wrk seconds per run (integer)
    conns = 16                           # wrk connections
    levels = [1, 100, 1000, 10000]
    big = (64 if q else 1024) * MiB      # figure 2 transfer size
    cyc_s = 2.0 if q else 5.0            # figure 3 seconds per run
    cyc_reps = 1 if q else 3
    live3_target = 1000 if q else 10000  # live tokens in figure 3 (issuing costs fsyncs: ~2-3 s per 1,000)
    raw_s = 1.0 if q else 3.0
    t_start = time.monotonic()

    disk_parent = os.environ.get("BENCH_TMPDIR", "/tmp")
    ram_parent = os.environ.get("BENCH_RAMDIR", "/dev/shm" if os.path.isdir("/dev/shm") else disk_parent)
    tmp = tempfile.mkdtemp(prefix="artifact-bench.", dir=disk_parent)
    ram = tempfile.mkdtemp(prefix="artifact-bench.", dir=ram_parent)
    sealtmp = tempfile.mkdtemp(prefix="artifact-bench-seal.", dir=seal_parent(disk_parent))
    for d in (tmp, ram, sealtmp):
        os.chmod(d, 0o755)
    rows, notes = [], []
    try:
        mach = machine(tmp, ram, sealtmp)
        master_pw = base64.urlsafe_b64encode(os.urandom(18)).decode()
        url_path = "/bench/put/b/1/file.bin"

        # ======== stage 1, on the RAM filesystem: figures 1 and 6 (CPU cost of auth)
        pport = free_port()
        log("stage 1: the product (scripts/run.sh) on 127.0.0.1:%d, state in %s" % (pport, ram))
        state = start_product(ram, pport, master_pw)
        base_dir = os.path.join(ram, "base")
        os.makedirs(base_dir)
        # Figure 6 password files: one user, one password, hashed four ways.
        hpw = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        hashes = {
            "{SSHA}": ssha(hpw),
            "$5$ (sha256crypt)": run(["openssl", "passwd", "-5", "-stdin"], 30, input=hpw + "\n").stdout.strip(),
            "$6$ (sha512crypt)": run(["openssl", "passwd", "-6", "-stdin"], 30, input=hpw + "\n").stdout.strip(),
            "bcrypt (htpasswd -B, cost 5)": run(["htpasswd", "-niB", "u"], 30, input=hpw + "\n").stdout.strip().split(":", 1)[1],
        }
        files = {"shared": os.path.join(base_dir, "shared.htpasswd")}
        write_htpasswd(files["shared"], ["u:" + ssha(hpw)])
        for i, (k, h) in enumerate(hashes.items()):
            files["h%d" % i] = os.path.join(base_dir, "h%d.htpasswd" % i)
            write_htpasswd(files["h%d" % i], ["u:" + h])
        log("stage 1: the baseline nginx")
        ports = start_baseline(ram, files)
        P = lambda name, path: "http://127.0.0.1:%d%s" % (ports[name], path)
        S = lambda path: "http://127.0.0.1:%d%s" % (pport, path)

        # ---------------- figure 1
        tok_user, tok_pw = issue(pport, master_pw, "bench/put/b/1")
        tok_auth = "%s:%s" % (tok_user, tok_pw)
        shared_auth = "u:" + hpw
        check_put(P("plain", url_path), None)
        check_put(S(url_path), tok_auth)
        check_put(S(url_path), None, want=(401,))
        check_put(P("shared", url_path), shared_auth)
        fig1 = {}
        for n in levels:
            have = live_tokens(state)
            if have < n:
                log("issuing %d more tokens through POST /token" % (n - have))
                r = tokenload("populate", S(""), MASTER_USER, master_pw, "pop/l%d" % n, n - have, 4, timeout=700)
                if r["errors"]:
                    raise SystemExit("populate: %r" % r)
            live = live_tokens(state)
            users = ["t%020x:%s" % (i, ssha(base64.b64encode(os.urandom(24)).decode())) for i in range(live - 1)]
            write_htpasswd(files["shared"], users + ["u:" + ssha(hpw)])
            check_put(P("shared", url_path), shared_auth)
            log("figure 1: %d live tokens, %d rounds of (plain, token, shared) x %ds" % (live, reps, put_s))
            # The baseline DESIGN.md names: nginx with a one-user {SSHA} auth_basic
            # file (h0), the price of auth_basic's own per-request re-read, which
            # this design pays by choice; plain (no auth) is reported too.
            check_put(P("h0", url_path), shared_auth)
            fig1[n] = (live, rounds(reps, [("plain", P("plain", url_path), None), ("token", S(url_path), tok_auth),
                                            ("ssha1", P("h0", url_path), shared_auth),
                                            ("shared", P("shared", url_path), shared_auth)], put_s, conns))

        # ---------------- figure 6 (same plain baseline, one-user files)
        log("figure 6: hash types")
        hkeys = list(hashes)
        runs6 = [("plain", P("plain", url_path), None)]
        for i in range(len(hkeys)):
            check_put(P("h%d" % i, url_path), shared_auth)
            runs6.append(("h%d" % i, P("h%d" % i, url_path), shared_auth))
        fig6 = rounds(reps6, runs6, put_s, conns)

        # ---------------- diagnosis of figure 1: where the product's PUT spends its time
        log("figure 1 diagnosis: disable_symlinks variants, syscalls per PUT")
        variants = {"nosym": "disable_symlinks off;"}
        vurl, vproc = {}, {}
        for tag, repl in variants.items():
            port = free_port()
            proc = start_variant(state, port, ram, tag, repl)
            if proc:
                vproc[tag], vurl[tag] = proc, "http://127.0.0.1:%d%s" % (port, url_path)
                check_put(vurl[tag], tok_auth)
        runs_d = [("plain", P("plain", url_path), None), ("token", S(url_path), tok_auth)]
        runs_d += [(tag, vurl[tag], tok_auth) for tag in vurl]
        diag = rounds(1 if q else reps6, runs_d, put_s, conns)
        product_master = state_pid(state, "nginx-master.pid")
        sysc = {"plain": syscalls_per_put(started_pid("nginx", ports), P("plain", url_path), None, ram, "plain"),
                "token": syscalls_per_put(product_master, S(url_path), tok_auth, ram, "token")}
        for tag in vurl:
            sysc[tag] = syscalls_per_put(vproc[tag].pid, vurl[tag], tok_auth, ram, tag)
        stop_all()

        # ======== stage 2, on the disk: figures 2, 3 and 4
        pport = free_port()
        log("stage 2: the product (scripts/run.sh) on 127.0.0.1:%d, state in %s" % (pport, tmp))
        state = start_product(tmp, pport, master_pw)
        app_pid = state_pid(state, "app.pid")
        os.makedirs(os.path.join(tmp, "base"))
        ports = start_baseline(tmp, {})
        tok_user, tok_pw = issue(pport, master_pw, "bench/put/b/1")
        tok_auth = "%s:%s" % (tok_user, tok_pw)
        check_put(P("plain", url_path), None)
        check_put(S(url_path), tok_auth)

        # ---------------- figure 2
        log("figure 2: %d MiB PUT and GET" % (big // MiB))
        src = os.path.join(tmp, "big.bin")
        with open("/dev/urandom", "rb") as fi, open(src, "wb") as fo:
            left = big
            while left:
                chunk = fi.read(min(left, 8 * MiB))
                fo.write(chunk)
                left -= len(chunk)
        os.chmod(src, 0o644)
        big_path = "/bench/put/b/1/big.bin"
        t_big = 600
        f2 = {"put_plain": [], "put_token": [], "get_plain": [], "get_token": []}
        for _ in range(reps):
            for who, url, auth in (("plain", P("plain", big_path), None), ("token", S(big_path), tok_auth)):
                a = ["-T", src, url] + (["-u", auth] if auth else [])
                code, up, _ = curl_speed(a, t_big)
                f2["put_" + who].append(up)
            for who, url in (("plain", P("plain", big_path)), ("token", S(big_path))):
                code, _, down = curl_speed([url], t_big)
                f2["get_" + who].append(down)
        for who, root in (("plain", os.path.join(tmp, "base", "artifacts")), ("token", state_conf(state, "artifacts_dir"))):
            if os.path.getsize(os.path.join(root, "bench/put/b/1/big.bin")) != big:
                raise SystemExit("figure 2: uploaded size mismatch for " + who)
        os.unlink(src)
        for root in (os.path.join(tmp, "base", "artifacts"), state_conf(state, "artifacts_dir")):
            os.unlink(os.path.join(root, "bench/put/b/1/big.bin"))
        f2m = {k: median(v) for k, v in f2.items()}

        # ---------------- figures 3 and 4
        have = live_tokens(state)
        log("issuing %d tokens through POST /token" % (live3_target - have))
        r = tokenload("populate", S(""), MASTER_USER, master_pw, "pop/d", live3_target - have, 4, timeout=700)
        if r["errors"]:
            raise SystemExit("populate: %r" % r)
        live3 = live_tokens(state)
        log("figure 3: issue+revoke cycles with %d live tokens, raw filesystem loop alternating" % live3)
        rawdir = os.path.join(tmp, "rawfs")
        os.makedirs(rawdir)
        if os.stat(rawdir).st_dev != os.stat(state_conf(state, "tokens_dir")).st_dev:
            raise SystemExit("the raw loop's directory is not on the token store's filesystem")
        raw, cyc, pair = [], {1: [], 8: [], 32: []}, {1: [], 8: [], 32: []}
        for rep in range(cyc_reps):
            for c in (1, 8, 32):
                r = run([FSLOOP, rawdir, "100000", str(raw_s)], raw_s + 60).stdout.split()
                raw.append({"cps": float(r[2]), "p50": float(r[3]), "p99": float(r[4])})
                res = tokenload("cycle", S(""), MASTER_USER, master_pw, "cyc/r%dc%d" % (rep, c), c, 200000, cyc_s,
                                timeout=cyc_s + 120)
                if res["errors"] or not res["cycles"]:
                    raise SystemExit("figure 3: %r" % res)
                cyc[c].append(res)
                pair[c].append(res["cycles_per_s"] / raw[-1]["cps"])
        app_pids = app_processes(app_pid)
        hwms = [vm_hwm_kib(p) for p in app_pids]
        hwm = max(hwms)
        pss = sum(pss_kib(p) for p in app_pids)
        raw_cps = median([r["cps"] for r in raw])
        raw_p50 = median([r["p50"] for r in raw])
        raw_p99 = median([r["p99"] for r in raw])
        live3_end = live_tokens(state)
        per_cycle, nstrace = strace_cycles(app_pids, pport, master_pw, 100 if q else 500, tmp)
        stop_all()  # figure 7 needs no server

        # ======== figure 7, on the disk: the seal, no server
        rows7, notes7, raw7, method7 = seal_figure(sealtmp, q)

        # ---------------- table
        def row(fig, what, subj, base, ratio, target, ok):
            rows.append((fig, what, subj, base, ratio, target, "—" if ok is None else ("pass" if ok else "**FAIL**")))

        f = lambda x, d=0: "{:,.{}f}".format(x, d)
        for n in levels:
            live, res = fig1[n]
            ratio = ratio_of(res, "token", "ssha1")
            row("1", "1 KiB PUT req/s, token auth, %s live tokens" % f(live), f(median(res["token"])),
                "%s (nginx, one-user {SSHA} file)" % f(median(res["ssha1"])), "%.3f" % ratio, ">= 0.95",
                ratio >= 0.95)
        for n in levels:
            live, res = fig1[n]
            ratio = ratio_of(res, "token", "plain")
            row("1", "the same against unauthenticated nginx, %s live tokens" % f(live), f(median(res["token"])),
                "%s (nginx, no auth)" % f(median(res["plain"])), "%.3f" % ratio, "(reported)", None)
        for n in levels:
            live, res = fig1[n]
            ratio = ratio_of(res, "shared", "plain")
            row("1", "anchor: one shared htpasswd, %s {SSHA} users (user last)" % f(live), f(median(res["shared"])),
                "%s (nginx, no auth)" % f(median(res["plain"])), "%.3f" % ratio, "(rejected design)", None)
        first, last = fig1[levels[0]], fig1[levels[-1]]
        flat = ratio_of(last[1], "token", "ssha1") / ratio_of(first[1], "token", "ssha1")
        row("1", "flatness: token/one-user ratio at %s divided by that at %s live tokens" % (f(last[0]), f(first[0])),
            "", "", "%.3f" % flat, ">= 0.95 (flat)", flat >= 0.95)
        for name, what in (("token", "diagnosis: product as shipped (token auth)"),
                           ("nosym", "diagnosis: product with only `disable_symlinks off` (unsafe)")):
            if name in diag:
                ratio = ratio_of(diag, name, "plain")
                row("1", what + ", %s live tokens" % f(fig1[levels[-1]][0]), f(median(diag[name])),
                    "%s (nginx, no auth)" % f(median(diag["plain"])), "%.3f" % ratio, "(diagnosis)", None)
        size = "%d MiB" % (big // MiB) if big < 1024 * MiB else "1 GiB"
        for op in ("put", "get"):
            ratio = median([t / b for t, b in zip(f2[op + "_token"], f2[op + "_plain"])])
            row("2", "%s %s MB/s through the token path" % (size, op.upper()), f(f2m[op + "_token"]),
                "%s (nginx, no auth)" % f(f2m[op + "_plain"]), "%.3f" % ratio, ">= 0.90", ratio >= 0.90)
        row("3", "raw filesystem loop (create+write+fsync+rename+dir fsync+unlink), cycles/s",
            f(raw_cps), "", "", "(the limit)", None)
        for c in (1, 8, 32):
            m = {k: median([r[k] for r in cyc[c]]) for k in ("cycles_per_s", "p50_ms", "p99_ms")}
            ratio = median(pair[c])  # each cycle run against the raw loop run just before it
            row("3", "POST /token + DELETE, %d client%s, %s live tokens: cycles/s" % (c, "s" if c > 1 else "", f(live3)), f(m["cycles_per_s"]),
                "%s (raw loop, run just before)" % f(median([raw[i]["cps"] for i in range(len(raw)) if i % 3 == (1, 8, 32).index(c)])),
                "%.3f" % ratio, ">= 0.5", ratio >= 0.5)
            row("3", "POST /token + DELETE, %d client%s: p50 / p99 ms" % (c, "s" if c > 1 else ""),
                "%.2f / %.2f" % (m["p50_ms"], m["p99_ms"]), "%.2f / %.2f (raw loop)" % (raw_p50, raw_p99), "",
                "p99 < 5", m["p99_ms"] < 5)
        who = ("its %d serve processes and their supervisor" % (len(hwms) - 1) if len(hwms) > 1
               else "its one process")
        row("4", "artifact-token peak RSS (VmHWM) after figures 1-3, largest of %s" % who,
            "%.1f MiB" % (hwm / 1024), "", "",
            "< 16 MiB", hwm < 16 * 1024)
        row("4", "artifact-token memory, %s together (sum of PSS after figures 1-3; "
            "the sum of their peak RSS is %.1f MiB)" % (who, sum(hwms) / 1024),
            "%.1f MiB" % (pss / 1024), "", "", "< 16 MiB", pss < 16 * 1024)
        row("5", "vs buildbot FileUpload/DirectoryUpload", "see buildbot e2e", "", "", "report the ratio", None)
        for i, k in enumerate(hkeys):
            h = "h%d" % i
            ratio = ratio_of(fig6, h, "plain")
            extra = median([(1 / x - 1 / y) * 1e6 for x, y in zip(fig6[h], fig6["plain"])])
            row("6", "1 KiB PUT req/s, one-user file, %s (%+.1f µs/request at saturation)" % (k, extra),
                f(median(fig6[h])), "%s (nginx, no auth)" % f(median(fig6["plain"])), "%.3f" % ratio,
                "(price of the hash)", None)

        sy = lambda k: "%.1f syscalls per PUT (%.1f openat)" % sysc[k] if sysc.get(k) else "n/a"
        notes.append("Syscalls of the nginx workers per 1 KiB PUT (`strace -f -c` during a 1 s wrk run, RAM "
                     "filesystem): plain nginx without auth %s; the product %s; the product with only "
                     "`disable_symlinks off` %s. With `disable_symlinks on`, nginx opens every path component "
                     "below `from=` (openat with O_NOFOLLOW, then close) for each file check: the product walks "
                     "the inside of the artifacts volume for the `-d` test of the directory a PUT writes into; "
                     "the `-e` test of the scope's password file is a plain lookup." % (sy("plain"), sy("token"), sy("nosym")))
        hashes_names = {"h%d" % i: k for i, k in enumerate(hkeys)}
        # ---------------- findings, from this run's measurements
        fs_ = per_cycle.get("fsync", 0) + per_cycle.get("fdatasync", 0)
        notes.append("Token cycle syscalls, counted with `strace -f -c` on the app over %d issue+revoke cycles "
                     "(1 client, %s live tokens): %.1f fsync per cycle (the raw loop does 2, as defined), %.1f syscalls per "
                     "cycle in all (openat %.1f, mkdir %.1f, link %.1f, unlink %.1f, read %.1f; the expiry timers' "
                     "sweep of every record, once a minute per host, falls into some windows)."
                     % (nstrace, f(live3_end), fs_, sum(per_cycle.values()), per_cycle.get("openat", 0),
                        per_cycle.get("mkdir", 0), per_cycle.get("link", 0), per_cycle.get("unlink", 0),
                        per_cycle.get("read", 0)))
        notes.append("Figure 3 raw loop, every run in order (cycles/s): %s. The disk's fsync latency moves a lot "
                     "between runs on this machine, so figure 3's ratio is only as good as the alternation. The "
                     "product ran %d serve process%s on the socket (the default of `processes`); with more clients "
                     "than processes, requests queue behind each other's fsyncs and p50/p99 grow with the client "
                     "count (Little's law)." % (", ".join(f(r["cps"]) for r in raw), max(1, len(app_pids) - 1),
                                                "es" if len(app_pids) > 2 else ""))
        notes.append("Live tokens: %s when figure 3 started, %s when it ended (each cycle revokes what it issued)."
                     % (f(live3), f(live3_end)))
        raw_runs = {"figure 1 (req/s per round)": {n: fig1[n][1] for n in levels},
                    "figure 2 (MB/s per run)": f2, "figure 6 (req/s per round)": {hashes_names.get(k, k): v for k, v in fig6.items()},
                    "figure 3 raw loop runs": raw, "figure 1 diagnosis (req/s per round)": diag,
                    "syscalls per PUT (all, openat)": sysc, "figure 3 cycle runs": cyc, "figure 3 per-pair ratios": pair}
        rows += rows7
        notes += notes7
        raw_runs.update(raw7)
    except BaseException:
        stop_all()
        if os.environ.get("BENCH_KEEP"):
            log("kept %s %s %s" % (tmp, ram, sealtmp))
        else:
            for d in (tmp, ram, sealtmp): remove_tree(d)
        raise
    stop_all()
    elapsed = time.monotonic() - t_start

    method = ("Method. Subject and baseline runs alternate, the order reversed every other round (A B, B A, A B ...); "
              "each figure is the median over rounds, each ratio the median of the per-round ratios. "
              "1 KiB PUTs: `wrk -t1 -c%d -d%ds` with bench/put.lua, the same URL overwritten, %d rounds (figure 6: %d). "
              "Baseline \"nginx, no auth\": a plain nginx started by the benchmark with the product's worker settings "
              "(worker_processes 2, same access_log, sendfile, dav_methods PUT, client_body_temp_path on the same "
              "filesystem); the anchor and figure 6 are server blocks of that nginx with auth_basic. Token path: the "
              "product as `scripts/run.sh` starts it, tokens issued through POST /token.\n\n"
              "Figures 1 and 6 run with every tree on a RAM filesystem: on this machine's disk a PUT that replaces a "
              "file costs disk I/O (ext4 starts writeback when a file is renamed over another), which makes plain "
              "nginx I/O-bound, slow and noisy and would hide the CPU cost of authentication that these figures are "
              "about. Figures 2, 3 and 4 run on the disk (fsync is the point of figure 3). BENCH_TMPDIR and "
              "BENCH_RAMDIR choose the two places.\n\n"
              "Figure 3: bench/tokenload.py (Python threads, one keep-alive connection each), %.1f s per run, %d "
              "run(s) per client count, alternating with bench/fsloop.cc (%.1f s per run) in a directory on the "
              "token store's filesystem.%s\n\n"
              % (conns, put_s, reps, reps6, cyc_s, cyc_reps, raw_s,
                 " **Quick mode: 1 s PUT runs, fewer rounds, a %d MiB transfer instead of 1 GiB in figure 2 and %s "
                 "instead of 10,000 live tokens in figure 3.**" % (big // MiB, "{:,}".format(live3_target)) if q else ""))
    write_results(args, q, elapsed, method + method7 + "\n\n", mach, rows, notes, raw_runs, findings=True)
    for d in (tmp, ram, sealtmp): remove_tree(d)
    log("wrote %s (%.0f s)" % (args.out, elapsed))


def main_seal_only(args):
    """`--only seal`: figure 7 alone, no server, into args.out."""
    q = args.quick
    t_start = time.monotonic()
    sealtmp = tempfile.mkdtemp(prefix="artifact-bench-seal.", dir=seal_parent(os.environ.get("BENCH_TMPDIR", "/tmp")))
    os.chmod(sealtmp, 0o755)
    try:
        mach = machine(None, None, sealtmp)
        rows, notes, raw_runs, method = seal_figure(sealtmp, q)
    except BaseException:
        if os.environ.get("BENCH_KEEP"):
            log("kept " + sealtmp)
        else:
            remove_tree(sealtmp)
        raise
    remove_tree(sealtmp)
    elapsed = time.monotonic() - t_start
    write_results(args, q, elapsed, "Method. Figure 7 alone (`--only seal`): figures 1 to 6 did not run. " + method +
                  "\n\n", mach, rows, notes, raw_runs, findings=False)
    log("wrote %s (%.0f s)" % (args.out, elapsed))


def write_results(args, q, elapsed, method, mach, rows, notes, raw_runs, findings):
    """The report: `method` is its method paragraphs, markdown, ending in a blank line."""
    flags = (" --quick" if q else "") + (" --only " + args.only if args.only else "")
    with open(args.out + ".tmp", "w") as o:
        o.write("# Benchmark results (%s mode%s)\n\n" % ("quick" if q else "full", ", figure 7 only" if args.only else ""))
        o.write("Written by `bench/run.sh%s` in %.0f s; every figure below was measured in that one run. "
                "Do not edit by hand.\n\n" % (flags, elapsed))
        o.write(method)
        o.write("## Machine\n\n| | |\n|---|---|\n")
        for k, v in mach:
            o.write("| %s | %s |\n" % (k, v.replace("|", "/")))
        o.write("\n## Figures\n\n| fig | measure | subject | baseline (same run) | ratio | target | result |\n"
                "|---|---|---|---|---|---|---|\n")
        for r in rows:
            o.write("| " + " | ".join(r) + " |\n")
        o.write("\n## Measured findings\n\n")
        for n in notes:
            o.write("- " + n + "\n")
        extra = os.path.join(HERE, "FINDINGS.md")
        if findings and os.path.exists(extra):
            o.write("\n## Why targets are missed (analysis from bench/FINDINGS.md, written by hand: no figures)\n\n")
            o.write(open(extra).read())
        o.write("\n<details><summary>Every run (raw numbers)</summary>\n\n```\n%s\n```\n</details>\n"
                % json.dumps(raw_runs, indent=1, default=str))
    os.rename(args.out + ".tmp", args.out)


if __name__ == "__main__":
    try:
        main()
    finally:
        stop_all()
