"""Load figures for the device HTTP server, on loopback only: scrape latency under concurrency, half-open sockets.

`python -m bench.http_load` starts an `HttpServer` in this process (8 cameras of stats, Prometheus on) and prints:
- N concurrent `GET /metrics` (raw asyncio sockets, no client threads): answered, timed out, p50/p95/max seconds;
- M half-open sockets (half send nothing, half send half a request): threads and open fds before, during and after,
  how many the server closed by itself, and whether a scrape is answered while they are open;
- the same scrape burst again after them;
- what one rendering of the page costs (sync + exposition, what a scrape pays when the shared copy is stale).
Every socket goes to 127.0.0.1 and every wait is bounded, so it always ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import os
import socket
import threading
import time

from edgecam.runtime.sinks.http import HttpServer
from edgecam.runtime.state import StateRegistry
from edgecam.runtime.stats import LatencyHistogram, StageTimes
from edgecam.runtime.telemetry import Telemetry

REQUEST = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# The stages a detection camera with a tracker, a scenario and the live view times: one histogram each on /metrics.
STAGES = ("read", "preprocess", "infer", "postprocess", "track", "scenario", "annotate", "write")


def make_registry(cameras: int = 8) -> StateRegistry:
    """`cameras` cameras of stats and latency histograms, as a camera runner leaves them."""
    registry = StateRegistry()
    times, frames = StageTimes(), LatencyHistogram()
    for k in range(990):
        for stage in STAGES:
            times.add(stage, 0.0005 * (1 + k % 60))
        frames.observe(0.01 * (1 + k % 30))
    histograms = {"stages": times.histograms(), "frame_latency": frames.snapshot()}
    for i in range(cameras):
        registry.camera(f"cam{i}").update(
            {
                "online": True, "fps_in": 15.0, "fps_out": 14.0, "frames_in": 1000, "frames_out": 990, "dropped": 10,
                "frame_age_ms": {"p50": 30.0, "p95": 60.0, "last": 42.0}, "stages": times.summary(),
                "events": {"out_of_stock": 3, "restocked": 2},
            },
            histograms=histograms,
        )  # fmt: skip
    return registry


async def _one(port: int, timeout: float, start: asyncio.Event) -> tuple[int | None, float]:
    """(status or None on timeout / error, seconds from connect to the end of the answer)."""
    await start.wait()
    began = time.perf_counter()
    try:

        async def exchange() -> int:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)
            await writer.drain()
            data = await reader.read()  # the server closes after the answer
            writer.close()
            return int(data.split(b" ", 2)[1])

        status: int | None = await asyncio.wait_for(exchange(), timeout)
    except (OSError, asyncio.TimeoutError, IndexError, ValueError):
        status = None
    return status, time.perf_counter() - began


async def _burst(port: int, n: int, timeout: float) -> list[tuple[int | None, float]]:
    start = asyncio.Event()
    tasks = [asyncio.create_task(_one(port, timeout, start)) for _ in range(n)]
    await asyncio.sleep(0.05)
    start.set()
    return list(await asyncio.gather(*tasks))


def scrape_burst(port: int, n: int = 200, timeout: float = 15.0) -> dict[str, float]:
    """N scrapes at once: how many got 200, how many timed out, and latency percentiles (seconds)."""
    results = asyncio.run(_burst(port, n, timeout))
    times = sorted(t for s, t in results if s == 200)
    pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] if times else float("nan")  # noqa: E731
    return {
        "n": n,
        "ok": len(times),
        "failed": sum(1 for s, _ in results if s is None),
        "p50": pick(0.50),
        "p95": pick(0.95),
        "max": times[-1] if times else float("nan"),
    }


def open_half(port: int, n: int) -> list[socket.socket]:
    """n connections: even ones send nothing, odd ones half a request line."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if i % 2:
            s.sendall(b"GET /metr")
        socks.append(s)
    return socks


def closed_by_server(socks: list[socket.socket]) -> int:
    """How many of these the server has closed (a read sees EOF or a reset at once)."""
    count = 0
    for s in socks:
        s.setblocking(False)
        try:
            count += s.recv(4096, socket.MSG_PEEK) == b""
        except BlockingIOError:
            pass
        except OSError:
            count += 1
    return count


def render_time(registry: StateRegistry, telemetry: Telemetry, n: int = 200) -> dict[str, float]:
    """Seconds per rendering of /metrics (p50, p95) and its size in bytes, on this thread."""
    times, body = [], b""
    for _ in range(n):
        t0 = time.perf_counter()
        telemetry.sync(registry)
        body = telemetry.exposition()
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"p50": times[n // 2], "p95": times[int(n * 0.95)], "bytes": float(len(body))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scrapes", type=int, default=200)
    parser.add_argument("--half-open", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=2.0, help="the server's connection timeout, if it has one")
    args = parser.parse_args(argv)
    kwargs = {"timeout": args.timeout} if "timeout" in inspect.signature(HttpServer).parameters else {}
    registry = make_registry()
    render = render_time(registry, Telemetry(device="bench"))
    print("one rendering (8 cameras): p50 {:.1f} ms, p95 {:.1f} ms, {:.0f} bytes".format(
        render["p50"] * 1000, render["p95"] * 1000, render["bytes"]))  # fmt: skip
    server = HttpServer(registry, Telemetry(), **kwargs).start()
    try:
        print(f"server: {type(server).__name__} {kwargs or '(no timeout option)'}; threads at start", end=" ")
        print(threading.active_count(), "fds", fds())
        burst = scrape_burst(server.port, args.scrapes)
        print("burst {n} x GET /metrics: {ok} answered 200, {failed} failed/timed out (15 s); ".format(**burst), end="")
        print("p50 {p50:.3f} s, p95 {p95:.3f} s, max {max:.3f} s".format(**burst))
        threads0, fds0 = threading.active_count(), fds()
        socks = open_half(server.port, args.half_open)
        time.sleep(0.5)
        during = scrape_burst(server.port, 1, timeout=15.0)
        print(f"{args.half_open} half-open: threads before {threads0}, during {threading.active_count()}", end="; ")
        print(f"fds before {fds0}, during {fds()}; one scrape meanwhile: ok={during['ok']} in {during['max']:.3f} s")
        deadline = time.monotonic() + args.timeout + 5
        while time.monotonic() < deadline and closed_by_server(socks) < len(socks):
            time.sleep(0.25)
        closed = closed_by_server(socks)
        print(f"after {args.timeout:g} s timeout (+5 s grace): server closed {closed}/{len(socks)}", end="; ")
        time.sleep(0.5)
        print(f"threads {threading.active_count()}", end="; ")
        for s in socks:
            s.close()
        time.sleep(0.5)
        print(f"after the clients closed too: threads {threading.active_count()}, fds {fds()}")
        again = scrape_burst(server.port, args.scrapes)
        print("burst again: {ok}/{n} answered, p95 {p95:.3f} s".format(**again))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
