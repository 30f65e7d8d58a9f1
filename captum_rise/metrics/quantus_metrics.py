"""Deletion and Insertion as Quantus metrics, registered under Faithfulness.

They compute through :func:`captum_rise.metrics.deletion` and
:func:`~captum_rise.metrics.insertion` on the wrapped torch model, so
Quantus and plain-function results agree exactly, and they are numpy-2 safe
(the AUC is ``torch.trapezoid``, not ``np.trapz``).
"""

from collections.abc import Callable
from typing import Any, ClassVar, cast

import numpy as np
import quantus
import torch
from quantus.helpers import warn
from quantus.helpers.enums import DataType, EvaluationCategory, ModelType, ScoreDirection

from captum_rise._forward import device_of
from captum_rise.metrics.causal import SubstrateType, deletion, insertion

_CITATION = (
    "Petsiuk, Das and Saenko. 'RISE: Randomized Input Sampling for Explanation of "
    "Black-box Models.' BMVC 2018"
)


class _CausalMetric(quantus.Metric[list[float]]):
    """Shared body of :class:`Deletion` and :class:`Insertion`."""

    data_applicability: ClassVar[set[DataType]] = {DataType.IMAGE}
    model_applicability: ClassVar[set[ModelType]] = {ModelType.TORCH}
    evaluation_category = EvaluationCategory.FAITHFULNESS
    _curve: Callable[..., Any]
    _default_substrate: SubstrateType

    def __init__(
        self,
        substrate: SubstrateType | None = None,
        step: int | None = None,
        n_steps: int | None = None,
        apply_softmax: bool | None = None,
        perturb_batch_size: int | None = None,
        abs: bool = False,
        normalise: bool = False,
        normalise_func: Callable[[np.ndarray], np.ndarray] | None = None,
        normalise_func_kwargs: dict[str, Any] | None = None,
        return_aggregate: bool = False,
        aggregate_func: Callable[..., Any] | None = None,
        default_plot_func: Callable[..., Any] | None = None,
        disable_warnings: bool = False,
        display_progressbar: bool = False,
        **kwargs: Any,
    ) -> None:
        """
        Parameters
        ----------
        substrate: number, "mean", "blur" or tensor
            Deletion: what removed pixels become (default 0). Insertion: the
            starting canvas (default "blur", Gaussian kernel 11, sigma 5).
        step, n_steps: int
            Pixels per step (default one image row) or number of steps.
        apply_softmax: bool, optional
            Softmax over the model output. None follows the ``softmax`` argument
            of ``__call__`` (Quantus' convention), and then skips it for a model
            whose outputs already sum to 1.
        perturb_batch_size: int, optional
            Perturbed images per forward call; None (default) chooses it
            automatically (see :func:`captum_rise.metrics.deletion`).
        abs, normalise, normalise_func, normalise_func_kwargs, return_aggregate,
        aggregate_func, default_plot_func, disable_warnings, display_progressbar:
            As in every Quantus metric. Normalisation does not change the
            ranking, so it is off by default.
        """
        super().__init__(
            abs=abs,
            normalise=normalise,
            normalise_func=normalise_func,
            normalise_func_kwargs=normalise_func_kwargs,
            return_aggregate=return_aggregate,
            aggregate_func=np.mean if aggregate_func is None else aggregate_func,
            default_plot_func=default_plot_func,
            display_progressbar=display_progressbar,
            disable_warnings=disable_warnings,
            **kwargs,
        )
        self.substrate = self._default_substrate if substrate is None else substrate
        self.step = step
        self.n_steps = n_steps
        self.apply_softmax = apply_softmax
        self.perturb_batch_size = perturb_batch_size
        if not self.disable_warnings:
            warn.warn_parameterisation(
                metric_name=self.__class__.__name__,
                sensitive_params="the substrate 'substrate' and the step size 'step'",
                citation=_CITATION,
            )

    def __call__(
        self,
        model: Any,
        x_batch: np.ndarray,
        y_batch: np.ndarray,
        a_batch: np.ndarray | None = None,
        s_batch: np.ndarray | None = None,
        channel_first: bool | None = None,
        explain_func: Callable[..., Any] | None = None,
        explain_func_kwargs: dict[str, Any] | None = None,
        model_predict_kwargs: dict[str, Any] | None = None,
        softmax: bool | None = True,
        device: str | None = None,
        batch_size: int = 64,
        **kwargs: Any,
    ) -> list[float]:
        """Per-sample AUCs for ``(x_batch, y_batch, a_batch)``, as every Quantus metric.

        ``x_batch`` is ``(B, C, H, W)`` (or channel-last), ``a_batch`` broadcastable
        to it; when ``a_batch`` is None it is computed with ``explain_func``.
        Returns a list of ``B`` floats (or their aggregate with ``return_aggregate``).
        """
        return super().__call__(
            model=model,
            x_batch=x_batch,
            y_batch=y_batch,
            a_batch=a_batch,
            s_batch=s_batch,
            custom_batch=None,
            channel_first=channel_first,
            explain_func=explain_func,
            explain_func_kwargs=explain_func_kwargs,
            softmax=softmax,
            device=device,
            model_predict_kwargs=model_predict_kwargs,
            batch_size=batch_size,
            **kwargs,
        )

    def evaluate_batch(
        self,
        model: Any,
        x_batch: np.ndarray,
        y_batch: np.ndarray,
        a_batch: np.ndarray,
        **kwargs: Any,
    ) -> list[float]:
        """AUC per sample of one batch; ``model`` is Quantus' wrapped torch model."""
        torch_model = model.get_model()
        device = device_of(torch_model)
        apply_softmax = self.apply_softmax
        if apply_softmax is None:  # a score adapter's own choice (a similarity: none)
            apply_softmax = getattr(torch_model, "default_apply_softmax", None)
        if apply_softmax is None and not getattr(model, "softmax", True):
            apply_softmax = False
        inputs = np.asarray(x_batch)
        is_tokens = np.issubdtype(inputs.dtype, np.integer)  # token ids stay ids
        curve = self._curve(
            torch_model,
            torch.as_tensor(
                inputs, dtype=torch.long if is_tokens else torch.float32, device=device
            ),
            torch.as_tensor(np.asarray(a_batch), dtype=torch.float32, device=device),
            target=torch.as_tensor(np.asarray(y_batch), device=device).long(),
            substrate=self.substrate,
            step=self.step,
            n_steps=self.n_steps,
            apply_softmax=apply_softmax,
            batch_size=self.perturb_batch_size,
        )
        return curve.auc.cpu().tolist()


class Deletion(_CausalMetric):
    """Deletion (Petsiuk et al. 2018): AUC of the target probability as the most
    salient pixels are set to a constant; lower is better."""

    name = "Deletion"
    score_direction = ScoreDirection.LOWER
    _curve = staticmethod(deletion)
    _default_substrate = 0.0


class Insertion(_CausalMetric):
    """Insertion (Petsiuk et al. 2018): AUC of the target probability as the most
    salient pixels are put back on a blurred canvas; higher is better."""

    name = "Insertion"
    score_direction = ScoreDirection.HIGHER
    _curve = staticmethod(insertion)
    _default_substrate = "blur"


def register_with_quantus() -> None:
    """Adds Deletion and Insertion to ``quantus.AVAILABLE_METRICS["Faithfulness"]``."""
    # typed as a Mapping by Quantus, but a dict that Quantus itself fills
    faithfulness = cast(
        dict[str, type[quantus.Metric[Any]]], quantus.AVAILABLE_METRICS["Faithfulness"]
    )
    faithfulness["Deletion"] = Deletion
    faithfulness["Insertion"] = Insertion
