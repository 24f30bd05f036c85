"""What keeps a cluster to itself: the cluster secret and what derives from it, users and permissions."""
