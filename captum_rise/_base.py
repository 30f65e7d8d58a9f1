"""What captum_rise's attribution classes share on top of Captum's base class."""

from collections.abc import Callable
from typing import Any, TypeVar, cast

from captum._utils.progress import NullProgress, Progress
from captum.attr import PerturbationAttribution
from captum.log import log_usage as captum_log_usage
from torch import Tensor

from captum_rise._progress import progress_bar

_Method = TypeVar("_Method", bound=Callable[..., Any])


def log_usage(method: _Method) -> _Method:
    """Captum's usage logging (``captum.log.log_usage()``) with the method's signature kept.

    Captum's decorator is untyped; through this one, type checkers and editors
    still see the decorated ``attribute`` method's arguments and return type.
    """
    return cast(_Method, captum_log_usage()(method))


class MaskAttribution(PerturbationAttribution):
    """A Captum perturbation attribution named :attr:`method_name`.

    Its maps are importances of input regions, not products with the input,
    so ``multiplies_by_inputs`` is False.
    """

    method_name: str

    def __init__(self, forward_func: Callable[..., Tensor]) -> None:
        PerturbationAttribution.__init__(self, forward_func)

    @classmethod
    def get_name(cls) -> str:
        return cls.method_name

    @property
    def multiplies_by_inputs(self) -> bool:
        return False

    def _progress(self, show_progress: bool, total: int, unit: str = "it") -> Progress:
        """Captum's progress bar over ``total`` ``unit`` steps (quiet in a log), or none."""
        if not show_progress:
            return NullProgress()
        return progress_bar(f"{self.get_name()} attribution", total, unit)
