"""``rewardscope report``: one self-contained HTML file with charts of one or several runs.

The file opens offline (Bokeh's JavaScript and every style are inlined; no CDN, no server):
run header, provenance, the ``rewardscope summary`` text, interactive charts per section as
the Grafana dashboards have them (alert periods shaded), per-function reward histograms over
time, the completions kept as evidence under each alert, and the probe answers.

Modules: ``runs`` reads a run directory, ``downsample`` reduces long series keeping
extremes, ``charts`` builds the Bokeh figures, ``page`` assembles the HTML, ``cli`` is the
subcommand. Needs the ``report`` extra (``pip install 'rewardscope[report]'``).

Usage::

    rewardscope report monitoring_data/my-run -o report.html
    rewardscope report monitoring_data/run-a monitoring_data/run-b -o compare.html
"""
