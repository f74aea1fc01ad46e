"""The classic Flask + Keras server, as tutorials write it: `model.predict` per request.

    MODEL_PATH=model.keras gunicorn bench.servers.classic:app
"""

import os

import keras
import numpy as np
from flask import Flask, jsonify, request

app = Flask(__name__)
model = keras.saving.load_model(os.environ["MODEL_PATH"])


@app.get("/ping")
def ping():
    return "ok"


@app.post("/predict")
def predict():
    x = np.array(request.get_json()["instances"], dtype="float32")
    return jsonify({"predictions": model.predict(x, verbose=0).tolist()})
