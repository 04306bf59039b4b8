"""The network layer: ARP neighbour cache, routing, IPv4 input/output and
protocol demultiplexing, ICMP (echo and errors)."""
