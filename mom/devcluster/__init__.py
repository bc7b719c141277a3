"""`mom dev-cluster`: N real nodes on this machine in one command, for development and demos.

It records the cluster's shape in one cluster file (and refuses to start another shape on the same data), starts
one `mom serve` process per node (REST on 8001.., replication on 50051..), prefixes their output with the node
id, prints each node's URLs and PID and the admin credentials once every node answers, and on Ctrl-C or SIGTERM
stops them all with SIGTERM (kill after a grace period). A node that dies (say, one you kill to watch a failover)
is reported and left down until restarted: by a line typed on stdin (`restart mom3`) or by
`mom dev-cluster restart mom3` from another terminal, which reaches it through a socket in the data directory.
"""

from mom.devcluster._control import ensure_not_running, send_command
from mom.devcluster._layout import DevCluster, Shape
from mom.devcluster._run import run_dev_cluster

__all__ = ["DevCluster", "Shape", "ensure_not_running", "run_dev_cluster", "send_command"]
