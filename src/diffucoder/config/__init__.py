"""Typed dataclass configs (defaults <- YAML <- CLI overrides); see ``loader``."""
from diffucoder.config.loader import (ConfigError, dump_yaml, load_config, parse_overrides,
                                      quote_value, read_yaml, setting, to_dict)

__all__ = ["ConfigError", "dump_yaml", "load_config", "parse_overrides", "quote_value", "read_yaml",
           "setting", "to_dict"]
