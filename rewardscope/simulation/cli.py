"""``rewardscope simulate``: serve a realistic synthetic GRPO run on /metrics and record it.

Runs a named scenario (``--list`` shows them) through a real RewardMonitor at
``--rate`` steps per second, serving /metrics and writing the run directory as a
training run would. A stalled run stops recording at its onset and keeps serving
/metrics until Ctrl-C (or ``--linger`` seconds). Ctrl-C, or SIGTERM (``docker stop``),
closes the monitor cleanly: the summary is written and printed.

Usage::

    rewardscope simulate --list
    rewardscope simulate --scenario reward_hacking --steps 300 --rate 5
    rewardscope simulate --scenario kl_blowup --steps 200 --rate 0 --port 0 --run-dir /tmp/runs --alerts
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

from ..exporter.prometheus import DEFAULT_HOST, DEFAULT_PORT
from .scenarios import (
    DEFAULT_GROUP_SIZE,
    DEFAULT_MAX_COMPLETION_LENGTH,
    DEFAULT_PROMPTS,
    SCENARIOS,
    SHAPES,
    Scenario,
    iter_plan,
    plan_run,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenario", default=Scenario.HEALTHY.value, choices=[s.value for s in Scenario],
                        help="what happens in the run (default healthy; --list describes them)")
    parser.add_argument("--steps", type=int, default=200, help="training steps to simulate (default 200)")
    parser.add_argument("--rate", type=float, default=2.0, help="steps per second; 0 = as fast as possible (default 2)")
    parser.add_argument("--onset", type=int, default=None, help="step at which the failure starts (default 40%% of --steps)")
    parser.add_argument("--ramp", type=int, default=None,
                        help="steps from the onset to full strength (default: half the steps left, 5-50)")
    parser.add_argument("--shape", default="linear", choices=list(SHAPES), help="how the failure sets in (default linear)")
    parser.add_argument("--strength", type=float, default=1.0, help="severity at full strength (default 1)")
    parser.add_argument("--noise", type=float, default=1.0, help="scale of the random perturbations (default 1)")
    parser.add_argument("--functions", type=int, default=4, help="reward functions, 2-4 (default 4)")
    parser.add_argument("--prompts", type=int, default=DEFAULT_PROMPTS, help=f"prompts per step (default {DEFAULT_PROMPTS})")
    parser.add_argument("--group-size", type=int, default=DEFAULT_GROUP_SIZE,
                        help=f"completions per prompt, G (default {DEFAULT_GROUP_SIZE})")
    parser.add_argument("--max-completion-length", type=int, default=DEFAULT_MAX_COMPLETION_LENGTH,
                        help=f"generation length limit in tokens (default {DEFAULT_MAX_COMPLETION_LENGTH})")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same run (default 0)")
    parser.add_argument("--run-id", default=None, help="run id (default <scenario>-<timestamp>)")
    parser.add_argument("--run-dir", default="monitoring_data", help="root of the run store (default monitoring_data)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"/metrics port; 0 = a free port (default {DEFAULT_PORT})")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"/metrics address (default {DEFAULT_HOST})")
    parser.add_argument("--no-serve", action="store_true", help="do not serve /metrics")
    parser.add_argument("--alerts", action=argparse.BooleanOptionalAction, default=False,
                        help="evaluate the alert rules in-process and print their transitions (default off)")
    parser.add_argument("--print-alerts", action=argparse.BooleanOptionalAction, default=None,
                        help="print alert transitions as they happen (default: on with --alerts; --no-print-alerts "
                             "evaluates them silently)")
    parser.add_argument("--log-distributions", action="store_true", help="store every reward value (rewards.f16z)")
    parser.add_argument("--linger", type=float, default=None,
                        help="keep serving /metrics this many seconds after the last step (a stalled run lingers until "
                             "Ctrl-C unless this is given)")
    parser.add_argument("--end-linger", type=float, default=15.0,
                        help="after a run that recorded all its steps, keep serving /metrics this many seconds with "
                             "grpo_run_ended 1, so Prometheus sees it end rather than die (default 15; 0 to exit at once)")
    parser.add_argument("--list", action="store_true", help="list the scenarios with their onset and description, and exit")


def list_scenarios() -> str:
    """The scenario table as text."""
    lines = []
    for info in SCENARIOS.values():
        lines.append(f"{info.scenario.value}")
        lines.append(f"    {info.description}")
        lines.append(f"    onset: {info.onset}")
        if info.signals:
            shown = ", ".join(f"{s.metric}{'{' + s.reward_fn + '}' if s.reward_fn else ''} {s.direction}" for s in info.signals)
            lines.append(f"    shows in: {shown}")
    return "\n".join(lines)


def _sigterm_as_interrupt():
    """Handle SIGTERM like Ctrl-C (a container being stopped still writes its summary); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


def _error(message: str) -> int:
    print(f"rewardscope simulate: error: {message}", file=sys.stderr)
    return 2


