"""Configuration: precedence, units, and one clear line for every wrong value."""
import socket

import pytest

from daemon_process import assert_one_line_error, run_otlpd
from otlpd.config import ConfigError, load, parse_duration, parse_size


def test_defaults():
    config = load(environ={})
    assert config["grpc_endpoint"] == "127.0.0.1:4317"
    assert config["output_dir"] == "./otlpd-data"
    assert config["writer.write_interval"] == 1.0
    assert config.writer.max_file_bytes == 256 * 1024 * 1024


def test_precedence_flags_over_env_over_file(tmp_path):
    config_file = tmp_path / "otlpd.yaml"
    config_file.write_text(
        "output_dir: /from/file\n"
        "writer:\n  max_file_bytes: 1MiB\n  write_interval: 5s\n  compression: lz4\n")
    environ = {"OTLPD_WRITER__WRITE_INTERVAL": "250ms", "OTLPD_OUTPUT_DIR": "/from/env"}
    config = load(str(config_file), environ=environ, flags={"output_dir": "/from/flag"})
    assert config["output_dir"] == "/from/flag"
    assert config["writer.write_interval"] == 0.25
    assert config["writer.max_file_bytes"] == 1024 * 1024
    assert config["writer.compression"] == "lz4"
    config = load(str(config_file), environ=environ)
    assert config["output_dir"] == "/from/env"


@pytest.mark.parametrize("text,expected", [
    (1024, 1024), ("64MiB", 64 * 1024**2), ("1.5 GB", 1_500_000_000), ("10kb", 10_000), ("7", 7)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text,expected", [
    (2, 2.0), ("500ms", 0.5), ("10m", 600.0), ("7d", 7 * 86400.0), ("1.5h", 5400.0)])
def test_parse_duration(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("environ,message", [
    ({"OTLPD_WRITER__MAX_FILE_BYTES": "-5"}, "writer.max_file_bytes: must be greater than 0"),
    ({"OTLPD_WRITER__MAX_FILE_BYTES": "lots"}, "writer.max_file_bytes: expected a size"),
    ({"OTLPD_WRITER__COMPRESSION": "brotli"}, "writer.compression: must be one of zstd, lz4, none"),
    ({"OTLPD_WRITER__COMPRESSION_LEVEL": "fast"}, "writer.compression_level: expected a whole number or default"),
    ({"OTLPD_WRITER__COMPRESSION_LEVEL": "23"}, "writer.compression_level: must be from -131072 to 22 for zstd"),
    ({"OTLPD_WRITER__COMPRESSION": "lz4", "OTLPD_WRITER__COMPRESSION_LEVEL": "0"},
     "writer.compression_level: must be from 1 to 12 for lz4"),
    ({"OTLPD_WRITER__COMPRESSION": "none", "OTLPD_WRITER__COMPRESSION_LEVEL": "3"},
     "writer.compression_level: must be default with writer.compression none"),
    ({"OTLPD_RECEIVER__MAX_REQUEST_BYTES": "2MiB", "OTLPD_BUFFER__MAX_BYTES": "1MiB"},
     r"receiver.max_request_bytes: must not exceed buffer.max_bytes \(2097152 > 1048576\)"),
    ({"OTLPD_RECEIVER__MAX_REQUEST_BYTES": "1MiB", "OTLPD_BUFFER__MAX_BYTES": "1MiB", "OTLPD_RECEIVER__WORKERS": "2"},
     "receiver.max_request_bytes: must not exceed buffer.max_bytes divided by receiver.workers"),
    ({"OTLPD_GRPC_ENDPOINT": "localhost"}, "grpc_endpoint: must be HOST:PORT"),
    ({"OTLPD_WRITER__NO_SUCH_THING": "1"}, "OTLPD_WRITER__NO_SUCH_THING: unknown setting"),
])
def test_bad_values_name_the_key(environ, message):
    with pytest.raises(ConfigError, match=message):
        load(environ=environ)


def test_unknown_key_in_file(tmp_path):
    config_file = tmp_path / "otlpd.yaml"
    config_file.write_text("writer:\n  max_file_byte: 10\n")
    with pytest.raises(ConfigError, match=r"writer.max_file_byte: unknown setting"):
        load(str(config_file), environ={})


@pytest.mark.slow
def test_cli_start_errors_are_one_line(tmp_path):
    config_file = tmp_path / "otlpd.yaml"
    config_file.write_text("writer:\n  max_file_bytes: -1\n")
    assert_one_line_error(run_otlpd("--config", str(config_file)), "writer.max_file_bytes")
    config_file.write_text("nonsense: 1\n")
    assert_one_line_error(run_otlpd("--config", str(config_file)), "nonsense: unknown setting")
    assert_one_line_error(run_otlpd("--config", str(tmp_path / "missing.yaml")), "--config")
    assert_one_line_error(run_otlpd("--retention.max-age=-1d"), "retention.max_age")
    assert_one_line_error(run_otlpd("--no-such-flag"), "unrecognized arguments: --no-such-flag")

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert_one_line_error(
        run_otlpd("--grpc-endpoint", "127.0.0.1:0", "--output-dir", str(blocker / "data")),
        "output_dir: cannot write to")

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(
            run_otlpd("--grpc-endpoint", f"127.0.0.1:{port}", "--output-dir", str(tmp_path / "d")),
            "grpc_endpoint: cannot listen on")


def test_help_lists_every_setting():
    result = run_otlpd("--help")
    assert result.returncode == 0
    for flag in ("--config", "--grpc-endpoint", "--output-dir", "--writer.max-file-bytes",
                 "--retention.max-total-bytes", "--buffer.max-items"):
        assert flag in result.stdout


def test_compression_levels_match_arrow():
    import pyarrow as pa

    from otlpd.config import COMPRESSION_LEVELS

    for codec, (low, high) in COMPRESSION_LEVELS.items():
        assert (pa.Codec.minimum_compression_level(codec), pa.Codec.maximum_compression_level(codec)) == (low, high)
    assert load(environ={})["writer.compression_level"] is None
    assert load(environ={"OTLPD_WRITER__COMPRESSION_LEVEL": "-3"})["writer.compression_level"] == -3
