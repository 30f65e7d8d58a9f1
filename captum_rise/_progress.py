"""Progress bars that suit both a terminal and a log file.

On a terminal, Captum's progress bar (tqdm) as usual. When stderr is not a terminal
(a log, a batch job), tqdm cannot redraw in place and writes every refresh as a
new line of escape codes; there a bar refreshes at most every
:data:`LOG_INTERVAL_S` seconds. (Callers that nest bars show the inner ones only
on a terminal.)
"""

import sys

from captum._utils.progress import Progress, progress

LOG_INTERVAL_S = 30.0


def is_terminal() -> bool:
    """Whether stderr, where progress bars go, is an interactive terminal."""
    return sys.stderr.isatty()


def progress_bar(desc: str, total: int, unit: str = "it") -> Progress:
    """A progress bar over ``total`` steps, quiet in logs (see the module docstring)."""
    if is_terminal():
        return progress(desc=desc, total=total, unit=unit)
    return progress(desc=desc, total=total, unit=unit, mininterval=LOG_INTERVAL_S)
