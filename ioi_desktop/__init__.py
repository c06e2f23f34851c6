"""IOI Desktop: point-and-click circuit analysis of language models on the IOI task."""

__version__ = "0.1.0"
APP_NAME = "IOI Desktop"
