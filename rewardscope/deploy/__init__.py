"""rewardscope.deploy: generated deployment manifests (Kubernetes with the Prometheus Operator).

- ``kubernetes``: the manifests of deploy/kubernetes/ as text, from the alert pack and the dashboards;
- ``cli``: ``rewardscope deploy`` writes them or ``--check``s them.
"""
