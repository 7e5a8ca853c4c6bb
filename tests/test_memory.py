"""The daemon's allocator settings (otlpd/memory.py), each in a fresh interpreter:
they are process-wide and must not leak into the test process."""
import json
import os
import subprocess
import sys

import pytest

PROBE = (
    "import json\n"
    "from otlpd.memory import configure_process_memory\n"
    "applied = configure_process_memory()\n"
    "import pyarrow as pa, pyarrow.ipc as ipc\n"
    "table = pa.table({'a': pa.array([f'value-{i % 977}' for i in range(200_000)])})\n"
    "with ipc.new_file(pa.BufferOutputStream(), table.schema,\n"
    "                  options=ipc.IpcWriteOptions(compression='zstd')) as writer:\n"
    "    writer.write_table(table)\n"
    "print(json.dumps({'applied': applied, 'pool': pa.default_memory_pool().backend_name,\n"
    "                  'ipc_peaks': {name: getattr(pa, name + '_memory_pool')().max_memory()\n"
    "                                for name in pa.supported_memory_backends()}}))\n"
)


def _probe(**env):
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    environment.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=environment, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return json.loads(out)


def test_daemon_uses_the_system_pool_and_mmap_for_large_blocks():
    result = _probe()
    assert result["pool"] == "system"
    assert result["applied"]["arrow_memory_pool"] == "system"
    assert result["applied"]["arrow_cpp_pool"] == "system"
    # Arrow's C++ code (the IPC writer's compression buffers) allocated from the
    # system pool too, not from pyarrow's compiled-in default
    peaks = result["ipc_peaks"]
    assert peaks["system"] > 100_000
    assert all(peak == 0 for name, peak in peaks.items() if name != "system")
    if sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION"):
        assert result["applied"]["malloc_mmap_threshold"] == 4 * 1024 * 1024


def test_arrow_memory_pool_from_the_environment_wins():
    import pyarrow as pa

    if "jemalloc" not in pa.supported_memory_backends():
        pytest.skip("this pyarrow build has no jemalloc pool to choose instead")
    result = _probe(ARROW_DEFAULT_MEMORY_POOL="jemalloc")
    assert result["pool"] == "jemalloc"
    assert result["applied"]["arrow_memory_pool"] == "jemalloc"
