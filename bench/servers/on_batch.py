"""The classic server with the usual first fix: `predict_on_batch` and stdlib json.

    MODEL_PATH=model.keras gunicorn bench.servers.on_batch:app
"""

import json
import os

import keras
import numpy as np
from flask import Flask, Response, request

app = Flask(__name__)
model = keras.saving.load_model(os.environ["MODEL_PATH"])


@app.get("/ping")
def ping():
    return "ok"


@app.post("/predict")
def predict():
    x = np.array(json.loads(request.get_data())["instances"], dtype="float32")
    body = json.dumps({"predictions": np.asarray(model.predict_on_batch(x)).tolist()})
    return Response(body, mimetype="application/json")
