"""RISE and HSIC inside Captum's LLM attribution: which words of a prompt made a model say this.

Captum's :class:`captum.attr.LLMAttribution` hands its perturbation method a
``(1, n_features)`` presence vector of interpretable features (the words or
segments of a :class:`~captum.attr.TextTemplateInput`, the tokens of a
:class:`~captum.attr.TextTokenInput`, the regions of an
:class:`~captum.attr.ImageMaskInput`) and scores every perturbed vector with
the language model: the log-probability of the answer, and with per-token
methods the log-probability of each of its tokens. That is RISE's setting,
random binary masks over features, and the modern form of the RISE paper's
captioning experiment. Captum accepts only its own methods there;
:class:`LLMAttribution` is Captum's class with RISE and HSIC added::

    from captum.attr import TextTemplateInput
    from captum_rise import RISE
    from captum_rise.llm import LLMAttribution

    llm_attr = LLMAttribution(RISE(model), tokenizer)
    result = llm_attr.attribute(
        TextTemplateInput("{} lives in {}. She speaks", values=["Anna", "Paris"]),
        target=" French",
        n_masks=256,
        seed=0,
    )
    result.seq_attr  # (n_features,): one value per word of the template
    result.token_attr  # (n_answer_tokens, n_features), RISE only
    result.plot_seq_attr(); result.plot_token_attr()

RISE gives sequence-level and per-token attributions (the answer's tokens are
explained from the same forwards); HSIC gives sequence-level ones, as Captum's
Lime and KernelShap do. Captum's LLM forward scores one perturbed input per
call, so ``perturbations_per_eval`` is 1 (the only value it accepts). Every
mask costs one forward of the model per answer token with Captum's default
``forward_in_tokens=True``: a few hundred masks (``n_masks``, ``n_designs``)
are plenty for tens of features. The model needs no ``transformers`` import
here: any Hugging Face style causal LM works (``pip install
captum-perturbation[llm]`` installs ``transformers``).
"""

from typing import Any

from captum.attr import InterpretableInput, LLMAttributionResult
from captum.attr import LLMAttribution as CaptumLLMAttribution
from torch import Tensor

from captum_rise.hsic import HSICAttribution
from captum_rise.rise import RISE

OUR_METHODS = (RISE, HSICAttribution)


class LLMAttribution(CaptumLLMAttribution):
    """Captum's :class:`captum.attr.LLMAttribution`, also for :class:`~captum_rise.RISE`
    (sequence-level and per-token) and :class:`~captum_rise.HSICAttribution`
    (sequence-level).

    Args:
        attr_method: an instance of RISE or HSICAttribution (or of a method
            Captum's class supports) built on a Hugging Face style causal LM.
        tokenizer: the model's tokenizer.
        attr_target: ``"log_prob"`` (default) or ``"prob"``, as Captum's.
    """

    # Captum's tuples are typed as exactly its own methods; ours extend them.
    SUPPORTED_METHODS = (*CaptumLLMAttribution.SUPPORTED_METHODS, *OUR_METHODS)  # type: ignore[assignment]
    SUPPORTED_PER_TOKEN_ATTR_METHODS = (  # type: ignore[assignment]
        *CaptumLLMAttribution.SUPPORTED_PER_TOKEN_ATTR_METHODS,
        RISE,
    )

    def attribute(
        self,
        inp: InterpretableInput,
        target: str | Tensor | None = None,
        num_trials: int = 1,
        gen_args: dict[str, Any] | None = None,
        use_cached_outputs: bool = True,
        _inspect_forward: Any = None,
        forward_in_tokens: bool = True,
        **kwargs: Any,
    ) -> LLMAttributionResult:
        """Captum's ``LLMAttribution.attribute``; ``kwargs`` go to the method's
        ``attribute`` (``n_masks``, ``n_designs``, ``seed``, ``show_progress``...).

        Raises:
            ValueError: ``perturbations_per_eval`` other than 1 for RISE or HSIC
                (Captum's LLM forward scores one perturbed input per call).
        """
        if isinstance(self.attr_method, OUR_METHODS):
            per_eval = kwargs.setdefault("perturbations_per_eval", 1)
            if per_eval != 1:
                raise ValueError(
                    "perturbations_per_eval must be 1 inside LLMAttribution: Captum's LLM "
                    f"forward scores one perturbed input per call, got {per_eval!r}"
                )
        return super().attribute(
            inp,
            target=target,
            num_trials=num_trials,
            gen_args=gen_args,
            use_cached_outputs=use_cached_outputs,
            _inspect_forward=_inspect_forward,
            forward_in_tokens=forward_in_tokens,
            **kwargs,
        )
