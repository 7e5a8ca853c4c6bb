"""The forwarder: ships everything stored to a remote OTLP/gRPC endpoint, with the files as the log.

Read in this order: :mod:`.settings` (the ``forward.*`` settings), :mod:`.log` (the stored
files read back as a sequence of batches), :mod:`.checkpoint` (where each signal stopped),
:mod:`.client` (the gRPC calls), :mod:`.retry` (which failures are retried, how long to wait)
and :mod:`.forwarder` (one thread per signal tying them together). docs/FORWARDING.md.

Nothing is imported here: ``otlpd.config`` checks the breaker settings through
:mod:`.settings` before the command line has configured the allocator, which must happen
before pyarrow and grpc are loaded (otlpd.memory).
"""
