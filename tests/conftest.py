"""Shared test set-up: headless plotting, a fixed seed, torch's thread count restored
after every test (notebook setup cells run in-process pin it to one thread), and the one
device the tests run on.

The device comes from ``NSLIB_TEST_DEVICE`` (``cpu``, ``cuda``, ``cuda:1``), else ``cuda``
when a GPU is visible, else ``cpu``; the ``device`` fixture hands it to the tests and the
pytest header prints it. It is also exported as ``NSLIB_DEVICE`` for the session, so code
that picks its own default (``nslib.utils.default_device``: ``train``, the CLI, reproduce,
subprocesses) runs there too. On CUDA, float32 is true float32 (no TF32) and cuDNN deterministic.

    NSLIB_TEST_DEVICE=cuda python -m pytest tests      # fails at once if CUDA is not available
"""
import os

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

_DEVICE_KEY = pytest.StashKey[torch.device]()
_SAVED_ENV = pytest.StashKey[dict]()


def _test_device() -> torch.device:
    """The device of this session, from ``NSLIB_TEST_DEVICE`` or what is available; a bad value is a usage error."""
    name = os.environ.get("NSLIB_TEST_DEVICE", "").strip()
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise pytest.UsageError(f"NSLIB_TEST_DEVICE={name!r} is not a torch device ({error}); "
                                "use cpu, cuda or cuda:N, or unset it.") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise pytest.UsageError(f"NSLIB_TEST_DEVICE={name!r} but CUDA is not available here "
                                    f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); "
                                    "use cpu, or unset it.")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise pytest.UsageError(f"NSLIB_TEST_DEVICE={name!r} but only {torch.cuda.device_count()} "
                                    "CUDA device(s) are visible.")
    elif device.type != "cpu":
        raise pytest.UsageError(f"NSLIB_TEST_DEVICE={name!r}: the tests run on cpu or cuda[:N] only.")
    return device


def pytest_configure(config):
    device = _test_device()
    config.stash[_DEVICE_KEY] = device
    env = {"NSLIB_DEVICE": str(device)}
    if device.type == "cuda":
        # The tests hold float32 results to float32 tolerances and compare runs bit for bit: no TF32
        # (NVIDIA_TF32_OVERRIDE also reaches the subprocesses, e.g. the CLI a test compares with an
        # in-process run) and deterministic cuDNN kernels, as nslib.utils.seed_everything asks for.
        env["NVIDIA_TF32_OVERRIDE"] = "0"
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    config.stash[_SAVED_ENV] = {name: os.environ.get(name) for name in env}
    os.environ.update(env)


def pytest_unconfigure(config):
    for name, saved in config.stash.get(_SAVED_ENV, {}).items():
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def pytest_report_header(config):
    device = config.stash[_DEVICE_KEY]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    source = "NSLIB_TEST_DEVICE" if os.environ.get("NSLIB_TEST_DEVICE", "").strip() else "auto"
    return f"nslib test device: {device} ({name}; from {source})"


@pytest.fixture(scope="session")
def device(pytestconfig) -> torch.device:
    """The device every test with a device subject runs on (see the module docstring)."""
    return pytestconfig.stash[_DEVICE_KEY]


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def one_thread():
    """One torch CPU thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def installed_course(tmp_path_factory):
    """The built wheel installed in an environment where no checkout path is importable (tests/installed.py);
    built once per session, shared by the tests that run the course as an installed package."""
    from installed import InstalledCourse

    return InstalledCourse.build(tmp_path_factory.mktemp("installed"))


@pytest.fixture(scope="session")
def notebook_runs(tmp_path_factory):
    """One ``NSLIB_RUNS`` folder for every test that executes a course notebook in a session. The first
    run computes a notebook's attack tables (``nslib.cache``) and trains its fine-tuned models; the
    later ones read them back, as a student's second Run All does (the cache's key holds the inputs,
    nslib's source and the library versions, so nothing stale is ever read)."""
    return tmp_path_factory.mktemp("notebook-runs")
