"""What every side shares: the error tree, the model spec, preprocessing, input-quality measures, calibration
and the severity scale (NumPy and Pillow only: no torch, no SciPy, no scikit-learn, no matplotlib)."""
