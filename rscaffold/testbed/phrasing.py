"""How testbed facts and questions are worded: templates per relation, name and item pools.

The last template of every list, the last names of the pool and the last items are held out of
training and used only by the ``test_surface`` split, so that split measures whether a student
reads the relation rather than memorising its wording.
"""

from __future__ import annotations

# Placeholders: {x} the quantity being defined, {a} and {b} its operands (first, second), {c} the
# constant operand, {v} a given value, {item} the counted object.
TEMPLATES: dict[str, list[str]] = {
    "given": [
        "{x} has {v} {item}.",
        "{x} owns {v} {item}.",
        "{x} starts with {v} {item}.",
        "There are {v} {item} with {x}.",
    ],
    "add_qc": [
        "{x} has {c} more {item} than {a}.",
        "{x} has as many {item} as {a}, plus {c}.",
        "{x} has {c} {item} more than {a} does.",
        "Compared with {a}, {x} has {c} extra {item}.",
    ],
    "add_qq": [
        "{x} has as many {item} as {a} and {b} together.",
        "{x} has as many {item} as {a} and {b} combined.",
        "The {item} of {a} and {b} add up to what {x} has.",
        "{x} holds the total of {a}'s and {b}'s {item}.",
    ],
    "sub_qc": [
        "{x} has {c} fewer {item} than {a}.",
        "{x} has {c} {item} less than {a} does.",
        "{a} has {c} more {item} than {x}.",
        "{x} is {c} {item} short of what {a} has.",
    ],
    "sub_qq": [
        "{x} has as many {item} as {a} has more than {b}.",
        "{x} has the difference between {a}'s and {b}'s {item}.",
        "Take {b}'s {item} away from {a}'s and you get what {x} has.",
        "{a} has exactly {x}'s and {b}'s {item} together.",
    ],
    "sub_cq": [
        "{x} and {b} have {c} {item} together.",
        "Together, {x} and {b} own {c} {item}.",
        "{x} has what is left of {c} {item} after taking away {b}'s.",
        "If {x} got all of {b}'s {item}, {x} would have {c}.",
    ],
    "mul_qc": [
        "{x} has {c} times as many {item} as {a}.",
        "{x} has {c} times the {item} of {a}.",
        "{a}'s {item}, taken {c} times, is what {x} has.",
        "For every one of {a}'s {item}, {x} has {c}.",
    ],
    "mul_qq": [
        "{x} has as many {item} as {a} times {b}.",
        "{x} has {a}'s {item} multiplied by {b}'s {item}.",
        "Multiply {a}'s {item} by {b}'s to get what {x} has.",
        "{x} has the product of {a}'s and {b}'s {item}.",
    ],
    "div_qc": [
        "{x} has {a}'s {item} divided by {c}.",
        "{a} has {c} times as many {item} as {x}.",
        "Split {a}'s {item} into {c} equal parts; {x} has one part.",
        "{x}'s {item} times {c} equal {a}'s.",
    ],
    "div_qq": [
        "{x} has {a}'s {item} divided by {b}'s {item}.",
        "{x} has as many {item} as {a}'s divided by {b}'s.",
        "Split {a}'s {item} into as many equal parts as {b} has; {x} has one part.",
        "{x}'s {item} times {b}'s equal {a}'s.",
    ],
}

INVERSE: dict[str, tuple[int, ...]] = {
    "sub_qc": (2,),
    "sub_qq": (3,),
    "sub_cq": (0, 1, 3),
    "div_qc": (1, 3),
    "div_qq": (3,),
}
"""Wordings easy to misread: their words name the inverse operation ("{a} has {c} more than {x}" is a
difference, "{a} has {c} times as many as {x}" a division). The informative teacher checks them first."""

QUESTIONS = [
    "How many {item} does {x} have?",
    "What is the number of {item} {x} has?",
    "Find how many {item} {x} has.",
    "Count the {item} that {x} has.",
]

# "I" is left out: "I has 5 marbles" reads as a pronoun.
LETTERS = list("ABCDEFGHJKLMNOPQRSTUVWXYZ")
# People and containers interleaved, so any prefix of the pool holds both.
WORDS = [
    "Ana",
    "Ben",
    "the red box",
    "Cal",
    "Dev",
    "the blue jar",
    "Eli",
    "Fay",
    "the big crate",
    "Gus",
    "Hal",
    "the small bag",
    "Ivy",
    "Jon",
    "the green bin",
    "Kai",
    "Lea",
    "the old chest",
    "Max",
    "Nia",
    "the tall vase",
    "Oto",
    "Pam",
    "the paper bag",
    "Quin",
    "Rex",
    "the tin can",
    "Sam",
    "Tia",
    "the wide basket",
    "Uma",
    "Vic",
    "the glass bowl",
    "Wes",
    "Yui",
    "the wooden tray",
    "Zoe",
    "Amir",
    "the plastic tub",
    "Bea",
    "Cora",
    "the cloth sack",
    "Dina",
    "Emil",
    "Finn",
    "Gia",
    "Hugo",
    "Ines",
]
NAME_POOLS = {"letters": LETTERS, "words": WORDS}

ITEMS = ["marbles", "stickers", "apples", "coins", "shells", "stamps", "beads", "cards", "pencils", "buttons"]
SURFACE_ITEMS = 2
"""The last items of ``ITEMS`` appear only in ``test_surface``."""


def template_choices(key: str, surface: bool) -> list[int]:
    """Indices of the templates of ``key`` a split may use: held-out ones for ``test_surface``."""
    n = len(TEMPLATES[key]) if key != "question" else len(QUESTIONS)
    return [n - 1] if surface else list(range(n - 1))


def item_pool(surface: bool) -> list[str]:
    """The counted objects a split may use."""
    return ITEMS[-SURFACE_ITEMS:] if surface else ITEMS[:-SURFACE_ITEMS]


def name_pools(style: str, size: int, held_out: int) -> tuple[list[str], list[str]]:
    """(training names, held-out names) from the first ``size`` names of the style's pool."""
    pool = NAME_POOLS[style][:size]
    return pool[: size - held_out], pool[size - held_out :]


def cap(text: str) -> str:
    """Capitalise the first character (a sentence may start with "the red box")."""
    return text[:1].upper() + text[1:]


def render_fact(key: str, template: int, names: dict[str, str], item: str, x: str, args: list, v: int) -> str:
    """The sentence that states quantity ``x`` (a quantity id) in the problem text."""
    fields = {"x": names[x], "item": item, "v": v}
    for slot, arg in zip(("a", "b"), args, strict=False):  # "given" has no operands
        fields[slot] = names[arg] if isinstance(arg, str) else arg
        if not isinstance(arg, str):
            fields["c"] = arg
    return cap(TEMPLATES[key][template].format(**fields))


def render_question(template: int, name: str, item: str) -> str:
    """The closing question that asks for the target."""
    return cap(QUESTIONS[template].format(x=name, item=item))


def template_index(key: str, fact: str, names: dict[str, str], item: str, x: str, args: list, v: int) -> int:
    """Which template of ``key`` worded ``fact`` (the question records the sentence, not the index)."""
    for t in range(len(TEMPLATES[key])):
        if render_fact(key, t, names, item, x, args, v) == fact:
            return t
    raise ValueError(f"no {key} template words {fact!r}")
