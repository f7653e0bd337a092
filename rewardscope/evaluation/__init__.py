"""Detection measured over many simulated runs: ``rewardscope evaluate``.

- grid.py: the scenarios, the grid of variations, the alerts meant for each failure;
- runner.py: one simulated run through a real RewardMonitor, reduced to when each alert fired
  (and the old system's reward-hacking rule beside them);
- table.py: the detection and false-alarm tables;
- cli.py: the subcommand.

Usage::

    rewardscope evaluate --grid small --seeds 2 --jobs 1
"""
