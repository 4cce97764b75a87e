"""The generative predictor's own KV cache: the same signals and confidences as reading the whole query at
every decision, while reading only the new text."""

from __future__ import annotations

import gc
import random
from collections.abc import Iterator

import pytest
import torch

from rscaffold.config import DecodeConfig
from rscaffold.decode import Decoder
from rscaffold.kvbatch import Row, RowCache, completion_trie, score_after
from rscaffold.model import Student, student_from_folder
from rscaffold.schema import Question, Step
from rscaffold.signal_sources import GenerativePredictor
from rscaffold.signals import Signal
from rscaffold.tokenizer import train_bpe
from tests.conftest import tiny_llama

QUERY_LINE = "Next signal:"
# Steps that open with a keyword: the predictor learns which signal follows which step.
STEPS = {
    Signal.CONTRAST: "But wait, 3 + 4 is 7.",
    Signal.ADDITION: "Also, B has 5 apples.",
    Signal.EXAMPLE: "For example, 2 + 2 is 4.",
    Signal.OPINION: "I think the total is 12.",
    Signal.REASONING: "Let me see, 12 - 5 is 7.",
    Signal.CONCLUSION: "So the total is 19.",
}
QUESTIONS = [
    Question(id="q0", text="A has 3 apples."),
    Question(id="q1", text="A has 12 apples and B has 7 apples. How many do they have together?"),
    Question(id="q2", text="C has 4 pears; D has 9 more pears than C."),
]
NEXT = {s: list(STEPS)[(i + 1) % len(STEPS)] for i, s in enumerate(STEPS)}


def prompt(question: str) -> str:
    return f"Question: {question}\nThinking:\n"


def query(question: Question, steps: list[Step]) -> str:
    """The layout of ``decode.predictor_from_folder`` (and of build's predictor pairs)."""
    return prompt(question.text) + "".join(s.text + s.sep for s in steps) + QUERY_LINE


def steps_of(signals: list[Signal]) -> list[Step]:
    return [Step(text=STEPS[s], sep="\n\n", signal=s) for s in signals]


def pairs(n: int, seed: int = 0) -> list[str]:
    """Predictor training texts: a context, then the signal that follows its last step."""
    rng, out = random.Random(seed), []
    for _ in range(n):
        signals = [rng.choice(list(STEPS)) for _ in range(rng.randrange(1, 4))]
        q = rng.choice(QUESTIONS)
        out.append(query(q, steps_of(signals)) + f"\\boxed{{{NEXT[signals[-1]].title}}}")
    return out


@pytest.fixture(scope="module")
def predictor() -> Student:
    """A tiny predictor trained a few steps on its pairs, so that its seven-way distribution is peaked
    and follows the context (a random one is near uniform: every choice would be a near tie)."""
    texts = pairs(48)
    tok = train_bpe(texts + [f"\\boxed{{{s.title}}}" for s in Signal] * 4, vocab_size=320)
    lm = tiny_llama(tok, seed=0, positions=256)
    opt = torch.optim.AdamW(lm.parameters(), lr=1e-2)
    batch = [tok.encode(t, add_special_tokens=False) for t in texts[:16]]
    width = max(map(len, batch))
    ids = torch.tensor([b + [tok.pad_token_id] * (width - len(b)) for b in batch])
    labels = ids.masked_fill(ids == tok.pad_token_id, -100)
    for _ in range(40):
        opt.zero_grad()
        lm(input_ids=ids, labels=labels).loss.backward()
        opt.step()
    return Student(lm=lm.eval(), tokenizer=tok, prompt=prompt)


