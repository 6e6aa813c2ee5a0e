"""Built-in rewards and task adapters, installed as ``rewardkit.plugins``.

Each module is an ordinary rewardkit plugin: it implements hooks with ``@rewardkit.hookimpl`` and
uses only the public API, exactly as a third-party plugin does.
"""
