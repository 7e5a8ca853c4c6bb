"""A plain ``pip install .`` carries the dashboard: every template and static file of web/ is
matched by the package-data globs of pyproject.toml (setuptools installs nothing else)."""
import fnmatch
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_web_asset_is_package_data():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = project["tool"]["setuptools"]
    assert setuptools["package-dir"]["otlpd.web"] == "web"
    assert "otlpd.web" in setuptools["packages"]
    globs = setuptools["package-data"]["otlpd.web"]
    assets = [path.relative_to(ROOT / "web").as_posix()
              for folder in ("templates", "static") for path in (ROOT / "web" / folder).rglob("*")
              if path.is_file()]
    assert any(name.startswith("templates/") for name in assets)
    assert any(name.startswith("static/vendor/uplot/") for name in assets)
    # fnmatch's * crosses "/", setuptools' does not: compare segment by segment
    def matched(name):
        return any(len(name.split("/")) == len(pattern.split("/")) and fnmatch.fnmatch(name, pattern)
                   for pattern in globs)
    missing = [name for name in assets if not matched(name)]
    assert not missing, f"not installed by pip install . (add to package-data): {missing}"


def test_the_vendored_chart_library_says_its_version_and_licence():
    folder = ROOT / "web" / "static" / "vendor" / "uplot"
    assert (folder / "LICENSE").read_text().startswith("The MIT License")
    assert (folder / "VERSION").read_text().strip() == "1.6.32"
