"""A loopback backend serving N distinct job documents, fast enough never to be the bottleneck.

nginx (Debian package ``nginx`` or ``nginx-light``) serving static files when it is installed,
as ``shared/reference/performance-notes.md`` measured; otherwise a plain aiohttp server in a
separate process (slower: the figures then say so in ``backend``).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROJECT = "bench"
PHASES = ("Running", "Pending", "Completed", "Failed", "Running", "Running")


def job_id(i: int) -> str:
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def document(i: int) -> dict[str, Any]:
    """A realistic job-detail document, distinct per job (phase, records, nodes, tasks)."""
    phase = PHASES[i % len(PHASES)]
    records = [
        {
            "start_at": 1_700_000_000 + r * 600,
            "end_at": 1_700_000_500 + r * 600,
            "start_type": "init_or_rescheduled" if r == 0 else "restarted",
            "end_reason": "process exited with 1",
            "end_related_task": "worker-1",
            "end_recover": "proc_restart",
        }
        for r in range(i % 3)
    ]
    records.append({"start_at": 1_700_002_000, "start_type": "restarted"})
    return {
        "kind": "job",
        "metadata": {
            "id": job_id(i),
            "name": f"bench-job-{i}",
            "create_time": 1_700_000_000_000,
            "workspace_id": "0",
            "user_name": "bench",
            "description": "",
        },
        "status": {
            "phase": phase,
            "secondary_phase": phase,
            "duration": 3_600_000 + i,
            "start_time": 1_700_000_100_000,
            "tasks": ["worker-0", "worker-1"],
            "node_count_metrics": [[1_700_000_100_000, 2], [1_700_000_200_000, 2]],
            "running_records": records,
            "task_statuses": [{"task": "worker-0", "exit_code": 0, "message": ""}],
        },
        "algorithm": {
            "engine": {"engine_id": "pytorch", "engine_name": "PyTorch", "engine_version": "2.1"}
        },
        "spec": {
            "resource": {
                "flavor_id": "modelarts.vm.gpu.8v100",
                "node_count": 2,
                "flavor_detail": {"flavor_type": "GPU"},
            }
        },
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Backend:
    def __init__(self, jobs: int, workdir: Path) -> None:
        self.jobs = jobs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root = workdir / "www"
        docs = root / "v2" / PROJECT / "training-jobs"
        docs.mkdir(parents=True)
        workdir.chmod(0o755)  # nginx's workers run unprivileged and must read the documents
        for i in range(jobs):
            (docs / job_id(i)).write_text(json.dumps(document(i)), encoding="utf-8")
        # Per-task usage (GET .../{id}/metrics/{task}): one shared document, as the API shapes it.
        usage = {
            "metrics": [
                {"metric": m, "value": [-1] * 14 + [v]}
                for m, v in (
                    ("cpuUsage", 41.5),
                    ("memUsage", 23.0),
                    ("gpuUtil", 87.0),
                    ("gpuMemUsage", 64.0),
                )
            ]
        }
        (root / "usage.json").write_text(json.dumps(usage), encoding="utf-8")
        nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        if nginx:
            self.kind = "nginx"
            conf = workdir / "nginx.conf"
            conf.write_text(
                f"""daemon off; worker_processes 1; pid {workdir}/nginx.pid;
error_log {workdir}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off; default_type application/json; keepalive_requests 1000000;
  client_body_temp_path {workdir}/tmp; proxy_temp_path {workdir}/tmp;
  fastcgi_temp_path {workdir}/tmp; uwsgi_temp_path {workdir}/tmp; scgi_temp_path {workdir}/tmp;
  server {{
    listen 127.0.0.1:{self.port}; root {root};
    location ~ ^/v2/[^/]+/training-jobs/[^/]+/metrics/ {{ rewrite ^ /usage.json break; }}
    location / {{ try_files $uri =404; }}
  }}
}}
""",
                encoding="utf-8",
            )
            (workdir / "tmp").mkdir()
            self.proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(workdir)])
        else:
            self.kind = "aiohttp (nginx not installed: the backend may limit throughput)"
            code = (
                "import sys; from aiohttp import web\n"
                "root = sys.argv[1]\n"
                "async def get(r):\n"
                "    path = '/usage.json' if '/metrics/' in r.path else r.path\n"
                "    try: return web.Response(body=open(root + path, 'rb').read(),"
                " content_type='application/json')\n"
                "    except OSError: return web.Response(status=404)\n"
                "app = web.Application(); app.router.add_get('/{p:.*}', get)\n"
                "web.run_app(app, host='127.0.0.1', port=int(sys.argv[2]), print=None)\n"
            )
            self.proc = subprocess.Popen([sys.executable, "-c", code, str(root), str(self.port)])
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("backend did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")
