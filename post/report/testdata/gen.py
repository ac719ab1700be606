# Generates the journal fixtures (block.jsonl, audit.jsonl, hostile.jsonl).
# Run: python3 gen.py   (the .jsonl files are committed; this is for review)
import json

def t(s):  # seconds after 10:00:00
    sec = int(s); ms = int(round((s - sec) * 1000))
    return "2025-05-01T10:%02d:%02d.%03dZ" % (sec // 60, sec % 60, ms)

def proc(pid, exe, cmd, parents=(), uid=1001, unknown=None):
    p = {"pid": pid, "uid": uid}
    if exe: p["exe"] = exe
    if cmd: p["cmdline"] = cmd
    if parents: p["parents"] = [{"pid": a, "exe": b, "cmdline": c} for a, b, c in parents]
    if unknown: p["unknown"] = unknown
    return p

RUNNER = [(1000, "/usr/bin/bash", "bash -e /home/runner/work/_temp/step.sh"), (900, "/home/runner/runners/2.317.0/bin/Runner.Worker", "Runner.Worker spawnclient 118 121")]
CURL = proc(1001, "/usr/bin/curl", "curl -sSf https://api.github.com/repos/o/r", RUNNER)
CURL2 = proc(1005, "/usr/bin/curl", "curl -sSf https://api.github.com/rate_limit", RUNNER)
PY = proc(1010, "/usr/bin/python3.12", "python3 setup.py install", RUNNER)
WORKER = proc(900, "/home/runner/runners/2.317.0/bin/Runner.Worker", "Runner.Worker spawnclient 118 121", uid=1001)
NOPROC = proc(0, None, None, uid=0, unknown="process exited before lookup")

def flow(s, ip, port, verdict, p, proto="tcp", forward=False):
    f = {"time": t(s), "ip": ip, "protocol": proto, "verdict": verdict, "process": p}
    if port: f["port"] = port
    if forward: f["forward"] = True
    return {"flow": f}

def dns(s, name, typ, verdict, answers, p, rcode="NOERROR", ttl=60):
    d = {"time": t(s), "name": name, "type": typ, "verdict": verdict, "rcode": rcode, "process": p}
    if answers: d["answers"] = answers; d["ttl"] = ttl
    return {"dns": d}

def note(s, comp, level, msg): return {"note": {"time": t(s), "component": comp, "level": level, "message": msg}}
def stats(comp, ev, lost, un): return {"stats": {"component": comp, "events": ev, "lost": lost, "unattributed": un}}
def fileev(s, path, ev, p): return {"file": {"time": t(s), "path": path, "event": ev, "process": p}}

IMPLICIT = ["*.actions.githubusercontent.com:443", "results-receiver.actions.githubusercontent.com:443", "169.254.169.254:80", "168.63.129.16:80"]

def write(name, recs, torn=None):
    with open(name, "w") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
        if torn: f.write(torn)

block = [
    {"start": {"time": t(0), "mode": "block",
               "allowed_endpoints": ["api.github.com:443", "github.com:443", "ipv6.test:443", "*.pkg.test:443"],
               "implicit_allowed": IMPLICIT, "upstreams": ["198.18.0.53:53"],
               "workspace": "/home/runner/work/repo/repo", "file_monitoring": True}},
    note(0.1, "filemon", "warning", "fanotify unavailable: writer PIDs of file events may be unknown"),
    note(0.2, "agent", "info", "enforcing: 4 allowed endpoints, 4 implicit"),
    dns(1, "api.github.com", "A", "allowed", ["198.18.0.10"], CURL),
    flow(1.01, "198.18.0.10", 443, "allowed", CURL),
    flow(1.5, "198.18.0.10", 443, "allowed", CURL),
    dns(2, "api.github.com", "A", "allowed", ["198.18.0.10", "198.18.0.11"], CURL2),
    flow(2.01, "198.18.0.10", 443, "allowed", CURL2),
    dns(3, "pipelines.actions.githubusercontent.com", "A", "allowed", ["198.18.0.20"], WORKER),
    flow(3.01, "198.18.0.20", 443, "allowed", WORKER),
    flow(3.5, "169.254.169.254", 80, "allowed", WORKER),
    dns(4, "evil.test", "A", "blocked", None, PY, rcode="REFUSED"),
    dns(4.001, "evil.test", "AAAA", "blocked", None, PY, rcode="REFUSED"),
    dns(4.2, "evil.test", "A", "blocked", None, PY, rcode="REFUSED"),
    flow(4.5, "198.18.1.1", 443, "blocked", PY),
    flow(4.6, "198.18.1.1", 443, "blocked", PY),
    dns(5, "ipv6.test", "AAAA", "allowed", ["2001:db8::10"], CURL),
    flow(5.01, "2001:db8::10", 443, "allowed", CURL),
    flow(5.5, "2001:db8::99", 8443, "blocked", NOPROC),
    flow(6, "198.18.2.2", 80, "blocked", NOPROC, forward=True),
    flow(6.5, "198.18.3.3", 0, "blocked", PY, proto="icmp"),
    dns(7, "mirror.pkg.test", "A", "allowed", ["198.18.0.30"], PY),
    dns(7.5, "www.pkg.test", "A", "allowed", ["cdn.pkg.test", "198.18.0.30"], PY),
    flow(7.51, "198.18.0.30", 443, "allowed", PY),
    # The packet log wrote this flow before the resolver wrote its answer.
    flow(8.0004, "198.18.0.40", 443, "allowed", PY),
    dns(8, "late.pkg.test", "A", "allowed", ["198.18.0.40"], PY),
    dns(8.5, "tracker.test", "TXT", "blocked", None, PY, rcode="REFUSED"),
    fileev(9, "src/main.go", "overwrite", proc(1020, "/usr/bin/sed", "sed -i s/a/b/ src/main.go", RUNNER)),
    fileev(9.1, "/home/runner/work/repo/repo/.github/workflows/ci.yml", "delete", PY),
    fileev(9.2, "go.sum", "rename", NOPROC),
    note(9.5, "resolver", "error", "upstream 198.18.0.53:53: 3 timeouts"),
    stats("flowlog", 12, 2, 3),
    stats("resolver", 9, 0, 0),
    {"stop": {"time": t(10)}},
]
write("block.jsonl", block, torn='{"flow":{"time":"2025-05-01T10:00:11Z","ip":"198.18')

audit = [
    {"start": {"time": t(0), "mode": "audit", "allowed_endpoints": ["github.com:443"],
               "implicit_allowed": IMPLICIT, "upstreams": ["198.18.0.53:53"], "file_monitoring": False}},
    dns(1, "github.com", "A", "allowed", ["198.18.0.5"], CURL),
    flow(1.01, "198.18.0.5", 443, "allowed", CURL),
    dns(2, "example.test", "A", "audit", ["198.18.0.50"], PY),
    dns(2.001, "example.test", "AAAA", "audit", ["2001:db8::50"], PY),
    flow(2.01, "2001:db8::50", 443, "audit", PY),
    flow(2.02, "198.18.0.50", 443, "audit", PY),
    flow(3, "198.18.0.60", 22, "audit", proc(1030, "/usr/bin/ssh", "ssh git@198.18.0.60", RUNNER)),
    dns(4, "c2VjcmV0.exfil.test", "TXT", "audit", ["\"ok\""], PY),
    flow(5, "198.18.0.70", 53, "audit", PY, proto="udp"),
    stats("resolver", 5, 0, 0),
]
write("audit.jsonl", audit)

EVIL = proc(1100, "/tmp/x|<script>alert(1)</script>", "sh -c 'echo `id` | nc [x](javascript:alert(1))'\n::error::pwned", RUNNER)
hostile_names = [
    "evil.com|<script>alert(1)</script>",
    "a\n::error::pwned",
    "`x`",
    "[click](javascript:alert(1))",
    "**bold**",
    "<img src=x onerror=alert(1)>",
    "@octocat.test",
    "www.evil.test",
    "https://evil.test/x",
    "&lt;b&gt;entity",
    "*.wild.test",
    "bidi\u202eexe.gpj",
    "x\\|y",
]
hostile = [{"start": {"time": t(0), "mode": "audit", "allowed_endpoints": [], "implicit_allowed": IMPLICIT,
                      "upstreams": [], "workspace": "/w", "file_monitoring": True}}]
for i, n in enumerate(hostile_names):
    ip = "198.18.5.%d" % (i + 1)
    hostile.append(dns(10 + i, n, "A", "audit", [ip], EVIL))
    hostile.append(flow(10.5 + i, ip, 443, "audit", EVIL))
    hostile.append(dns(30 + i, n + ".blocked", "A", "blocked", None, EVIL, rcode="REFUSED"))
hostile += [
    fileev(50, "dir/evil\n::warning::file|<b>x</b>.go", "overwrite", EVIL),
    fileev(51, "`rm -rf`/[l](javascript:x)", "truncate", EVIL),
    note(52, "filemon", "warning", "could not read </details><script>alert(1)</script>"),
    note(53, "x\n::error::y", "error", "```\n# injected heading"),
    {"stop": {"time": t(60)}},
]
write("hostile.jsonl", hostile)