@pytest.fixture
def widths(predictor) -> Iterator[list[int]]:
    """The number of tokens of each forward of the predictor's backbone during a test."""
    seen: list[int] = []
    hook = predictor.lm.get_decoder().register_forward_pre_hook(
        lambda _, args, kwargs: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    yield seen
    hook.remove()


def common(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def assert_same(fast: GenerativePredictor, slow: GenerativePredictor, rows: list[Row]) -> None:
    """The same distributions within 1e-5, hence the same signals (the predictor's choices are no near ties)."""
    got, want = fast.probs(rows), slow.probs(rows)
    assert (got - want).abs().max() < 1e-5
    assert got.argmax(-1).tolist() == want.argmax(-1).tolist()


def test_row_cache_keeps_only_the_prefix_the_new_ids_share():
    kv = [(torch.arange(8.0).view(1, 1, 4, 2), -torch.arange(8.0).view(1, 1, 4, 2))]
    cache = RowCache()
    cache.append([5, 6, 7, 8], kv)
    assert cache.reuse([5, 6, 9, 8, 1]) == 2 and cache.ids == [5, 6]  # a merge at the old end: re-read from there
    assert cache.reuse([5, 6]) == 1  # the last token is always read again: its hidden state predicts
    cache.append([6, 1], [(k[:, :, 1:3], v[:, :, 1:3]) for k, v in kv])
    cache.reserve(500)  # growing keeps what the cache holds
    assert cache.kv[0][0].shape[2] >= 500
    assert cache.kv[0][0][0, 0, :3].tolist() == [[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]]
    assert cache.kv[0][1][0, 0, 2].tolist() == [-4.0, -5.0]


def test_cached_predictor_equals_reading_the_whole_query_over_several_decisions(predictor, widths):
    """Rows of different lengths decide together and apart, a row answers and one leaves, a new one joins,
    a row is asked twice at one step, and a step that merges across the old end is tokenised as a whole."""
    fast, slow = GenerativePredictor(predictor, query), GenerativePredictor(predictor, query, cache=False)
    rows = [Row(q, []) for q in QUESTIONS]
    assert_same(fast, slow, rows)  # the first decision: three new rows of three lengths, read together
    plan = [Signal.CONTRAST, Signal.CONCLUSION, Signal.REASONING, Signal.OPINION]
    for t, signal in enumerate(plan):
        closing = [r for i, r in enumerate(rows) if (t + i) % 2 == 0]  # rows close their steps at different times
        for r in closing:
            r.steps = [*r.steps, *steps_of([signal])]
        assert_same(fast, slow, closing)
    del closing, r  # the test keeps no row the decoder would have dropped
    assert_same(fast, slow, rows[:1])  # asked again at the same step
    rows[1].answering = True
    del rows[2]
    gc.collect()
    assert_same(fast, slow, rows[:1])
    assert len(fast.caches) == 1  # the row that answers and the row that left took their caches along
    rows = [rows[0], Row(Question(id="q3", text="E has 2 apples."), [])]
    assert_same(fast, slow, rows)  # one row cached, one new
    rows[0].steps = [*rows[0].steps, Step(text="So the to", sep="")]
    assert_same(fast, slow, rows[:1])
    before = fast.caches[id(rows[0])][1].ids.copy()
    context = predictor.encode(query(rows[0].question, rows[0].steps).removesuffix(QUERY_LINE))
    rows[0].steps = [*rows[0].steps, Step(text="tal is 19.", sep="\n\n")]  # "to" + "tal": another tokenisation
    ids = predictor.encode(query(rows[0].question, rows[0].steps))
    mark = len(widths)
    assert_same(fast, slow, rows[:1])
    kept = common(before, ids)
    assert kept < len(context)  # the old context's last token went: it is read again, merged
    assert len(ids) - kept < len(ids) // 2  # the rest of the cache was read, not the whole query
    # "\\boxed{" is read once, then each token that predicts another once, however many completions share it.
    shared = min(common(fast.completions[0], c) for c in fast.completions[1:])
    trie = {tuple(c[shared : shared + u]) for c in fast.completions for u in range(1, len(c) - shared)}
    assert widths[mark] == len(ids) - kept + shared + len(trie)


@pytest.mark.parametrize("prune", [False, True])
def test_decoding_with_the_cached_predictor_writes_what_the_uncached_writes(predictor, served_student, prune):
    """Continuous batching: 2 rows at a time over 4 questions, rows leave and others join mid-decoding."""
    proposer = student_from_folder(served_student)
    questions = [*QUESTIONS, Question(id="q3", text="E has 2 apples and F has 6.")]
    cfg = DecodeConfig(batch_size=2, max_steps=4, max_step_tokens=12, max_tokens=80, max_answer_tokens=6, tau=0.0)
    cfg = cfg.model_copy(update={"prune": prune})

    def query_of(question: Question, steps: list[Step]) -> str:
        return proposer.prompt(question.text) + "".join(s.text + s.sep for s in steps) + QUERY_LINE

    fast = GenerativePredictor(predictor, query_of)
    out = {}
    for name, source in [("fast", fast), ("slow", GenerativePredictor(predictor, query_of, cache=False))]:
        out[name] = list(Decoder(proposer, source, cfg)(questions))
    assert sum(len(d.steps) for d in out["slow"]) >= 6
    for a, b in zip(out["fast"], out["slow"], strict=True):
        assert [(s.text, s.signal) for s in a.steps] == [(s.text, s.signal) for s in b.steps]
        assert [s.confidence for s in a.steps] == pytest.approx([s.confidence for s in b.steps], abs=1e-5)
        assert a.answer_text == b.answer_text
    gc.collect()
    assert fast.caches == {}


@pytest.mark.parametrize(
    "family",
    [
        "llama",
        "gemma2",  # a sliding window shorter than the text, beside full-attention layers
        "gpt2",  # learned positions
        pytest.param("qwen2", marks=pytest.mark.slow),
        pytest.param("qwen3", marks=pytest.mark.slow),
        pytest.param("gemma3", marks=pytest.mark.slow),
        pytest.param("phi3", marks=pytest.mark.slow),
        pytest.param("phi", marks=pytest.mark.slow),
    ],
)
def test_cached_scoring_equals_the_whole_query_in_each_model_family(predictor, family):
    from tests.test_architectures import FAMILIES

    torch.manual_seed(0)
    lm = FAMILIES[family].build(predictor.tokenizer).eval()
    with torch.no_grad():
        for p in lm.parameters():
            p.mul_(3)  # away from uniform
    student = Student(lm=lm, tokenizer=predictor.tokenizer, prompt=prompt)
    fast, slow = GenerativePredictor(student, query), GenerativePredictor(student, query, cache=False)
    assert fast.cache
    rows = [Row(q, []) for q in QUESTIONS]
    for t in range(5):
        for i, row in enumerate(rows):
            row.steps = steps_of([list(STEPS)[(t + j) % len(STEPS)] for j in range(max(0, t - i))])
        assert_same(fast, slow, rows if t % 2 else rows[t % 3 :])


# Completions as token ids: the seven signal names, and made-up ones that branch at several depths, end
# inside another (9, 8) and share no first token (the common part is empty).
BRANCHING = [[9, 8, 7, 6], [9, 8, 7, 5], [9, 8], [9, 4, 3], [11, 12, 13, 14, 15], [11, 12, 16]]


@pytest.mark.parametrize("kind", ["signals", "branching"])
def test_score_after_sums_each_completion_log_probabilities(predictor, kind):
    """Against one plain forward per completion, for a new row and then for one whose cache is read."""
    tok = predictor.tokenizer
    signals = [tok.encode(f"\\boxed{{{s.title}}}", add_special_tokens=False) for s in Signal]
    completions = signals if kind == "signals" else BRANCHING
    cache = RowCache()
    for steps in ([Signal.CONTRAST], [Signal.CONTRAST, Signal.OPINION]):
        ids = predictor.encode(query(QUESTIONS[1], steps_of(steps)))
        got = score_after(predictor, [cache], [ids], completion_trie(completions))[0]
        with torch.no_grad():
            for c, score in zip(completions, got, strict=True):
                logp = predictor.lm(input_ids=torch.tensor([ids + c])).logits[0, len(ids) - 1 : -1].log_softmax(-1)
                assert float(score) == pytest.approx(float(logp.gather(-1, torch.tensor(c)[:, None]).sum()), abs=1e-4)
