#!/usr/bin/env python3
"""Fleet tests: `duet serve --broker` gateways and `duet worker`s over a real redis-server
(docs/scale-out.md). Each test starts what it needs on free loopback ports with its own temp
directory and stops it. redis-server missing is a failure, not a skip.

  tests/fleet/test_fleet.py BUILD/duet [-k NAME]
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

DUET = None
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = os.path.join(ROOT, "tests", "fixtures", "tiny-demo")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(pred, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


class Redis:
    def __init__(self, tmp, port=None):
        self.dir = os.path.join(tmp, "redis")
        os.makedirs(self.dir, exist_ok=True)
        self.port = port or free_port()
        self.proc = None
        self.start()

    def start(self):
        if not shutil.which("redis-server"):
            raise AssertionError("redis-server is not installed (scripts/install-deps.sh installs it)")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--protected-mode", "no"],
            stdout=open(os.path.join(self.dir, "log"), "a"), stderr=subprocess.STDOUT)
        wait_for(lambda: self.ping(), 10, "redis-server")

    def ping(self):
        try:
            return self.cli("PING") == "PONG"
        except Exception:
            return False

    def cli(self, *args):
        out = subprocess.run(["redis-cli", "-p", str(self.port), "--raw"] + list(args),
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    @property
    def url(self):
        return "redis://127.0.0.1:%d" % self.port


class Proc:
    def __init__(self, tmp, name, args):
        self.name = name
        self.log = os.path.join(tmp, name + ".log")
        self.proc = subprocess.Popen([DUET] + args, stdout=open(self.log, "w"),
                                     stderr=subprocess.STDOUT)

    def text(self):
        return open(self.log).read()

    def wait_line(self, pattern, timeout=20):
        def found():
            if self.proc.poll() is not None and not re.search(pattern, self.text()):
                raise AssertionError("%s exited %s:\n%s" % (self.name, self.proc.returncode, self.text()))
            return re.search(pattern, self.text())
        return wait_for(found, timeout, "%s: /%s/" % (self.name, pattern))

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def gateway(tmp, redis, name="gateway", extra=()):
    g = Proc(tmp, name, ["serve", "--broker", redis.url, "--port", "0"] + list(extra))
    m = g.wait_line(r"listening on http://127\.0\.0\.1:(\d+)")
    g.port = int(m.group(1))
    return g


def worker(tmp, redis, name, extra=(), fake_ms=2):
    engine = ["--fake-engine", "--fake-step-ms", str(fake_ms)] if "--model" not in extra else []
    w = Proc(tmp, name, ["worker", "--broker", redis.url, "--name", name] + engine + list(extra))
    w.wait_line(r"joined broker")
    return w


def http(port, method, path, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def jget(port, path):
    st, body, _ = http(port, "GET", path)
    return st, json.loads(body) if body else None


def wait_state(port, jid, states, timeout=30):
    def ok():
        st, j = jget(port, "/v1/jobs/" + jid)
        return j if st == 200 and j["state"] in states else None
    return wait_for(ok, timeout, "job %s in %s" % (jid, states))


def submit(port, prompt, steps=4, seed=7, n=1):
    st, body, _ = http(port, "POST", "/v1/jobs",
                       {"prompt": prompt, "steps": steps, "seed": seed, "n": n, "size": "16x16"})
    assert st == 202, (st, body)
    return json.loads(body)["id"]


# ---------------------------------------------------------------- tests


def test_bad_urls_and_unreachable(tmp):
    dead = "redis://127.0.0.1:%d" % free_port()
    cases = [
        (["serve", "--broker", "http://127.0.0.1:6379"], "scheme must be redis://"),
        (["serve", "--broker", "redis://127.0.0.1:notaport"], "port must be a number"),
        (["serve", "--broker", "redis://:6379"], "no host"),
        (["serve", "--broker", "redis://127.0.0.1:6379/x"], "database must be a number"),
        (["serve", "--broker", dead], "unreachable"),
        (["serve", "--broker", dead, "--fake-engine"], "without a model"),
        (["worker", "--fake-engine", "--broker", "redis//x"], "scheme must be redis://"),
        (["worker", "--fake-engine", "--broker", dead], "unreachable"),
        (["worker", "--fake-engine"], "--broker redis://"),
    ]
    for args, want in cases:
        t0 = time.time()
        out = subprocess.run([DUET] + args + ["--port", "0"] * (args[0] == "serve"),
                             capture_output=True, text=True, timeout=20)
        lines = out.stderr.strip().splitlines()
        assert out.returncode != 0, (args, out.returncode)
        assert len(lines) == 1 and want in lines[0], (args, out.stderr)
        assert time.time() - t0 < 10, args


def test_happy_path_two_workers_identical_to_serve(tmp):
    r = Redis(tmp)
    g = gateway(tmp, r)
    w1 = worker(tmp, r, "w1", fake_ms=20)
    w2 = worker(tmp, r, "w2", fake_ms=20)
    solo = Proc(tmp, "solo", ["serve", "--fake-engine", "--fake-step-ms", "1", "--port", "0"])
    solo.port = int(solo.wait_line(r"listening on http://127\.0\.0\.1:(\d+)").group(1))
    try:
        ids = [submit(g.port, "a cat %d" % i, steps=5, seed=100 + i, n=1 + i % 2) for i in range(12)]
        for jid in ids:
            j = wait_state(g.port, jid, ("succeeded",), 40)
            for k, url in enumerate(j["images"]):
                st, png, hdr = http(g.port, "GET", url)
                assert st == 200 and hdr["Content-Type"] == "image/png"
                assert png[:8] == b"\x89PNG\r\n\x1a\n"
        used = {r.cli("HGET", "duet:job:" + jid, "worker") for jid in ids}
        assert used == {"w1", "w2"}, used
        body = {"prompt": "a red fox", "steps": 6, "seed": 42, "n": 2, "size": "32x32"}
        st, a, _ = http(g.port, "POST", "/v1/images/generations", body)
        assert st == 200, a
        st, b, _ = http(solo.port, "POST", "/v1/images/generations", body)
        assert st == 200, b
        da, db = json.loads(a)["data"], json.loads(b)["data"]
        assert [d["b64_json"] for d in da] == [d["b64_json"] for d in db], "fleet != serve"
        # SSE: progress then done.
        jid = submit(g.port, "events", steps=10)
        with urllib.request.urlopen("http://127.0.0.1:%d/v1/jobs/%s/events" % (g.port, jid),
                                    timeout=30) as resp:
            text = resp.read().decode()
        assert "event: done" in text and '"state":"succeeded"' in text, text
        st, m = jget(g.port, "/v1/models")
        assert st == 200 and m["data"][0]["id"] == "fake-duet"
        # The web UI is served by the gateway too (it only uses /v1/models and /v1/jobs).
        st, page, hdr = http(g.port, "GET", "/")
        assert st == 200 and hdr["Content-Type"].startswith("text/html"), (st, hdr)
        assert b'"/v1/jobs"' in page and b"/v1/models" in page
        st, e, _ = http(g.port, "POST", "/v1/jobs", {"prompt": "x", "steps": 0})
        assert st == 400 and json.loads(e)["error"]["param"] == "steps", e
        assert re.search(r"duet worker w\d: batch of \d+ jobs", w1.text() + w2.text())
    finally:
        for p in (g, w1, w2, solo):
            p.stop()
        r.kill()


def test_real_model_identical_to_serve(tmp):
    if not os.path.exists(os.path.join(TINY, "model.safetensors")):
        raise AssertionError("no model at " + TINY)
    r = Redis(tmp)
    g = gateway(tmp, r)
    w1 = worker(tmp, r, "m1", ["--model", TINY, "--threads", "1", "--max-batch", "4"])
    w2 = worker(tmp, r, "m2", ["--model", TINY, "--threads", "1", "--max-batch", "4"])
    solo = Proc(tmp, "solo-model", ["serve", "--model", TINY, "--threads", "1", "--port", "0"])
    solo.port = int(solo.wait_line(r"listening on http://127\.0\.0\.1:(\d+)", 60).group(1))
    try:
        for seed in (3, 11):
            body = {"prompt": "a shoe", "steps": 4, "seed": seed, "n": 2}
            st, a, _ = http(g.port, "POST", "/v1/images/generations", body, 120)
            assert st == 200, a
            st, b, _ = http(solo.port, "POST", "/v1/images/generations", body, 120)
            assert st == 200, b
            assert [d["b64_json"] for d in json.loads(a)["data"]] == \
                   [d["b64_json"] for d in json.loads(b)["data"]], "fleet != serve (seed %d)" % seed
    finally:
        for p in (g, w1, w2, solo):
            p.stop()
        r.kill()


def test_sigkill_worker_is_reclaimed(tmp):
    r = Redis(tmp)
    g = gateway(tmp, r)
    a = worker(tmp, r, "victim", ["--visibility-timeout", "1"], fake_ms=150)
    try:
        a.signal(signal.SIGSTOP)  # so that it reads both jobs as one batch
        ids = [submit(g.port, "slow %d" % i, steps=20) for i in range(2)]
        a.signal(signal.SIGCONT)
        wait_for(lambda: all(r.cli("HGET", "duet:job:" + j, "worker") == "victim" for j in ids)
                 and jget(g.port, "/v1/jobs/" + ids[0])[1]["step"] >= 2, 20, "victim runs both")
        a.signal(signal.SIGKILL)
        b = worker(tmp, r, "rescuer", ["--visibility-timeout", "1"], fake_ms=5)
        for jid in ids:
            j = wait_state(g.port, jid, ("succeeded", "failed"), 30)
            assert j["state"] == "succeeded", j
            assert r.cli("HGET", "duet:job:" + jid, "worker") == "rescuer"
            assert r.cli("HGET", "duet:job:" + jid, "attempt") == "2"
        assert r.cli("XLEN", "duet:stream:fake-duet") == "0"
        assert r.cli("XPENDING", "duet:stream:fake-duet", "workers").split("\n")[0] == "0"
        st, m, _ = http(g.port, "GET", "/metrics")
        assert 'duet_fleet_reclaimed_total{model="fake-duet"} 2' in m.decode(), m.decode()
        b.stop()
    finally:
        g.stop()
        a.stop()
        r.kill()


def test_resurrected_worker_is_fenced(tmp):
    r = Redis(tmp)
    g = gateway(tmp, r)
    a = worker(tmp, r, "sleeper", ["--visibility-timeout", "1"], fake_ms=100)
    try:
        jid = submit(g.port, "fence me", steps=15)
        wait_for(lambda: jget(g.port, "/v1/jobs/" + jid)[1]["step"] >= 2, 20, "sleeper runs it")
        a.signal(signal.SIGSTOP)
        b = worker(tmp, r, "taker", ["--visibility-timeout", "1"], fake_ms=5)
        j = wait_state(g.port, jid, ("succeeded",), 30)
        png = http(g.port, "GET", j["images"][0])[1]
        a.signal(signal.SIGCONT)
        a.wait_line(r"fenced", 30)
        time.sleep(0.5)
        assert r.cli("HGET", "duet:job:" + jid, "worker") == "taker"
        assert r.cli("HGET", "duet:job:" + jid, "attempt") == "2"
        assert http(g.port, "GET", j["images"][0])[1] == png
        b.stop()
    finally:
        g.stop()
        a.stop()
        r.kill()


def test_failed_after_max_attempts(tmp):
    r = Redis(tmp)
    g = gateway(tmp, r)
    w = worker(tmp, r, "w", ["--max-attempts", "3"])
    try:
        jid = submit(g.port, "boom [[fail]]")
        j = wait_state(g.port, jid, ("failed",), 30)
        assert "failed on 3 attempts" in j["error"]["message"], j
        assert "attempt 3 on worker w" in j["error"]["message"], j
        assert r.cli("HGET", "duet:job:" + jid, "attempt") == "3"
    finally:
        g.stop()
        w.stop()
        r.kill()


def test_redis_restart_and_broker_down(tmp):
    r = Redis(tmp)
    g = gateway(tmp, r)
    w = worker(tmp, r, "w", fake_ms=30)
    try:
        ids = [submit(g.port, "durable %d" % i, steps=10) for i in range(6)]
        r.kill()
        t0 = time.time()
        st, body, hdr = http(g.port, "POST", "/v1/jobs", {"prompt": "x"})
        assert st == 503 and "127.0.0.1" in json.loads(body)["error"]["message"], body
        assert time.time() - t0 < 5
        st, body, _ = http(g.port, "GET", "/v1/jobs/" + ids[0])
        assert st == 503, body
        st, _, _ = http(g.port, "GET", "/readyz")
        assert st == 503
        time.sleep(1)
        r.start()
        for jid in ids:
            assert wait_state(g.port, jid, ("succeeded",), 40)["state"] == "succeeded"
        assert http(g.port, "POST", "/v1/jobs", {"prompt": "after"})[0] == 202
        assert http(g.port, "GET", "/readyz")[0] == 200
    finally:
        g.stop()
        w.stop()
        r.kill()


def test_gateway_restart_and_cross_gateway_cancel(tmp):
    r = Redis(tmp)
    g1 = gateway(tmp, r, "g1")
    w = worker(tmp, r, "w", ["--max-batch", "1"], fake_ms=100)
    g2 = None
    try:
        ids = [submit(g1.port, "restart %d" % i, steps=20) for i in range(3)]
        wait_for(lambda: jget(g1.port, "/v1/jobs/" + ids[0])[1]["step"] >= 1, 20, "running")
        g1.signal(signal.SIGKILL)
        g2 = gateway(tmp, r, "g2")
        # Cancel the running one and a queued one from the other gateway.
        st, body, _ = http(g2.port, "DELETE", "/v1/jobs/" + ids[0])
        assert st == 200, body
        st, body, _ = http(g2.port, "DELETE", "/v1/jobs/" + ids[2])
        assert st == 200 and json.loads(body)["state"] == "cancelled", body
        j0 = wait_state(g2.port, ids[0], ("cancelled",), 20)
        assert j0["timings"]["run_s"] < 1.9, j0  # stopped at a step, not after 20 x 100 ms
        assert wait_state(g2.port, ids[1], ("succeeded",), 20)
        assert jget(g2.port, "/v1/jobs/" + ids[2])[1]["state"] == "cancelled"
        assert http(g2.port, "DELETE", "/v1/jobs/" + ids[1])[0] == 409
        assert http(g2.port, "GET", "/v1/jobs/job_0000000000000000000000")[0] == 404
    finally:
        for p in (g1, g2, w):
            if p:
                p.stop()
        r.kill()


def test_backlog_full_429_and_sigterm(tmp):
    r = Redis(tmp)
    g = gateway(tmp, r, extra=["--max-queue", "3"])
    w = worker(tmp, r, "w")
    w.signal(signal.SIGTERM)
    w.proc.wait(15)
    assert w.proc.returncode == 0, w.text()
    try:
        ids = [submit(g.port, "q %d" % i) for i in range(3)]
        st, body, hdr = http(g.port, "POST", "/v1/jobs", {"prompt": "too many"})
        assert st == 429 and int(hdr["Retry-After"]) >= 1, (st, body)
        st, m, _ = http(g.port, "GET", "/metrics")
        assert 'duet_fleet_backlog{model="fake-duet"} 3' in m.decode(), m.decode()
        w2 = worker(tmp, r, "w2", ["--metrics-port", "0"], fake_ms=50)
        mport = int(re.search(r"metrics on http://127\.0\.0\.1:(\d+)", w2.text()).group(1))
        wait_for(lambda: r.cli("HGET", "duet:job:" + ids[0], "state") == "running", 10, "running")
        w2.signal(signal.SIGTERM)  # mid-batch: finishes it, exits 0
        w2.proc.wait(20)
        assert w2.proc.returncode == 0, w2.text()
        for jid in ids:
            assert jget(g.port, "/v1/jobs/" + jid)[1]["state"] == "succeeded"
        w3 = worker(tmp, r, "w3", ["--metrics-port", "0"])
        mport = int(re.search(r"metrics on http://127\.0\.0\.1:(\d+)", w3.text()).group(1))
        jid = submit(g.port, "metrics")
        wait_state(g.port, jid, ("succeeded",), 20)
        st, m, _ = http(mport, "GET", "/metrics")
        assert st == 200 and "duet_worker_claimed_total 1" in m.decode(), m.decode()
        st, m, _ = http(g.port, "GET", "/metrics")
        assert 'duet_fleet_jobs_total{model="fake-duet",state="succeeded"} 4' in m.decode()
        assert "duet_fleet_queue_wait_seconds_count" in m.decode()
        w3.stop()
    finally:
        g.stop()
        w.stop()
        r.kill()


def main():
    global DUET
    args = sys.argv[1:]
    only = None
    if "-k" in args:
        only = args[args.index("-k") + 1]
        del args[args.index("-k"):args.index("-k") + 2]
    DUET = os.path.abspath(args[0] if args else os.path.join(ROOT, "build", "duet"))
    tests = [(n, f) for n, f in sorted(globals().items()) if n.startswith("test_")]
    failed = []
    for name, fn in tests:
        if only and only not in name:
            continue
        tmp = tempfile.mkdtemp(prefix="duet-fleet-")
        t0 = time.time()
        try:
            fn(tmp)
            print("PASS %s (%.1f s)" % (name, time.time() - t0), flush=True)
            shutil.rmtree(tmp, ignore_errors=True)
        except Exception as e:  # noqa: BLE001 - report and go on
            import traceback
            traceback.print_exc()
            failed.append(name)
            print("FAIL %s (%.1f s): %s: %s\n  logs in %s" % (name, time.time() - t0,
                  type(e).__name__, e, tmp), flush=True)
    print("%d failed" % len(failed) if failed else "all fleet tests passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
