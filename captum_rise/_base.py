"""What captum_rise's attribution classes share on top of Captum's base class."""

from collections.abc import Callable

from captum._utils.progress import NullProgress, Progress, progress
from captum.attr import PerturbationAttribution
from torch import Tensor


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
        """Captum's progress bar over ``total`` ``unit`` steps, or a silent one."""
        if not show_progress:
            return NullProgress()
        return progress(desc=f"{self.get_name()} attribution", total=total, unit=unit)
