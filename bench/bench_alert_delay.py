"""Benchmark: onset -> Slack delay per alert at the production timings, and agreement at a given step rate.

Prints one JSON document. Figures, not assertions.

    python bench/bench_alert_delay.py                       # every failure scenario at 1 step/s, 60 steps
    python bench/bench_alert_delay.py --rate 0.1            # the agreement at 0.1 steps/s (about 11 minutes)

The stack is the repository's own: Prometheus 2.42 (scrape and evaluation 5 s, the checked-in rules),
Alertmanager 0.25 (the checked-in routes: group_wait 5 s for critical and error, 10 s otherwise) and a
Slack-format HTTP sink, all on 127.0.0.1. Every failure scenario runs at once in this process at
``--rate`` steps/s, plus a `stalled` run whose process stops stepping.

For each alert instance the in-process engine fired: the delay from that in-process firing (the
step at which the condition had held for the rule's for_steps) to its Slack message, next to the
floor of the path (scrape 5 s + evaluation 5 s + the rule's `for` + group_wait; the worst case of
the first two is a full interval each). "agreement" compares the alerts that fired in Prometheus
with those the engines fired, by (alertname, severity, run_id, reward_fn).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "alerting")]

from alerting_servers import SlackSink, firing_alerts, start_alertmanager, start_prometheus  # noqa: E402
from test_end_to_end import make_run  # noqa: E402

from rewardscope.alerting.events import AlertState  # noqa: E402
from rewardscope.alerting.pack import load_pack  # noqa: E402
from rewardscope.simulation.scenarios import Scenario  # noqa: E402

SCRAPE, EVALUATION = 5.0, 5.0
GROUP_WAIT = {"critical": 5.0, "error": 5.0}  # alerting/alertmanager.yml; 10 s for the rest
STALL_FLOOR = 300.0 + 30.0  # GRPORunStalled: max(300 s, 10 x median step) + for 30s


def first_message(sink: SlackSink, run_id: str, alertname: str, severity: str, reward_fn: str = "") -> float | None:
    """Arrival of the first firing message of this alert in this run that lists the instance (its reward function)."""
    prefix = f"{alertname} in run {run_id} ({severity})"
    times = []
    for arrival, payload in sink.received():
        message = payload["attachments"][0]
        lists_it = not reward_fn or f"Reward function: `{reward_fn}`" in message["text"]
        if message["title"].startswith("[FIRING") and prefix in message["title"] and lists_it:
            times.append(arrival)
    return min(times) if times else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1.0, help="steps per second of every run")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--stall", action="store_true", help="also a stalled run (adds over 5 minutes)")
    args = parser.parse_args()
    scenarios = [s for s in Scenario if s not in (Scenario.STALLED, Scenario.HEALTHY)]
    tag = str(args.rate).replace(".", "p")
    runs = {s: make_run(f"delay{tag}-{s.value}", s, args.steps, args.rate) for s in scenarios}
    if args.stall:
        runs[Scenario.STALLED] = make_run(f"delay{tag}-stalled", Scenario.STALLED, args.steps, args.rate)
    sink = SlackSink()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        alertmanager = start_alertmanager(directory / "am", sink.webhook_files(directory / "secrets"), wait=None)
        targets = [f"127.0.0.1:{r.monitor.prometheus_port}" for r in runs.values()]
        prometheus = start_prometheus(directory / "prom", targets, ROOT / "prometheus" / "rules",
                                      alertmanager=alertmanager.url.removeprefix("http://"), interval="5s")
        try:
            deadline = time.monotonic() + 60
            while len(prometheus.get("/api/v1/query", query='up{job="rewardscope"} == 1')["data"]["result"]) < len(runs):
                if time.monotonic() > deadline:
                    raise RuntimeError("Prometheus did not scrape every run")
                time.sleep(0.5)
            for run in runs.values():
                threading.Thread(target=run.run, daemon=True).start()
            for run in runs.values():
                run.wait(timeout=args.steps / args.rate + 120)
            time.sleep(SCRAPE + EVALUATION + 10 + 5)  # the last verdicts through the whole path
            if args.stall:
                time.sleep(STALL_FLOOR + SCRAPE + EVALUATION + 10)
            delays, in_process = [], set()
            for run in runs.values():
                for event in run.monitor.recent_alerts:
                    if event.state is not AlertState.FIRING:
                        continue
                    key = (event.alertname, event.severity, run.run_id, event.labels.get("reward_fn", ""))
                    if key in in_process:
                        continue  # a repeat: Alertmanager's group already notified
                    in_process.add(key)
                    arrival = first_message(sink, run.run_id, event.alertname, event.severity, key[3])
                    fired_at = run.step_times[event.step]
                    # An instance that joins a group already notified waits for the group's next flush (group_interval 1 m).
                    floor = SCRAPE + EVALUATION + GROUP_WAIT.get(event.severity, 10.0)
                    delays.append({"run": run.run_id, "alert": f"{event.alertname}/{event.severity}", "reward_fn": key[3],
                                   "fired_step": event.step,
                                   "in_process_to_slack_s": None if arrival is None else round(arrival - fired_at, 1),
                                   "floor_worst_s": floor})
            if args.stall:
                stalled = runs[Scenario.STALLED]
                arrival = first_message(sink, stalled.run_id, "GRPORunStalled", "error")
                last = max(stalled.step_times.values())
                delays.append({"run": stalled.run_id, "alert": "GRPORunStalled/error", "floor_worst_s": STALL_FLOOR + 20,
                               "last_step_to_slack_s": None if arrival is None else round(arrival - last, 1)})
            # Step alerts only: liveness alerts are Prometheus's alone (and every run here stops stepping, so
            # GRPORunStalled fires for each after 5 minutes when --stall waits that long).
            step_alerts = {r.alert for r in load_pack().rules if r.in_process}
            fired = firing_alerts(prometheus, f'run_id=~"delay{tag}-.*"', lookback="1h")
            in_prometheus = {a for a in fired if a[0] in step_alerts}
            print(json.dumps({"rate_steps_per_s": args.rate, "steps": args.steps,
                              "timings": "scrape 5s, evaluation 5s, group_wait 5s/10s",
                              "agreement": {"same": in_prometheus == in_process,
                                            "only_in_process": sorted(in_process - in_prometheus),
                                            "only_in_prometheus": sorted(in_prometheus - in_process),
                                            "alerts": len(in_process)},
                              "delays": delays}, indent=1))
        finally:
            prometheus.stop()
            alertmanager.stop()
            sink.stop()
            for run in runs.values():
                run.monitor.close()


if __name__ == "__main__":
    main()
