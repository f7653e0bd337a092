"""rewardscope.alerting: alert rules defined once, evaluated in-process and compiled for Prometheus.

- ``rules``: the rule model (threshold, trend, promql) and its validation;
- ``pack``: reading alert packs (``alerting/alerts.yml``) and per-run overrides;
- ``engine``: ``AlertEngine``, the in-process evaluator the RewardMonitor calls every step;
- ``compiler``: Prometheus rule files and Prometheus Operator manifests from the same pack;
- ``cli``: ``rewardscope rules``.

The old ``RealtimeMonitor`` API lives with the rest of the old API in ``rewardscope.compat``.

Usage::

    from rewardscope.alerting.engine import AlertEngine
    engine = AlertEngine.default()
"""
