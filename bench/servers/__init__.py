"""Baseline servers for bench/predict_speed.py: the floor and the usual Flask + Keras ways."""
