"""purelb: a bare-metal Kubernetes LoadBalancer (a Python re-implementation of PureLB).

The package is layered: pure cores (``ipam``, ``election``, ``agent.plan``, ``model``) at
the bottom, I/O shells (``kube``, ``apiserver``, netlink, UDP) above them, and daemons
(``controllers``) wiring both. See ``docs/architecture.md``.
"""

__version__ = "0.1.0"
