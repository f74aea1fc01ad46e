"""Ids are the server's own: path-like, encoded and absolute "ids" are 404 on every route of
openapi.yaml that takes one, and nothing outside the data dir is read or written."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from tests.operations import fill, operations, valid_bodies

HOSTILE = ["..", "...", "../..", "..%2f..%2fetc%2fpasswd", "%2e%2e", "%2e%2e%2f%2e%2e",
           "..%5c..%5cwindows", "%2Fetc%2Fpasswd", "%252e%252e%252f", "....%2f%2f",
           "%00", "..%00", "~root", "registry.sqlite3", ".registry-stamp"]
ID_PARAMETERS = {"model_id", "dataset_id", "job_id", "name"}


def _id_routes():
    return [(method, path) for method, path in operations()
            if set(re.findall(r"\{(\w+)\}", path)) & ID_PARAMETERS]


@pytest.fixture(scope="module")
def canary(config):
    """A file beside the data dir that a path escaping it would reach."""
    path = Path(config.data_dir).parent / "canary.txt"
    path.write_text("untouched")
    return path


@pytest.mark.parametrize("method, path", _id_routes())
def test_hostile_ids_are_404_on_every_route(client, config, canary, method, path):
    siblings = sorted(p.name for p in canary.parent.iterdir())
    before = sorted(p.relative_to(config.data_dir) for p in Path(config.data_dir).rglob("*")
                    if ".registry" not in p.name and "registry.sqlite3" not in p.name)
    body = valid_bodies(dataset_id="0" * 32).get((method, path))
    for hostile in HOSTILE:
        url = fill(path, {"number": "1", "index": "0", "version": "1", "label": "stable",
                          **dict.fromkeys(ID_PARAMETERS, hostile)})
        response = getattr(client, method)(url, json=body)
        if path.startswith("/v1/") and "/" in unquote(hostile):
            # Not a model name at all: TF Serving's answer to an address outside its grammar.
            assert response.status_code == 400, (method, url)
            assert response.get_json()["error"].startswith("Malformed request")
            continue
        assert response.status_code == 404, (method, url, response.get_data(as_text=True))
    after = sorted(p.relative_to(config.data_dir) for p in Path(config.data_dir).rglob("*")
                   if ".registry" not in p.name and "registry.sqlite3" not in p.name)
    assert after == before
    assert canary.read_text() == "untouched"
    assert sorted(p.name for p in canary.parent.iterdir()) == siblings
