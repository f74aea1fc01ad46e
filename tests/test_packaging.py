"""What can be checked without a Docker engine: the image's entry point, port and health."""

import re
from pathlib import Path

from service.config import SETTINGS

ROOT = Path(__file__).parent.parent


def test_dockerfile_runs_keras_service_as_non_root_with_a_healthcheck():
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.M)
    user = re.search(r"^USER (\S+)", dockerfile, re.M)
    assert user and user.group(1) not in ("root", "0")
    assert re.search(r"^VOLUME .*/data", dockerfile, re.M)
    assert re.search(r"^EXPOSE 8000$", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK .*127\.0\.0\.1:8000/healthz", dockerfile, re.M)
    assert re.search(r'^ENTRYPOINT \["keras-service"\]$', dockerfile, re.M)
    command = re.search(r"^CMD (.+)$", dockerfile, re.M).group(1)
    assert command.startswith('["serve"')
    assert '"--host", "0.0.0.0"' in command and '"--port", "8000"' in command


def test_console_script_points_at_the_cli():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'keras-service = "service.__main__:main"' in pyproject
    assert re.search(r'"keras==3\.15\.1"', pyproject)


def test_readme_lists_every_setting_with_its_default():
    readme = (ROOT / "README.md").read_text()
    for setting in SETTINGS:
        row = next((line for line in readme.splitlines()
                    if line.startswith(f"| `{setting.env}` |")), None)
        assert row, f"{setting.env} is missing from the README's configuration table"
        assert str(setting.default) in row or (setting.default == "" and "empty" in row.lower())


def test_readme_test_command_is_what_ci_runs():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    assert "make test" in (ROOT / "README.md").read_text()
    assert "make serve" in (ROOT / "README.md").read_text()
