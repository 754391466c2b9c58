"""Metrics, plots and visualizations of trained models."""
