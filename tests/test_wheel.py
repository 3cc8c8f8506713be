"""The course as an installed package: the built wheel carries what the course reads at run time, and
works from an empty folder with no checkout importable, without writing into the installed package."""
import json
import tarfile
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds the wheel and runs the quick reproduction: minutes


def test_wheel_carries_the_data_checkpoints_manifest_and_sweep(installed_course):
    names = zipfile.ZipFile(installed_course.wheel).namelist()
    manifest = json.loads(zipfile.ZipFile(installed_course.wheel).read("nslib/_shipped/checkpoints/manifest.json"))
    expected = {"nslib/_shipped/mnist5k.npz", "nslib/_shipped/sweeps/sns_sweep.json",
                *(f"nslib/_shipped/checkpoints/{entry['file']}" for entry in manifest.values())}
    assert expected <= set(names), sorted(expected - set(names))
    assert len(manifest) >= 12
    assert not [n for n in names if n.startswith(("notebooks/", "docs/", "student/", "data/"))], \
        "the wheel carries the repository's folders, not just the package"
    with tarfile.open(installed_course.sdist) as sdist:  # the sdist, which the wheel is built from, too
        assert any(n.endswith("nslib/_shipped/mnist5k.npz") for n in sdist.getnames())


def test_installed_package_is_the_wheel_not_the_checkout(installed_course, tmp_path):
    """Only the test environment's site-packages (torch and the other dependencies; it holds no nslib,
    just the editable install's finder, which is not loaded) may sit under the checkout."""
    import sysconfig

    from installed import ROOT

    code = ("import json, sys, nslib; print(json.dumps({'file': nslib.__file__, 'path': sys.path, "
            "'finders': [type(f).__name__ for f in sys.meta_path]}))")
    result = installed_course.run(["-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["file"].startswith(str(installed_course.package))
    dependencies = sysconfig.get_paths()["purelib"]
    assert not (Path(dependencies) / "nslib").exists()
    assert not [p for p in found["path"] if p and str(ROOT) in p and p != dependencies], found["path"]
    assert "_EditableFinder" not in found["finders"], "the checkout's editable install is loaded"


def test_data_and_a_shipped_checkpoint_load_by_name(installed_course, tmp_path):
    code = ("from nslib import data, checkpoints\n"
            "x, y = data.load('mnist5k', 'test').tensors()\n"
            "model, info = checkpoints.load_pretrained('mnist_sns')\n"
            "print(len(x), data.EMBEDDED_DIR, info['recipe']['recipe'], len(checkpoints.pretrained_names()))")
    result = installed_course.run(["-c", code], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    count, folder, recipe, shipped = result.stdout.split()
    assert count == "1000" and folder.startswith(str(installed_course.package)) and recipe == "sns"
    assert int(shipped) >= 12


def test_reproduce_quick_runs_from_an_empty_folder_and_writes_nothing_into_the_package(installed_course, tmp_path,
                                                                                       notebook_runs):
    """Every figure and table into ./results of the current folder; the installed package unchanged.
    E5's attack tables come from the session's NSLIB_RUNS cache where tests/test_newcomer.py's run of the
    same code left them (the cache's key holds nslib's source, the models, the images and the versions)."""
    before = installed_course.snapshot()
    installed_course.package.chmod(0o555)  # read-only where the user is not root
    try:
        result = installed_course.run(["-m", "nslib", "reproduce", "--quick", "--no-progress"], cwd=tmp_path,
                                      NSLIB_RUNS=str(notebook_runs))
    finally:
        installed_course.package.chmod(0o755)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (tmp_path / "results" / "REPORT.md").read_text()
    assert report.count("\n## ") >= 8 and (tmp_path / "results" / "e5_robustness.csv").exists()
    assert installed_course.snapshot() == before, "reproduce wrote into the installed package"


def test_a_damaged_packaged_file_names_itself_its_sha256_and_how_to_reinstall(installed_course, tmp_path):
    """Run last in this module: it damages the installed checkpoint (and restores it)."""
    manifest = json.loads((installed_course.package / "_shipped" / "checkpoints" / "manifest.json").read_text())
    path = installed_course.package / "_shipped" / "checkpoints" / manifest["mnist_sns"]["file"]
    original = path.read_bytes()
    path.write_bytes(original[:-64] + bytes(64))
    try:
        python = installed_course.run(["-c", "from nslib import checkpoints; checkpoints.load_pretrained('mnist_sns')"],
                                      cwd=tmp_path)
        cli = installed_course.run(["-m", "nslib", "evaluate", "mnist_sns", "--n", "10"], cwd=tmp_path)
    finally:
        path.write_bytes(original)
    assert python.returncode == 1
    assert str(path) in python.stderr and manifest["mnist_sns"]["sha256"] in python.stderr
    assert "pip install --force-reinstall --no-deps nslib-course" in python.stderr
    assert cli.returncode == 2, cli.stderr
    lines = cli.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nslib: error:") and "force-reinstall" in lines[0], cli.stderr
