"""Configuration: located YAML -> validated, frozen Config."""

from geodns.config.model import Config
from geodns.config.parse import DEFAULT_CONFIG, load

__all__ = ["DEFAULT_CONFIG", "Config", "load"]
