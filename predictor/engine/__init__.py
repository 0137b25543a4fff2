"""predictor.engine."""
