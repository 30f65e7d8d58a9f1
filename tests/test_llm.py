"""RISE and HSIC inside Captum's LLMAttribution, on a small GPT-2 trained here (issue 20).

The toy task (``captum_rise.testing.toy_language_model``): "anna lives in rome and drinks
tea . she speaks" -> "italian fluently"; only the city decides the language.
"""

import matplotlib
import pytest
import torch

pytest.importorskip("transformers")

from captum.attr import FeatureAblation, TextTemplateInput, TextTokenInput
from captum.attr import LLMAttribution as CaptumLLMAttribution

from captum_rise import RISE, HSICAttribution
from captum_rise.llm import LLMAttribution
from captum_rise.testing import NEUTRAL_WORDS, PROMPT, toy_language_model

matplotlib.use("Agg")
VALUES = ["anna", "rome", "tea", "she"]
CITY = VALUES.index("rome")
TARGET = "italian fluently"


@pytest.fixture(scope="module")
def language_model():
    model, tokenizer = toy_language_model(seed=0)
    ids = torch.tensor([tokenizer.encode(PROMPT.format(*VALUES))])
    with torch.no_grad():
        probabilities = model(input_ids=ids).logits[0, -1].softmax(-1)
    assert tokenizer.convert_ids_to_tokens(int(probabilities.argmax())) == "italian"
    return model, tokenizer


def template():
    return TextTemplateInput(PROMPT, values=VALUES, baselines=NEUTRAL_WORDS)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rise_ranks_the_deciding_word_first_sequence_and_per_token(language_model, seed):
    model, tokenizer = language_model
    result = LLMAttribution(RISE(model), tokenizer).attribute(
        template(), target=TARGET, n_masks=64, seed=seed
    )
    assert result.seq_attr.shape == (len(VALUES),)
    assert int(result.seq_attr.argmax()) == CITY
    assert result.token_attr.shape == (2, len(VALUES))  # "italian", "fluently"
    assert int(result.token_attr[0].argmax()) == CITY
    assert result.output_tokens == ["italian", "fluently"]


def test_shapes_are_those_of_captums_feature_ablation(language_model):
    model, tokenizer = language_model
    ours = LLMAttribution(RISE(model), tokenizer).attribute(
        template(), target=TARGET, n_masks=32, seed=0, forward_in_tokens=False
    )
    reference = CaptumLLMAttribution(FeatureAblation(model), tokenizer).attribute(
        template(), target=TARGET, forward_in_tokens=False
    )
    assert ours.seq_attr.shape == reference.seq_attr.shape
    assert ours.token_attr.shape == reference.token_attr.shape
    assert int(reference.seq_attr.argmax()) == int(ours.seq_attr.argmax()) == CITY
    figure, _ = ours.plot_seq_attr()
    assert figure is not None
    figure, _ = ours.plot_token_attr()
    assert figure is not None


def test_hsic_sequence_attribution(language_model):
    model, tokenizer = language_model
    result = LLMAttribution(HSICAttribution(model), tokenizer).attribute(
        template(), target=TARGET, n_designs=64, seed=0
    )
    assert int(result.seq_attr.argmax()) == CITY
    assert result.token_attr is None  # sequence-level only, like Captum's Lime and KernelShap


def test_token_input_integer_presence_vector(language_model):
    """TextTokenInput hands RISE an int64 presence vector; removed tokens become the baseline id."""
    model, tokenizer = language_model
    text = PROMPT.format(*VALUES)
    inp = TextTokenInput(text, tokenizer, baselines=tokenizer.convert_tokens_to_ids("somewhere"))
    assert not inp.to_tensor().is_floating_point()
    result = LLMAttribution(RISE(model), tokenizer).attribute(
        inp, target=TARGET, n_masks=128, seed=0
    )
    words = text.split()
    assert result.seq_attr.shape == (len(words),)
    content = {word: float(result.seq_attr[words.index(word)]) for word in VALUES}
    assert max(content, key=content.get) == "rome"


def test_one_perturbed_input_per_call(language_model):
    model, tokenizer = language_model
    with pytest.raises(ValueError, match="perturbations_per_eval"):
        LLMAttribution(RISE(model), tokenizer).attribute(
            template(), target=TARGET, n_masks=8, perturbations_per_eval=4
        )
    with pytest.raises(AssertionError):  # why the subclass exists: Captum's own refuses RISE
        CaptumLLMAttribution(RISE(model), tokenizer)
