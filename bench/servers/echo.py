"""The floor: a Flask endpoint that parses its JSON body and answers it back."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/ping")
def ping():
    return "ok"


@app.post("/predict")
def predict():
    return jsonify(request.get_json())
