"""The forwarder: ships everything stored to a remote OTLP/gRPC endpoint, with the files as the log.

Read in this order: :mod:`.settings` (the ``forward.*`` settings), :mod:`.log` (the stored
files read back as a sequence of batches), :mod:`.checkpoint` (where each signal stopped),
:mod:`.client` (the gRPC calls), :mod:`.retry` (which failures are retried, how long to wait)
and :mod:`.forwarder` (one thread per signal tying them together). docs/FORWARDING.md.
"""
from otlpd.forward.forwarder import Forwarder, disabled_snapshot

__all__ = ["Forwarder", "disabled_snapshot"]
