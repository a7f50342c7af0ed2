"""Measuring a model on labelled data: `skinscan evaluate`, metrics with intervals, plots and report.html."""
