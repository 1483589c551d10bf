import os
from pathlib import Path

import pytest
import torch

# ../shared/data beside the checkout; SPECULUM_SHARED_DATA overrides (tests of the skip policy use it)
SHARED_DATA = Path(os.environ.get("SPECULUM_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
NO_SKIP = os.environ.get("SPECULUM_NO_SKIP", "") not in ("", "0")
_skipped: list[str] = []


def _record_skip(report) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason}")


def pytest_runtest_logreport(report):
    _record_skip(report)


def pytest_collectreport(report):
    _record_skip(report)  # module-level importorskip (the reference package, specutils) skips at collection


def pytest_sessionfinish(session, exitstatus):
    """With SPECULUM_NO_SKIP=1 (CI, where ../shared/data, the reference package and chromium all
    exist) a skipped test fails the run: a skip there means a test silently did not run."""
    if NO_SKIP and _skipped:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if NO_SKIP and _skipped:
        terminalreporter.section("SPECULUM_NO_SKIP: skipped tests fail this run")
        for line in _skipped:
            terminalreporter.write_line(line)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real survey files not available: {SHARED_DATA} is missing")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A tiny `speculum demo` run (512 spectra, 1 epoch), shared by the CLI and browser tests."""
    from typer.testing import CliRunner

    from speculum.cli import app

    out = tmp_path_factory.mktemp("demo")
    res = CliRunner().invoke(app, ["demo", "--out", str(out), "--n", "512", "--epochs", "1"])
    assert res.exit_code == 0, res.output
    return out
