"""The start-up edge both services share: settings from a table of keys, logging, and
the garbage collector's settings.

webhookd and the ratelimiter service read their settings the same way: built-in
defaults, then a TOML file, then environment variables ``<PREFIX><SECTION>_<KEY>``,
then validation; unknown keys and bad values are reported together, one line each,
naming the dotted key (and the file or variable it came from), and the command exits
with status 2. Each service lists its keys in one ``KeyTable``; this package is the
engine that reads it. The API::

    Kind(expected, parse, from_env=str)     # how one sort of value is checked
    Key(section, name, attribute, kind, default, doc, secret=False)
    KeyTable(env_prefix, keys, free_sections=())
        .read(data, environ, source=None) -> Reading(values, notes, problems)
        .attributes(section, values) -> dict      # keyword arguments of a section class
    read_toml(path, what, note="") -> dict   # ConfigFileError naming the file
    split_listen("[::1]:8080") -> ("::1", 8080)
    configure_logging(level, stream=None)    # structlog, JSON lines on stderr
    settle_heap()                            # once started: freeze the heap (heap.py)

``configtable.kinds`` holds the shared kinds (``TEXT``, ``BOOL``, ``POSITIVE``,
``LOG_LEVEL``, ``integer(...)``, ``number(...)``, ``choice(...)``,
``listen_address(...)``, ...). Nothing here imports either service.
"""

from configtable.heap import settle_heap
from configtable.kinds import Kind, split_listen
from configtable.logs import configure_logging
from configtable.table import ConfigFileError, Key, KeyTable, Reading, read_toml

__all__ = [
    "ConfigFileError",
    "Key",
    "KeyTable",
    "Kind",
    "Reading",
    "configure_logging",
    "read_toml",
    "settle_heap",
    "split_listen",
]
