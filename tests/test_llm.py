"""RISE and HSIC inside Captum's LLMAttribution, on a small GPT-2 trained here (issue 20).

The toy task (``captum_rise.testing.toy_language_model``): "anna lives in rome and drinks
tea . she speaks" -> "italian fluently"; only the city decides the language.
"""

from types import SimpleNamespace

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("transformers")

from captum.attr import FeatureAblation, ImageMaskInput, TextTemplateInput, TextTokenInput
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


class RegionVLM(torch.nn.Module):
    """A stand-in for a vision-language model: its next token is ``answer`` with a
    probability that grows with the darkness of the image's top-right quarter."""

    def __init__(self, vocab_size: int, answer: int) -> None:
        super().__init__()
        self.vocab_size, self.answer = vocab_size, answer
        self.scale = torch.nn.Parameter(torch.tensor(8.0), requires_grad=False)

    def forward(self, input_ids, attention_mask=None, pixel_values=None, **kwargs):
        darkness = 1.0 - pixel_values[:, :, :8, 8:].mean()
        logits = torch.zeros(1, input_ids.shape[1], self.vocab_size)
        logits[..., self.answer] = self.scale * darkness
        return SimpleNamespace(logits=logits)


def test_image_mask_input_regions(language_model):
    """ImageMaskInput: the region the model looks at ranks first (float presence vector)."""
    _, tokenizer = language_model
    answer = tokenizer.convert_tokens_to_ids("italian")
    pixels = np.full((16, 16, 3), 128, dtype=np.uint8)
    pixels[:8, 8:] = 0  # the dark top-right quarter
    regions = torch.zeros(16, 16, dtype=torch.int64)
    regions[:8, 8:], regions[8:, :8], regions[8:, 8:] = 1, 2, 3

    def processor(image):
        values = torch.as_tensor(np.array(image), dtype=torch.float32).permute(2, 0, 1) / 255
        return {"input_ids": torch.tensor([[2, 3]]), "pixel_values": values[None]}

    inp = ImageMaskInput(Image.fromarray(pixels), mask=regions, processor_fn=processor)
    result = LLMAttribution(RISE(RegionVLM(len(tokenizer), answer)), tokenizer).attribute(
        inp, target=torch.tensor([answer]), n_masks=64, seed=0, forward_in_tokens=False
    )
    assert result.seq_attr.shape == (4,)
    assert int(result.seq_attr.argmax()) == 1
