"""Training of the seed model with stock ultralytics: python -m model.train (see __main__)."""
