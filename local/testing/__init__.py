"""What the tests and the benchmarks share (neither imports the other):

- `local.testing.cassandra`: the project's Cassandra for tests and benchmarks (start it, its port);
- `local.testing.chromium`: Debian's headless Chromium under Playwright;
- `local.testing.fakes`: test doubles that subclass our ports;
- `local.testing.truth`: a stored lineage compared with the simulator's ground truth.

Ports and child processes (free_port, serve_function, stop_process) are in `local.processes`,
which the local stack uses too.
"""
