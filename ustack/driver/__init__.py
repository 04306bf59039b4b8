"""Transport drivers: what binds the sans-I/O protocol cores to the asyncio
loop (DESIGN.md, "Transport driver").  :mod:`ustack.driver.tcp_table` is
the TCP connection table; it gets a typed :class:`~ustack.driver.port.TcpPort`
(local address, MTU, the IP layer's send paths, clock, scheduler), not the
whole Stack.  Streams, the ustack event loop and diag depend on the driver;
the Stack composes device, net layer and drivers."""
