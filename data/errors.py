"""The one error type for bad data and data settings: its message is shown to the user as one line."""


class DataError(ValueError):
    """Shards that match nothing or yield no sample, a bad ``data.*`` setting, an output folder made
    with other settings. ``train.py`` prints the message (no traceback) and exits with code 2."""


def data_error_message(exc: BaseException) -> str | None:
    """The one-line message of the ``DataError`` behind ``exc`` (raised directly, wrapped by Hydra's
    ``instantiate`` or re-raised from a DataLoader worker), or None when there is none."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DataError):
            lines = [ln for ln in str(exc).splitlines() if ln.strip()]
            last = lines[-1] if lines else type(exc).__name__
            prefix = f"{DataError.__module__}.{DataError.__qualname__}: "
            return last[len(prefix):] if last.startswith(prefix) else last
        exc = exc.__cause__ or exc.__context__
    return None
