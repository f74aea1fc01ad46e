"""The artifact store: atomic writes, sweeps, and ids that can never become paths."""

import pytest

from service.storage import TEMP_PREFIX, ArtifactStore, atomic_path, new_id, sha256_of


def test_atomic_path_replaces_the_file_only_on_success(tmp_path):
    final = tmp_path / "models" / "m.keras"
    with atomic_path(final) as temp:
        temp.write_bytes(b"first")
    assert final.read_bytes() == b"first"

    with pytest.raises(RuntimeError), atomic_path(final) as temp:
        temp.write_bytes(b"half")
        raise RuntimeError("crash while writing")
    assert final.read_bytes() == b"first"
    assert [p.name for p in final.parent.iterdir()] == ["m.keras"]


def test_sweep_removes_temporary_files_and_orphans(tmp_path):
    store = ArtifactStore(tmp_path)
    store.ensure_layout()
    kept, orphan = new_id(), new_id()
    for model_id in (kept, orphan):
        store.model_dir(model_id).mkdir()
        store.new_compiled_path(model_id).write_bytes(b"k")
    (store.model_dir(kept) / f"{TEMP_PREFIX}abc.keras").write_bytes(b"partial")

    assert store.sweep_temporary_files() == 1
    assert store.sweep_orphans(store.models_dir, {kept}) == 1
    assert len(list(store.model_dir(kept).glob("compiled-*.keras"))) == 1
    assert not store.model_dir(orphan).exists()


@pytest.mark.parametrize("bad_id", ["..", "../x", "/etc", "a" * 31, "%2e%2e"])
def test_model_dir_refuses_anything_but_a_server_id(tmp_path, bad_id):
    with pytest.raises(ValueError):
        ArtifactStore(tmp_path).model_dir(bad_id)


def test_sha256_of_matches_hashlib(tmp_path):
    import hashlib

    path = tmp_path / "f"
    path.write_bytes(b"x" * 3_000_000)
    assert sha256_of(path) == hashlib.sha256(b"x" * 3_000_000).hexdigest()
