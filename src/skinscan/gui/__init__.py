"""The desktop app: a Qt-free `AppState` (state.py) that Qt views (qt_*.py) observe; Qt only through qtpy.

Run it with `skinscan gui` or `skinscan.gui.app.run_gui()`.
"""
