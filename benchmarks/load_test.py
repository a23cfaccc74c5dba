"""A bounded load test of the app: N concurrent clients, R rounds, one JSON line per round.

    python benchmarks/load_test.py                          # 8 clients, 5 rounds, bundled weights
    python benchmarks/load_test.py --clients 8 --rounds 5 --model PATH --image photo.jpg

The app runs as its own process (``python app.py`` on a free local port, its own studio
folder), as it does for users; each client is a ``gradio_client.Client`` that calls the four
public endpoints in turn on the image, once per round. Each round prints the requests, the
errors (with the first message), the p50 and p95 latency in seconds and the app process's
resident memory after the round (from ``/proc``). A benchmark, not a test: the numbers depend
on the host; errors should be 0 and memory flat after the second round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENDPOINTS = ("/remove_text", "/segment_text", "/detect_tampering", "/run_all")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited with {proc.returncode}")
        try:
            if httpx.get(url + "gradio_api/info", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError("the app did not start")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3) if ordered else float("nan")


def run(clients: int, rounds: int, model: str | None, image: Path) -> list[dict]:
    from gradio_client import Client, handle_file

    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    studio = tempfile.mkdtemp(prefix="upocr-load-")
    command = [sys.executable, str(REPO / "app.py"), "--port", str(port), "--studio-dir", studio]
    if model:
        command += ["--model", model]
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    results = []
    try:
        _wait_ready(url, proc)
        pool = [Client(url, verbose=False) for _ in range(clients)]

        def session(client) -> list[tuple[float, str | None]]:
            timings = []
            for endpoint in ENDPOINTS:
                start = time.perf_counter()
                try:
                    client.predict(handle_file(str(image)), api_name=endpoint)
                    error = None
                except Exception as exc:  # noqa: BLE001 - counted and reported
                    error = f"{endpoint}: {type(exc).__name__}: {exc}"
                timings.append((time.perf_counter() - start, error))
            return timings

        with ThreadPoolExecutor(clients) as executor:
            for round_index in range(1, rounds + 1):
                start = time.perf_counter()
                outcomes = [t for timings in executor.map(session, pool) for t in timings]
                errors = [e for _, e in outcomes if e]
                latencies = [t for t, _ in outcomes]
                result = {"round": round_index, "clients": clients, "requests": len(outcomes),
                          "errors": len(errors), "p50_s": _percentile(latencies, 0.5),
                          "p95_s": _percentile(latencies, 0.95), "wall_s": round(time.perf_counter() - start, 2),
                          "rss_mib": _rss_mib(proc.pid)}
                if errors:
                    result["first_error"] = errors[0][:300]
                print(json.dumps(result), flush=True)
                results.append(result)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model", default=None, help="default: the bundled weights")
    parser.add_argument("--image", type=Path, default=REPO / "assets" / "examples" / "receipt.png")
    args = parser.parse_args()
    run(args.clients, args.rounds, args.model, args.image)


if __name__ == "__main__":
    main()
