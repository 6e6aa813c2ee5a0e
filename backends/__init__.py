"""Built-in policy backends, installed as ``rewardkit.backends``.

Each backend is a plugin module that implements ``register_backends``; none ships yet.
"""
