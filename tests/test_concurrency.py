"""Two clients changing the same model at once: every change is kept, or refused with a 412."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.conftest import LESSON_LAYERS


def test_concurrent_layer_adds_lose_no_update(app, unique_name):
    client = app.test_client()
    model = client.post("/models", json={"name": unique_name,
                                         "layers": LESSON_LAYERS[:1]}).get_json()

    def add(units: int) -> int:
        response = app.test_client().post(f"/models/{model['id']}/layers",
                                          json={"type": "Dense", "units": units})
        return response.status_code

    units = list(range(2, 14))
    with ThreadPoolExecutor(6) as pool:
        statuses = list(pool.map(add, units))
    assert set(statuses) <= {201, 412}, statuses
    layers = client.get(f"/models/{model['id']}").get_json()["layers"]
    added = sorted(layer["config"]["units"] for layer in layers[1:])
    accepted = sorted(u for u, status in zip(units, statuses, strict=True) if status == 201)
    # Exactly the accepted changes are in the model: none lost, none applied twice.
    assert added == accepted and accepted


def test_concurrent_renames_end_with_one_winner_per_round(app, unique_name):
    client = app.test_client()
    model = client.post("/models", json={"name": unique_name}).get_json()
    etag = client.get(f"/models/{model['id']}").headers["ETag"]

    def rename(suffix: str) -> int:
        return app.test_client().patch(f"/models/{model['id']}",
                                       json={"tags": [suffix]},
                                       headers={"If-Match": etag}).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(rename, ["a", "b", "c", "d"]))
    assert sorted(statuses) == [200, 412, 412, 412]
