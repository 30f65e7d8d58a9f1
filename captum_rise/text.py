"""Text: word groups from a Hugging Face tokenizer, and sentence encoders as embedders.

RISE and HSIC explain token ids ``(B, T)`` by keeping or replacing groups of
tokens (``feature_mask``). For text the natural group is the word, and the
tokens a tokenizer adds (``[CLS]``, ``[SEP]``, padding) must never be
removed:

.. code-block:: python

    encoding = tokenizer(["A man is playing a guitar."], return_tensors="pt")
    words = word_groups(encoding, texts=["A man is playing a guitar."])
    encoder = SentenceEncoder(AutoModel.from_pretrained(path), tokenizer.pad_token_id)
    score = SimilarityScore(encoder, encoder(other["input_ids"]))
    maps = RISE(score).attribute(
        encoding["input_ids"], feature_mask=words.feature_mask,
        baselines=encoder.deletion_baseline, normalization="difference",
    )
    words.values(maps)  # (B, W): one value per word

**Deleting a word: ``[PAD]`` or ``[MASK]``.** With ``baselines=pad_token_id``
and :class:`SentenceEncoder`, whose attention mask is derived from the ids, a
removed word is *deleted*: no token attends to it, as if it had not been
written (the remaining tokens keep their positions). Replacing it with
``[MASK]`` (``baselines=tokenizer.mask_token_id``) instead leaves a token the
model attends to, a blank whose content the model guesses: the question
becomes "what if this word were unknown" rather than "what if it were not
there". An attention mask passed through ``additional_forward_args`` would
stay 1 on the ``[PAD]`` tokens RISE put in, and the model would attend to
padding it never saw in training; :class:`SentenceEncoder` combines such a
mask with the ids, so it is safe to pass one.

``transformers`` is not imported here: any tokenizer output with
``word_ids`` (a fast tokenizer's ``BatchEncoding``) and any model returning
``last_hidden_state`` (or a tensor) work.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from captum_rise.masks import ALWAYS_KEPT

WORD_REDUCTIONS = ("mean", "sum")


@dataclass
class WordGroups:
    """Word groups of a batch of token ids, for ``feature_mask``.

    Attributes:
        feature_mask: ``(B, T)`` int64: the word of each token, numbered from 0
            per example (the second text of a pair after the first's), and
            :data:`captum_rise.masks.ALWAYS_KEPT` for special tokens and padding.
        words: per example, the text of each word (``words[b][w]``).
    """

    feature_mask: Tensor
    words: list[list[str]]

    @property
    def n_words(self) -> list[int]:
        """The number of words of each example."""
        return [len(w) for w in self.words]

    def values(self, attributions: Tensor, reduce: str = "mean") -> Tensor:
        """One value per word from token-level attributions.

        Args:
            attributions: ``(B, T)`` (or ``(B, K, T)``: several targets) values
                per token.
            reduce: ``"mean"`` (default; RISE and HSIC give every token of a
                group the group's value, so this is that value) or ``"sum"``
                (for token-level methods such as Integrated Gradients).

        Returns:
            ``(B, W)`` (or ``(B, K, W)``) float values, ``W`` the largest
            number of words; entries past an example's last word are NaN.
        """
        if reduce not in WORD_REDUCTIONS:
            raise ValueError(f"reduce must be one of {WORD_REDUCTIONS}, got {reduce!r}")
        if not isinstance(attributions, Tensor):
            raise TypeError(
                f"attributions must be a torch.Tensor, got {type(attributions).__name__}"
            )
        squeeze = attributions.dim() == 2
        values = attributions[:, None] if squeeze else attributions
        if values.dim() != 3 or (values.shape[0], values.shape[2]) != tuple(
            self.feature_mask.shape
        ):
            raise ValueError(
                f"attributions of shape {tuple(attributions.shape)} do not match the word "
                f"groups of shape {tuple(self.feature_mask.shape)}: (B, T) or (B, K, T) needed"
            )
        n_words = max(self.n_words, default=0)
        groups = self.feature_mask.to(values.device)
        counted = groups != ALWAYS_KEPT
        index = groups.clamp_min(0)[:, None].expand_as(values)
        source = values.double() * counted[:, None]
        sums = source.new_zeros(values.shape[0], values.shape[1], n_words)
        sums.scatter_add_(2, index, source)
        counts = source.new_zeros(values.shape[0], 1, n_words)
        counts.scatter_add_(2, index[:, :1], counted[:, None].double())
        result = sums / counts if reduce == "mean" else sums
        result = result.masked_fill(counts == 0, float("nan")).to(torch.float32)
        return result[:, 0] if squeeze else result


def word_groups(encoding: Any, texts: Sequence[str] | None = None) -> WordGroups:
    """Word groups of a tokenizer's output: special tokens and padding always kept.

    Args:
        encoding: what a fast Hugging Face tokenizer returns for a batch (a
            ``BatchEncoding`` with ``word_ids(b)``; ``sequence_ids(b)``
            separates the two texts of a pair).
        texts: the tokenized texts (single texts, not pairs), to give each
            word its exact text; without them a word is its tokens joined
            (WordPiece's ``##`` removed).

    Returns:
        :class:`WordGroups`.

    Raises:
        TypeError: ``encoding`` has no ``word_ids`` (a slow tokenizer: use
            ``use_fast=True``).
    """
    if not callable(getattr(encoding, "word_ids", None)):
        raise TypeError(
            "encoding must be a fast tokenizer's BatchEncoding (with word_ids); got "
            f"{type(encoding).__name__}: load the tokenizer with use_fast=True"
        )
    input_ids = encoding["input_ids"]
    n_examples = len(input_ids)
    if texts is not None and len(texts) != n_examples:
        raise ValueError(f"texts must have one text per example ({n_examples}), got {len(texts)}")
    rows, words = [], []
    for b in range(n_examples):
        word_ids = encoding.word_ids(b)
        sequence_ids = encoding.sequence_ids(b)
        # (text of the pair, word): the second text's words are numbered after the first's
        keys = [None if w is None else (s or 0, w) for w, s in zip(word_ids, sequence_ids)]
        order = sorted({k for k in keys if k is not None})
        number = {k: i for i, k in enumerate(order)}
        rows.append([ALWAYS_KEPT if k is None else number[k] for k in keys])
        tokens = encoding.tokens(b) if callable(getattr(encoding, "tokens", None)) else None
        words.append([_word_text(encoding, b, k, keys, tokens, texts) for k in order])
    return WordGroups(torch.tensor(rows, dtype=torch.int64), words)


def _word_text(
    encoding: Any,
    example: int,
    key: tuple[int, int],
    keys: list[tuple[int, int] | None],
    tokens: list[str] | None,
    texts: Sequence[str] | None,
) -> str:
    sequence, word = key
    if texts is not None and sequence == 0:
        span = encoding.word_to_chars(example, word)
        return texts[example][span.start : span.end]
    if tokens is None:
        return f"word {word}"
    pieces = [t for t, k in zip(tokens, keys) if k == key]
    return "".join(p[2:] if p.startswith("##") else p for p in pieces)


POOLINGS = ("mean", "cls")


class SentenceEncoder(torch.nn.Module):
    """A Hugging Face encoder as an embedder of token ids, pooled as sentence-transformers does.

    ``encoder(input_ids)`` ``(N, T)`` -> ``(N, D)`` embeddings, for
    :class:`captum_rise.SimilarityScore`. The attention mask is derived from
    the ids (``input_ids != pad_token_id``, combined with an ``attention_mask``
    when one is passed), so a word RISE replaced by ``[PAD]`` is deleted, not
    attended to (see the module docstring).

    Args:
        model: called as ``model(input_ids=..., attention_mask=...)``; returns
            an object with ``last_hidden_state`` ``(N, T, D)`` (a
            ``transformers`` ``AutoModel``) or that tensor.
        pad_token_id: the tokenizer's padding id, also the
            :attr:`deletion_baseline`.
        pooling: ``"mean"`` (default, all-MiniLM-L6-v2 and most
            sentence-transformers) over the attended tokens, or ``"cls"``.
        normalize: L2-normalise the embeddings (default True, as
            sentence-transformers' ``Normalize`` module).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        pad_token_id: int,
        pooling: str = "mean",
        normalize: bool = True,
    ) -> None:
        super().__init__()
        if not callable(model):
            raise TypeError(f"model must be callable, got {type(model).__name__}")
        if isinstance(pad_token_id, bool) or not isinstance(pad_token_id, int):
            raise TypeError(f"pad_token_id must be an int, got {type(pad_token_id).__name__}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.model = model
        self.pad_token_id = pad_token_id
        self.pooling = pooling
        self.normalize = normalize

    @property
    def deletion_baseline(self) -> int:
        """The id that deletes a token: ``baselines=`` for RISE/HSIC and the substrate of
        :func:`captum_rise.metrics.deletion` on token ids."""
        return self.pad_token_id

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> Tensor:
        if not isinstance(input_ids, Tensor) or input_ids.is_floating_point():
            raise TypeError("input_ids must be an integer tensor (N, T) of token ids")
        attended = input_ids != self.pad_token_id
        if attention_mask is not None:
            attended = attended & attention_mask.to(input_ids.device).bool()
        output = self.model(input_ids=input_ids, attention_mask=attended.long())
        hidden = output if isinstance(output, Tensor) else output.last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = attended[..., None].to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)
        return torch.nn.functional.normalize(pooled, dim=1) if self.normalize else pooled
