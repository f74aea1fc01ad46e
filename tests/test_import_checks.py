"""The parts of an import, without the app: archive checks, config translation, weights
layout, and the throw-away process."""

from __future__ import annotations

import json
import os
import time
import zipfile

import h5py
import keras
import numpy as np
import pytest

from service.errors import (
    InvalidModelFile,
    InvalidSpec,
    LimitExceeded,
    MalformedRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from service.imports.archive import read_config
from service.imports.sandbox import SandboxLimits, run_isolated
from service.keras_ops import describe_import, describe_model
from service.keras_ops.builder import build_model, save_compiled
from service.keras_ops.catalog import LAYERS
from service.keras_ops.config_translation import checked_compile, translate_config
from service.keras_ops.importing import import_keras_file
from service.keras_ops.specs import normalize_model_spec
from service.keras_ops.weights import load_checked_weights
from service.limits import BuildLimits, ImportLimits
from tests.keras_files import clean_mlp, declaring, edited, members, pack, randomized, saved
from tests.test_keras_ops_helpers import LESSON, example_spec, two_input_functional

MiB = 1024**2


@pytest.fixture(scope="module")
def clean() -> bytes:
    return saved(clean_mlp())


def write(tmp_path, data: bytes, name: str = "model.keras"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- the archive ------------------------------------------------------------------------------

def test_a_clean_file_passes_the_archive_checks(tmp_path, clean):
    config = read_config(write(tmp_path, clean), MiB)
    assert config["class_name"] == "Sequential" and config["config"]["name"] == "clean-mlp"


@pytest.mark.parametrize("change, error, detail", [
    (lambda f: {**f, "../config.json": f["config.json"]}, InvalidModelFile, "a path"),
    (lambda f: {**f, "/etc/passwd": b"x"}, InvalidModelFile, "a path"),
    (lambda f: {**f, "assets/vocabulary.txt": b"a\nb"}, InvalidModelFile, "inline vocabularies"),
    (lambda f: {**f, "evil.py": b"import os"}, InvalidModelFile, "unexpected member 'evil.py'"),
    (lambda f: {k: v for k, v in f.items() if k != "model.weights.h5"}, InvalidModelFile,
     "no model.weights.h5"),
    (lambda f: {**f, "config.json": b"{not json"}, InvalidModelFile, "not valid JSON"),
    (lambda f: {**f, "config.json": b"[1, 2]"}, InvalidModelFile, "not a JSON object"),
    (lambda f: {**f, "config.json": json.dumps(
        {"a": json.loads("[" * 50 + "]" * 50)}).encode()}, InvalidModelFile, "nested deeper"),
    (lambda f: {**f, "config.json": b" " * (17 * MiB)}, LimitExceeded, "over the cap"),
])
def test_archives_that_are_not_what_keras_writes_are_refused(tmp_path, clean, change, error,
                                                               detail):
    with pytest.raises(error, match=detail):
        read_config(write(tmp_path, pack(change(members(clean)))), 8 * MiB)


def test_zip_bombs_and_oversized_members_are_refused_before_they_are_read(tmp_path, clean):
    with pytest.raises(InvalidModelFile, match="zip bomb"):
        read_config(write(tmp_path, declaring(clean, "config.json", 2_000_000_000)), MiB)
    with pytest.raises(PayloadTooLarge, match="KERAS_SERVICE_MAX_IMPORT_BYTES"):
        read_config(write(tmp_path, clean), 1000)
    # A real bomb: 64 MiB of spaces deflate to ~64 KiB; declared honestly, over the cap.
    bomb = pack({**members(clean), "config.json": b" " * (64 * MiB)}, zipfile.ZIP_DEFLATED)
    assert len(bomb) < MiB
    with pytest.raises(LimitExceeded, match="over the cap"):
        read_config(write(tmp_path, bomb), MiB)


def test_encrypted_members_and_unusual_methods_are_refused(tmp_path, clean):
    data = bytearray(clean)
    data[data.find(b"PK\x01\x02") + 8] |= 0x1  # the central directory's "encrypted" flag
    with pytest.raises(InvalidModelFile, match="encrypted"):
        read_config(write(tmp_path, bytes(data)), MiB)
    with pytest.raises(InvalidModelFile, match="compression method 12"):
        read_config(write(tmp_path, pack(members(clean), zipfile.ZIP_BZIP2)), MiB)


@pytest.mark.parametrize("data, error, detail", [
    (b"", MalformedRequest, "empty"),
    (b"\x89HDF\r\n\x1a\n" + b"\x00" * 100, UnsupportedMediaType, "legacy HDF5"),
    (os.urandom(1000).replace(b"PK", b"pk"), UnsupportedMediaType, "not a .keras file"),
    (b"PK\x03\x04 but no directory", InvalidModelFile, "not a readable zip"),
])
def test_files_that_are_not_zip_archives_are_refused_by_their_first_bytes(tmp_path, data,
                                                                         error, detail):
    with pytest.raises(error, match=detail):
        read_config(write(tmp_path, data), MiB)


# -- config.json translated into a spec -------------------------------------------------------

def _config_of(tmp_path, spec: dict) -> dict:
    path = tmp_path / "model.keras"
    save_compiled(spec, {"loss": "mse", "optimizer": "adam"}, str(path), BuildLimits())
    return json.loads(members(path.read_bytes())["config.json"])


def test_every_catalogue_layer_survives_the_round_trip_through_keras_config(tmp_path):
    # One test: a save costs ~60 ms. Keras' config of each example, translated back, must
    # describe the same model (shapes, parameters) with the same compile settings.
    failures = []
    for spec in [*(example_spec(entry) for entry in LAYERS.values()), LESSON,
                 two_input_functional()]:
        try:
            config = _config_of(tmp_path, spec)
            imported = translate_config(config, 200)
            ours, theirs = describe_model(spec, BuildLimits()), describe_import(
                config, BuildLimits())
            assert (theirs["params"], theirs["outputs"]) == (ours["params"], ours["outputs"])
            outputs = normalize_model_spec(imported.spec, 200).outputs
            assert checked_compile(imported.compile, outputs) == {
                "loss": "mean_squared_error", "optimizer": "adam"}
        except Exception as error:  # collect them all: one report names every failure
            failures.append(f"{spec['layers'][0]['type']}: {error}")
    assert not failures


def test_keras_defaults_written_out_are_dropped_and_names_kept(tmp_path):
    imported = translate_config(_config_of(tmp_path, LESSON), 200)
    assert imported.spec["layers"][0] == {"type": "Dense", "name": "dense", "units": 100,
                                          "input_shape": [100]}
    assert imported.name == "sequential"


def test_compile_settings_off_the_allow_list_import_uncompiled_but_code_is_refused(tmp_path):
    config = _config_of(tmp_path, LESSON)
    config["compile_config"].update(jit_compile=True, steps_per_execution=8)  # how, not what
    assert translate_config(config, 200).compile == {"loss": "mean_squared_error",
                                                     "optimizer": "adam"}
    schedule = {"module": "keras.optimizers.schedules", "class_name": "ExponentialDecay",
                "config": {"initial_learning_rate": 0.1, "decay_steps": 10,
                           "decay_rate": 0.9}, "registered_name": None}
    config["compile_config"]["optimizer"]["config"]["learning_rate"] = schedule
    assert translate_config(config, 200).compile is None
    config["compile_config"]["loss"] = {"module": "keras.losses", "class_name": "function",
                                        "config": "mse", "registered_name": "function"}
    config["compile_config"]["optimizer"] = "sgd"
    assert translate_config(config, 200).compile["loss"] == "mse"
    for module, name in (("builtins", "my_loss"),
                         ("keras.config", "enable_unsafe_deserialization")):
        config["compile_config"]["loss"] = {"module": module, "class_name": "function",
                                            "config": name, "registered_name": "function"}
        with pytest.raises(InvalidSpec, match="refers to the function"):
            translate_config(config, 200)


def test_catalogue_pooling_strides_take_one_value_per_dimension():
    described = describe_model({"type": "sequential", "layers": [
        {"type": "MaxPooling2D", "pool_size": [2, 2], "strides": [2, 1],
         "input_shape": [8, 8, 3]}]}, BuildLimits())
    assert described["layers"][0]["output_shape"] == [None, 4, 7, 3]


# -- weights ----------------------------------------------------------------------------------

SUBSET = ("Bidirectional", "TimeDistributed", "MultiHeadAttention", "BatchNormalization",
          "Embedding", "Conv2D", "Normalization")


@pytest.mark.parametrize("spec", [LESSON, two_input_functional(),
                                  *(example_spec(LAYERS[name]) for name in SUBSET)],
                         ids=["lesson", "two-inputs", *SUBSET])
def test_an_import_predicts_what_the_saved_model_predicts(tmp_path, spec):
    source = save_compiled(spec, {"loss": "mse"}, str(tmp_path / "source.keras"), BuildLimits())
    assert source["sha256"]
    original = randomized(keras.saving.load_model(tmp_path / "source.keras"), seed=3)
    (tmp_path / "source.keras").write_bytes(saved(original))
    result = import_keras_file(str(tmp_path / "source.keras"), str(tmp_path),
                               str(tmp_path / "v1.keras"), ImportLimits())
    imported = keras.saving.load_model(tmp_path / "v1.keras")
    rng = np.random.default_rng(0)
    inputs = [rng.integers(0, 5, (3, *t.shape[1:])).astype(t.dtype) for t in original.inputs]
    inputs = inputs[0] if len(inputs) == 1 else inputs
    expected, received = original.predict(inputs, verbose=0), imported.predict(inputs, verbose=0)
    for a, b in zip(expected if isinstance(expected, list) else [expected],
                    received if isinstance(received, list) else [received], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert result["compile"] == {"loss": "mean_squared_error", "optimizer": "rmsprop"}
    assert not list(tmp_path.glob(".tmp-*"))


@pytest.fixture
def lesson_weights(tmp_path):
    """The lesson's model as we build it, and a weights file Keras wrote for it."""
    model = build_model(normalize_model_spec(LESSON, 200)).model
    path = tmp_path / "upload.weights.h5"
    randomized(model).save_weights(path)
    return model, path


def _tamper(path, change):
    with h5py.File(path, "r+") as file:
        change(file)


def _external_link(file):
    del file["layers/dense/vars/0"]
    file["layers/dense/vars/0"] = h5py.ExternalLink("/etc/passwd", "/x")


def _swap_layer_names(file):
    file["layers/dense/vars"].attrs["name"] = "dense_1"
    file["layers/dense_1/vars"].attrs["name"] = "dense"


def _compressed(file):
    data = file["layers/dense/vars/1"][()]
    del file["layers/dense/vars/1"]
    file.create_dataset("layers/dense/vars/1", data=data, compression="gzip")


def _external_storage(file):
    del file["layers/dense/vars/1"]
    file.create_dataset("layers/dense/vars/1", shape=(100,), dtype="float32",
                        external=[("/etc/hostname", 0, 400)])


@pytest.mark.parametrize("change, detail", [
    (_external_link, "a link to another object or file"),
    (lambda f: f.__setitem__("layers/dense/vars/2", h5py.SoftLink("/vars")), "a link"),
    (_external_storage, "stores its data in other files"),
    (_compressed, "compressed or filtered"),
    (lambda f: f.create_dataset("layers/dense/vars/2", data=np.zeros(3)), "has nothing there"),
    (lambda f: f.__delitem__("layers/dense_1/vars/1"), "'layers/dense_1/vars/1' is nothing"),
    (lambda f: (f.__delitem__("layers/dense/vars/1"),
                f.create_dataset("layers/dense/vars/1", data=np.zeros(99, "float32"))),
     r"shape \(99,\)"),
    (lambda f: (f.__delitem__("layers/dense/vars/1"),
                f.create_dataset("layers/dense/vars/1", data=np.zeros(100, "float64"))), "<f8"),
    (lambda f: (f.__delitem__("layers/dense/vars/1"),
                f.create_dataset("layers/dense/vars/1", data=np.array([b"x"] * 100))),
     "not a plain numeric array"),
    (_swap_layer_names, "named 'dense_1'"),
    (lambda f: f["layers/dense/vars"].attrs.__setitem__("evil", "x"), "attributes"),
])
def test_a_weights_file_must_have_exactly_the_layout_keras_writes_for_the_rebuilt_model(
        tmp_path, lesson_weights, change, detail):
    model, path = lesson_weights
    _tamper(path, change)
    with pytest.raises(InvalidSpec, match=detail):
        load_checked_weights(model, path, tmp_path)


def test_the_optimizer_state_in_a_weights_file_is_never_read(tmp_path, lesson_weights):
    model, path = lesson_weights
    _tamper(path, lambda f: f.__setitem__("optimizer/vars/0",
                                          h5py.ExternalLink("/etc/passwd", "/x")))
    load_checked_weights(model, path, tmp_path)
    with h5py.File(path) as file:
        np.testing.assert_array_equal(model.layers[0].kernel.numpy(),
                                      file["layers/dense/vars/0"][()])


# -- the throw-away process -------------------------------------------------------------------

LIMITS = SandboxLimits(memory_bytes=1024 * MiB, timeout=20, file_bytes=MiB)


def test_the_sandbox_answers_in_another_process_and_passes_refusals_through():
    answer = run_isolated("tests.sandbox_targets:echo", [1, "a"], limits=LIMITS)
    assert answer["value"] == [1, "a"] and answer["pid"] != os.getpid()
    with pytest.raises(InvalidSpec, match="no way") as refused:
        run_isolated("tests.sandbox_targets:refuse", "no way", limits=LIMITS)
    assert refused.value.errors == [{"path": "x", "message": "no way"}]
    with pytest.raises(InvalidModelFile, match="RuntimeError: something inside Keras with"):
        run_isolated("tests.sandbox_targets:fail", limits=LIMITS)


def test_the_sandbox_stops_at_its_memory_cap_and_survives_a_crash():
    limits = SandboxLimits(memory_bytes=300 * MiB, timeout=20, file_bytes=MiB)
    with pytest.raises(LimitExceeded, match="KERAS_SERVICE_IMPORT_MEMORY_BYTES"):
        run_isolated("tests.sandbox_targets:allocate", 1000, limits=limits)
    with pytest.raises(LimitExceeded, match="SIGABRT"):
        run_isolated("tests.sandbox_targets:crash", limits=limits)


def test_the_sandbox_kills_a_process_past_its_time(tmp_path):
    limits = SandboxLimits(memory_bytes=300 * MiB, timeout=1.5, file_bytes=MiB)
    started = time.monotonic()
    with pytest.raises(LimitExceeded, match="KERAS_SERVICE_IMPORT_TIMEOUT"):
        run_isolated("tests.sandbox_targets:sleep", 60, str(tmp_path / "pid"), limits=limits)
    assert time.monotonic() - started < 10
    with pytest.raises(ProcessLookupError):
        os.kill(int((tmp_path / "pid").read_text()), 0)


def test_a_config_edited_to_pass_the_builder_is_checked_again_in_the_sandbox(tmp_path, clean):
    # The throw-away process re-reads the file itself: what it imports is what it checked.
    data = edited(clean, lambda c: c["config"]["layers"][1]["config"].update(units=10**8))
    path = write(tmp_path, data)
    with pytest.raises(InvalidSpec, match="units"):
        import_keras_file(str(path), str(tmp_path), str(tmp_path / "v1.keras"), ImportLimits())
    assert not (tmp_path / "v1.keras").exists()
