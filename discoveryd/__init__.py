"""discoveryd: mesos-dns compatible DNS and marathon-lb compatible HAProxy in one daemon."""

__version__ = "0.1.0"
URL = "https://github.com/discoveryd/discoveryd"
