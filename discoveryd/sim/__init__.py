"""Simulated Mesos master and Marathon servers (aiohttp), speaking the real APIs: used by `discoveryd demo` and the tests."""
