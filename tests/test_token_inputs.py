"""Integer inputs (token ids, category codes) and Captum's output conventions (issue 20).

Ground truth: models whose decision rests on one known token or column.
"""

import numpy as np
import pytest
import torch
from torch import nn

from captum_rise import RISE, HSICAttribution
from captum_rise.quantus_explain import explain

VOCAB, LENGTH, PAD, KEY = 30, 12, 0, 7


def token_batch(n, generator, with_key):
    """``(n, LENGTH)`` ids in ``8..VOCAB-1`` (never ``KEY`` nor ``PAD``), ``KEY`` at a
    random position where ``with_key``."""
    ids = torch.randint(8, VOCAB, (n, LENGTH), generator=generator)
    positions = torch.randint(0, LENGTH, (n,), generator=generator)
    ids[with_key, positions[with_key]] = KEY
    return ids, positions


@pytest.fixture(scope="module")
def token_classifier():
    """An embedding-bag classifier trained here: label 1 iff token ``KEY`` occurs."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.EmbeddingBag(VOCAB, 8, mode="sum"), nn.Linear(8, 2))
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(300):
        labels = torch.rand(64, generator=generator) < 0.5
        ids, _ = token_batch(64, generator, labels)
        loss = nn.functional.cross_entropy(model(ids), labels.long())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    ids, _ = token_batch(200, generator, torch.ones(200, dtype=torch.bool))
    assert bool((model(ids).argmax(1) == 1).float().mean() > 0.95)
    return lambda x: torch.softmax(model(x), dim=1)


def key_sentences():
    generator = torch.Generator().manual_seed(5)
    return token_batch(3, generator, torch.ones(3, dtype=torch.bool))


@pytest.mark.parametrize("method", ["rise", "hsic"])
def test_the_deciding_token_gets_the_largest_attribution(token_classifier, method):
    ids, positions = key_sentences()
    if method == "rise":
        maps = RISE(token_classifier).attribute(ids, target=1, baselines=PAD, n_masks=500, seed=0)
    else:
        maps = HSICAttribution(token_classifier).attribute(
            ids, target=1, baselines=PAD, n_designs=256, seed=0
        )
    assert maps.shape == ids.shape and maps.dtype == torch.float32
    assert torch.equal(maps.argmax(dim=1), positions)


def test_word_groups_of_several_tokens(token_classifier):
    """A word made of two sub-word tokens is one group: its positions share a value."""
    ids, positions = key_sentences()
    ids, position = ids[:1].clone(), int(positions[0])
    neighbour = position + 1 if position + 1 < LENGTH else position - 1
    words = torch.arange(LENGTH)
    words[neighbour] = words[position]  # KEY and its neighbour form one word
    maps = RISE(token_classifier).attribute(
        ids, target=1, baselines=PAD, feature_mask=words[None], n_masks=400, seed=1
    )
    assert maps[0, position] == maps[0, neighbour]
    assert int(maps[0].argmax()) in (position, neighbour)


def test_per_position_baselines_replace_masked_tokens():
    """Masked positions take the baseline tensor's ids, kept ones the input's, never a blend."""
    seen = []

    def model(ids):
        seen.append(ids.clone())
        return torch.ones(ids.shape[0], 2)

    ids = torch.arange(10, 16).reshape(1, 6)
    baseline = torch.arange(100, 106).reshape(1, 6)
    RISE(model).attribute(ids, target=0, baselines=baseline, n_masks=32, seed=0)
    rows = torch.cat(seen)
    assert rows.dtype == torch.int64
    assert bool(((rows == ids) | (rows == baseline)).all())
    assert bool((rows == baseline).any()) and bool((rows == ids).any())


def test_categorical_codes_table():
    """Column 2's code decides the class; the other columns are noise."""
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 5, (4, 6), generator=generator)
    codes[:, 2] = 3

    def model(table):
        hit = (table[:, 2] == 3).float()
        return torch.stack([1 - hit, hit], dim=1)

    unknown = torch.full((1, 6), 9)  # an 'unknown' code per column
    for method in (RISE(model), HSICAttribution(model)):
        maps = method.attribute(codes, target=1, baselines=unknown, seed=0)
        assert maps.shape == codes.shape
        assert bool((maps.argmax(dim=1) == 2).all())


def test_attribute_classes_on_token_ids(token_classifier):
    ids, positions = key_sentences()
    maps = RISE(token_classifier).attribute_classes(ids, baselines=PAD, n_masks=300, seed=0)
    assert maps.shape == (3, 2, LENGTH)
    assert torch.equal(maps[:, 1].argmax(dim=1), positions)


def test_quantus_explain_keeps_token_ids(token_classifier):
    ids, positions = key_sentences()
    maps = explain(
        lambda x: token_classifier(torch.as_tensor(x)),
        ids.numpy(),
        np.ones(3, dtype=np.int64),
        method="RISE",
        softmax=False,
        device="cpu",
        baselines=PAD,
        n_masks=300,
        seed=0,
    )
    assert maps.shape == (3, LENGTH)
    assert np.array_equal(maps.argmax(axis=1), positions.numpy())


def test_bad_baselines_and_options_for_integer_inputs(token_classifier):
    ids, _ = key_sentences()
    rise = RISE(token_classifier)
    with pytest.raises(TypeError, match="baselines"):
        rise.attribute(ids, target=1, baselines=0.5)
    with pytest.raises(TypeError, match="baselines"):
        rise.attribute(ids, target=1, baselines=torch.zeros(1, LENGTH))
    with pytest.raises(ValueError, match="feature_mask"):
        rise.attribute(ids, target=1, grid_size=4)


def test_a_scalar_per_single_perturbed_input_as_feature_ablation_allows():
    calls = []

    def scalar_model(ids):
        calls.append(ids.shape[0])
        return (ids == KEY).float().sum() * 2.0  # 0-d

    ids = torch.tensor([[9, 9, KEY, 9]])
    maps = RISE(scalar_model).attribute(ids, n_masks=200, perturbations_per_eval=1, seed=0)
    assert set(calls) == {1}
    # closed form of RISE's map, E[f M_j] / p_keep with f = 2 M_key: 2 at the key, 2 p = 1 elsewhere
    torch.testing.assert_close(maps, torch.tensor([[1.0, 1.0, 2.0, 1.0]]), atol=0.1, rtol=0)


def test_several_outputs_without_target_give_one_map_each():
    """(N, K) outputs with target=None (per-token log-probabilities, several heads)."""

    def two_heads(x):
        return torch.stack([x[:, 1] * 3.0, x[:, 4] * 2.0], dim=1)

    x = torch.rand(2, 6)
    rise = RISE(two_heads)
    maps = rise.attribute(x, n_masks=300, seed=0)
    _, delta = rise.attribute(x, n_masks=300, seed=0, return_convergence_delta=True)
    assert maps.shape == (2, 2, 6) and delta.shape == (2, 2)
    assert torch.equal(maps[:, 0].argmax(dim=1), torch.tensor([1, 1]))
    assert torch.equal(maps[:, 1].argmax(dim=1), torch.tensor([4, 4]))
    torch.testing.assert_close(maps, rise.attribute_classes(x, n_masks=300, seed=0))
