"""Scoring against labelled data: shift RMSE, detection P/R/F1, change F1."""
