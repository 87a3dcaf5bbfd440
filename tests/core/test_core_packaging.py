"""The package as users install it: the wheel carries the config tree, the paper tables and the SLURM launcher.
(scripts/check_install.sh installs it, non-editable, and runs the commands from another directory; CI runs both.)"""
import shutil
import subprocess
import sys
import zipfile

from conftest import ROOT
from psmexp import CONF_DIR


def test_the_wheel_holds_every_config_file_the_paper_tables_and_the_launcher(tmp_path):
    source = tmp_path / "src"  # a copy, so that the build leaves no build/ in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("psmexp", "hydra_plugins"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"),
                             str(source)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    wheel, = (tmp_path / "dist").glob("psmexp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {f"psmexp/conf/{p.relative_to(CONF_DIR).as_posix()}" for p in CONF_DIR.rglob("*.yaml")}
    assert len(configs) > 100 and configs <= names, sorted(configs - names)
    tables = {f"psmexp/paper_tables/{p.name}" for p in (ROOT / "psmexp" / "paper_tables").glob("*.csv")}
    assert tables and tables <= names, sorted(tables - names)
    assert "hydra_plugins/psmexp_slurm/__init__.py" in names
