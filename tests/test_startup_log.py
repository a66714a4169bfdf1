"""Start-up log: the abseil notice TensorFlow's libraries print as they load is gone wherever
TensorFlow is first imported after ``quiet_startup()`` (SeqIO, TFDS, a Beam worker thread), and so
is Beam's BigQuery-client warning, while errors and everything else written meanwhile still show."""

import os
import subprocess
import sys
import textwrap

import pytest

from next_jax import startup_log

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTICE = startup_log.ABSL_NOTICE
INFO = "I0000 00:00:1796634848.988401   26395 port.cc:153] oneDNN custom operations are on.\n"
WARN = "W0000 00:00:1796634848.988402   26395 x.cc:1] a warning\n"
ERROR = "E0000 00:00:1796634848.988403   26395 cuda_platform.cc:52] failed call to cuInit\n"


def test_drop_startup_noise_keeps_what_the_level_lets_through():
    rest = "Traceback (most recent call last):\nplain text\n"
    text = NOTICE + "\n" + INFO + WARN + ERROR + rest
    assert startup_log.drop_startup_noise(text, 0) == INFO + WARN + ERROR + rest
    assert startup_log.drop_startup_noise(text, 1) == WARN + ERROR + rest
    assert startup_log.drop_startup_noise(text, 2) == ERROR + rest
    # Errors show whatever the level: only INFO and WARNING records are ever dropped.
    assert startup_log.drop_startup_noise(text, 3) == ERROR + rest
    # The notice is matched as a whole line, not as a part of one.
    assert startup_log.drop_startup_noise("x " + NOTICE + "\n", 3) == "x " + NOTICE + "\n"


def test_captured_stderr_is_written_back_filtered_even_when_the_body_raises(capfd, monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    with pytest.raises(ImportError, match="broken"):
        with startup_log.native_stderr_filtered():
            os.write(2, (NOTICE + "\n" + INFO + ERROR + "UserWarning: from Python\n").encode())
            raise ImportError("broken")
    assert capfd.readouterr().err == ERROR + "UserWarning: from Python\n"


_FIRST_IMPORTS = textwrap.dedent("""
    import sys
    if sys.argv[1] == "quiet":
        from next_jax import startup_log
        startup_log.quiet_startup()
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner

    def first_use(n):
        import seqio  # TensorFlow's first import, on one of the FnApiRunner's worker threads
        import tensorflow as tf
        return int(tf.data.Dataset.range(n).reduce(tf.constant(0, tf.int64), lambda a, b: a + b).numpy())

    with beam.Pipeline(runner=FnApiRunner()) as p:
        _ = p | beam.Create([3]) | beam.Map(first_use) | beam.Map(lambda v: print("sum", v, flush=True))
    import tensorflow_datasets
    import tensorflow as tf
    tf.io.gfile.exists("ram://nothing")
""")


def _first_imports(mode: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user runs it
    env["PYTHONPATH"] = REPO
    return subprocess.run([sys.executable, "-c", _FIRST_IMPORTS, mode], env=env, capture_output=True, text=True,
                          timeout=300)


def test_first_tensorflow_import_on_a_beam_worker_prints_no_notice():
    quiet = _first_imports("quiet")
    assert quiet.returncode == 0, quiet.stderr[-3000:]
    assert quiet.stdout == "sum 3\n"
    assert NOTICE not in quiet.stderr and startup_log.BEAM_APITOOLS not in quiet.stderr
    # On this driverless machine the level is raised: no INFO/WARNING/ERROR record of TensorFlow's.
    assert [line for line in quiet.stderr.splitlines() if startup_log._RECORD.match(line)] == [], quiet.stderr
    # Without it the same imports print the notice (the reason for the module).
    loud = _first_imports("loud")
    assert loud.returncode == 0, loud.stderr[-3000:]
    assert NOTICE in loud.stderr.splitlines() and startup_log.BEAM_APITOOLS in loud.stderr
