"""Benchmark of /metrics under load: concurrent scrapers, and what scraping costs the training loop.

Prints one JSON document. Figures, not assertions.

    python bench/bench_scrape.py            # 8, 32 and 128 concurrent scrapers, 10 s each; record_step with and without scrapes

- ``scrapers``: for each concurrency, every scraper fetches /metrics in a loop for a fixed time
  while the monitor records a step every 10 ms: p50 and p99 of a scrape, scrapes per second, errors.
- ``record_step_while_scraped``: record_step p50/p99 (N=1024, F=4, alerts on) with no scraper,
  then with 8 scrapers hammering /metrics (the GIL is shared: this is the cost to training).
All traffic is on 127.0.0.1; every server is stopped at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_core import GROUP_SIZE, batches, reward_functions

from rewardscope import RewardMonitor


def _scrape(port: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/metrics", headers={"Accept-Encoding": "gzip"})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"status {response.status}")
    finally:
        connection.close()


def _scrapers(port: int, count: int, seconds: float) -> dict:
    times: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                _scrape(port)
                elapsed = time.perf_counter() - started
                with lock:
                    times.append(elapsed)
            except Exception as error:  # counted: the figure is how many fail
                with lock:
                    errors.append(type(error).__name__)

    threads = [threading.Thread(target=loop) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    array = np.array(times) if times else np.array([np.nan])
    return {"scrapers": count, "scrapes": len(times), "scrapes_per_second": round(len(times) / seconds, 1),
            "p50_ms": round(float(np.nanpercentile(array, 50)) * 1e3, 2), "p99_ms": round(float(np.nanpercentile(array, 99)) * 1e3, 2),
            "errors": len(errors), "error_kinds": sorted(set(errors))}


def _record_steps(monitor: RewardMonitor, data: list, first: int, count: int, pause: float = 0.0) -> np.ndarray:
    times = np.empty(count)
    for i in range(count):
        started = time.perf_counter()
        monitor.record_step(first + i, data[i % len(data)])
        times[i] = time.perf_counter() - started
        if pause:
            time.sleep(pause)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each concurrency level")
    args = parser.parse_args()
    specs = reward_functions(4)
    data = batches(specs, 1024, 8)
    result: dict = {"scrapers": []}
    with tempfile.TemporaryDirectory() as tmp:
        monitor = RewardMonitor("scrape", specs, group_size=GROUP_SIZE, run_dir=tmp, prometheus_port=0, alerts=True)
        try:
            step = 1
            _record_steps(monitor, data, step, 50)
            step += 50
            quiet = _record_steps(monitor, data, step, 2000)
            step += 2000
            for count in (8, 32, 128):
                stop = threading.Event()
                recorded = [step]

                def train(stop: threading.Event = stop, recorded: list[int] = recorded) -> None:
                    while not stop.is_set():
                        monitor.record_step(recorded[0], data[recorded[0] % 8])
                        recorded[0] += 1
                        time.sleep(0.01)

                trainer = threading.Thread(target=train)
                trainer.start()
                result["scrapers"].append(_scrapers(monitor.prometheus_port, count, args.seconds))
                stop.set()
                trainer.join()
                step = recorded[0]
                print(f"scrapers: {result['scrapers'][-1]}", file=sys.stderr)
            stop_load = threading.Event()

            def load() -> None:
                while not stop_load.is_set():
                    _scrape(monitor.prometheus_port)

            loaders = [threading.Thread(target=load) for _ in range(8)]
            for t in loaders:
                t.start()
            scraped = _record_steps(monitor, data, step, 2000)
            stop_load.set()
            for t in loaders:
                t.join()
        finally:
            monitor.close()
    result["record_step_while_scraped"] = {
        "samples": 1024, "functions": 4,
        "quiet_p50_us": round(float(np.percentile(quiet, 50)) * 1e6, 1), "quiet_p99_us": round(float(np.percentile(quiet, 99)) * 1e6, 1),
        "scraped_by_8_p50_us": round(float(np.percentile(scraped, 50)) * 1e6, 1),
        "scraped_by_8_p99_us": round(float(np.percentile(scraped, 99)) * 1e6, 1)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