def run(args: argparse.Namespace) -> int:
    from ..exporter.runstore import RunStoreError
    from ..monitor import RewardMonitor
    from ..report import render, summarize
    from .run import AlertPrinter, Progress, drive, linger

    if args.list:
        print(list_scenarios())
        return 0
    try:
        plan = plan_run(args.scenario, args.steps, seed=args.seed, prompts=args.prompts, group_size=args.group_size,
                        onset=args.onset, ramp=args.ramp, max_completion_length=args.max_completion_length,
                        shape=args.shape, strength=args.strength, noise=args.noise, functions=args.functions)
    except ValueError as error:
        return _error(str(error))
    if args.rate < 0:
        return _error(f"--rate must be >= 0 (0 = as fast as possible), got {args.rate}")
    if args.print_alerts and not args.alerts:
        return _error("--print-alerts prints the in-process alerts: add --alerts")
    if args.linger is not None and args.linger < 0:
        return _error(f"--linger must be >= 0 seconds, got {args.linger}")
    if args.end_linger < 0:
        return _error(f"--end-linger must be >= 0 seconds, got {args.end_linger}")
    run_id = args.run_id or f"{plan.scenario.value}-{time.strftime('%Y%m%d-%H%M%S')}"
    steps_file = Path(args.run_dir) / run_id / "steps.jsonl"
    if steps_file.exists() and steps_file.stat().st_size > 0:
        return _error(f"{steps_file.parent} already holds a recorded run; pass another --run-id or --run-dir")

    progress = Progress(plan.last_step)
    printer = AlertPrinter(progress, args.alerts if args.print_alerts is None else args.print_alerts)
    config = {"simulation": {"scenario": plan.scenario.value, "steps": plan.steps, "seed": plan.seed, "prompts": plan.prompts,
                             "group_size": plan.group_size, "onset": plan.onset, "ramp": plan.ramp, "rate": args.rate,
                             "max_completion_length": plan.max_completion_length, "eval_every": plan.eval_every,
                             "shape": plan.shape, "strength": plan.strength, "noise": plan.noise, "functions": plan.functions}}
    try:
        monitor = RewardMonitor(run_id, plan.reward_functions, group_size=plan.group_size, run_dir=args.run_dir,
                                prometheus_port=None if args.no_serve else args.port, prometheus_host=args.host,
                                alerts=bool(args.alerts), log_distributions=args.log_distributions,
                                run_info={"model": "simulated", "trainer": "rewardscope-simulate"}, config=config,
                                max_completion_length=plan.max_completion_length, extra_sinks=[printer])
    except ImportError as error:
        if args.alerts:
            return _error(f"--alerts needs the in-process alert engine (rewardscope.alerting.engine), which this "
                          f"installation lacks ({error}); run with --no-alerts")
        raise
    except (OSError, RunStoreError, ValueError) as error:  # port in use, another run's directory, a bad run id
        return _error(str(error))

    info = SCENARIOS[plan.scenario]
    print(f"rewardscope simulate: scenario {plan.scenario.value}, {plan.steps} steps of {plan.prompts} prompts x G={plan.group_size}"
          f", seed {plan.seed}" + ("" if not info.is_failure else f", onset step {plan.onset} (ramp {plan.ramp} steps)"))
    print(f"  run id:   {run_id}")
    print(f"  run dir:  {monitor.run_directory}")
    print(f"  /metrics: {'not served (--no-serve)' if monitor.server is None else monitor.server.url}")
    if info.stops_recording:
        print(f"  stalled: records steps 1..{plan.last_step}, then stops recording and keeps serving /metrics")
    sys.stdout.flush()

    status = 0
    end_linger = 0.0  # an interrupted or stalled run exits at once
    restore = _sigterm_as_interrupt()
    try:
        drive(monitor, iter_plan(plan), rate=args.rate, progress=progress)
        if not info.stops_recording:
            end_linger = args.end_linger
        # A stalled run lingers until Ctrl-C unless --linger says how long; without a server there is nothing to serve.
        wait = args.linger if args.linger is not None else (None if info.stops_recording else 0.0)
        if monitor.server is not None and wait != 0.0:
            how_long = "until Ctrl-C" if wait is None else f"for {wait:g} s"
            try:  # the message is inside the try: a Ctrl-C right after it must still count as the expected end
                print(f"rewardscope simulate: last step recorded; serving {monitor.server.url} {how_long}", flush=True)
                linger(wait)
            except KeyboardInterrupt:
                pass  # the expected way to end a lingering run
    except KeyboardInterrupt:
        progress.finish()
        print("rewardscope simulate: interrupted; closing the run", file=sys.stderr)
        status = 130
    finally:
        progress.finish()
        monitor.close(linger_seconds=end_linger)
        restore()
    print()
    print(render(summarize(monitor.run_directory)))
    return status
