"""How the scripted teacher words its steps: openers and body shapes for each kind of step.

A step is ``opener + " " + body``. Each kind of step has one true signal and three opener lists:
``keyword`` openers begin with a keyword of the paper's table for that signal, ``free`` openers
begin with no keyword of the paper's table (stage 1 cannot label those steps; many are the frequent
uncovered openers of real traces: "Okay", "Alright", "Hmm", "Next", "Hence"), and ``other`` openers
begin with a keyword of a different signal, as real traces do ("Wait, 5 + 3 is 8" is a correction,
but "wait" is a Reasoning keyword). Bodies start lower-case (or with a name) and never contain a
blank line, so segmentation gives the steps back. The informative setting uses ``OWN_OPENERS``
instead, where no first word is shared between signals; the clean and informative settings add the
bodies that confirm (``contrast_confirm``, ``contrast_inverse``) and illustrate with the problem's own
numbers (``example_<op>``).
"""

from __future__ import annotations

from dataclasses import dataclass

from rscaffold.signals import Signal


@dataclass(frozen=True)
class Openers:
    keyword: tuple[str, ...]
    free: tuple[str, ...]
    other: tuple[str, ...]


SIGNAL = {
    "intro": Signal.REASONING,
    "plan": Signal.REASONING,
    "compute": Signal.REASONING,
    "recheck": Signal.REASONING,
    "result": Signal.CONCLUSION,
    "conclude": Signal.CONCLUSION,
    "addition": Signal.ADDITION,
    "example": Signal.EXAMPLE,
    "opinion": Signal.OPINION,
    "contrast": Signal.CONTRAST,
    "correct": Signal.CONTRAST,
}
"""The true signal of each kind of step."""

OPENERS = {
    "intro": Openers(
        ("Ok,", "Well,", "Let's see,", "Now,"),
        ("Okay,", "Alright,", "Hmm,", "Right,"),
        ("So",),
    ),
    "plan": Openers(
        ("First,", "Let's see,", "Now,", "Well,"),
        ("To plan:", "Working backwards,", "Alright,", "Step by step:"),
        ("So",),
    ),
    "compute": Openers(
        ("Now,", "Let's see,", "Ok,", "Well,", "Now then,"),
        ("Next,", "Okay,", "Alright,", "Moving on,", "Right,"),
        ("So", "Then"),
    ),
    "recheck": Openers(
        ("Wait,", "Actually,", "Ok,", "Well,"),
        ("Hmm,", "To be safe,", "Quick check:", "Before going on,"),
        ("But wait,",),
    ),
    "result": Openers(
        ("So", "Then", "Thus", "Therefore,", "Clearly,", "Indeed,", "As a result,"),
        ("Hence,", "This means", "That means", "Good,", "Right,"),
        ("Now", "Ok, so"),
    ),
    "conclude": Openers(
        ("So", "Therefore,", "Thus,", "In conclusion,", "To conclude,", "So in the end,", "As a result,"),
        ("Hence,", "All in all,", "Putting it together,", "Altogether,", "In the end,"),
        ("Ok, so", "Well,"),
    ),
    "addition": Openers(
        ("Also,", "Moreover,", "Additionally,", "Furthermore,", "In addition,"),
        ("Note that", "Besides,", "On top of that,", "Plus,", "And"),
        ("Meanwhile,",),
    ),
    "example": Openers(
        ("For example,", "For instance,"),
        ("To illustrate,", "As a small case,", "Hypothetically,", "Just to picture it,"),
        ("Let me try an example:", "So for instance,"),
    ),
    "opinion": Openers(
        ("I think", "I believe", "It seems", "Maybe", "Perhaps", "I guess", "In my opinion,"),
        ("My guess is that", "I suspect", "To me,", "Honestly,", "My sense is that"),
        ("Actually, I think", "Well, I think"),
    ),
    "contrast": Openers(
        ("But", "However,", "Still,", "Nevertheless,", "On the other hand,"),
        ("Even so,", "Yet", "That said,", "Careful:", "Mind you,"),
        ("Wait,", "Actually,"),
    ),
    "correct": Openers(
        ("But", "However,", "But wait,", "But hold on,"),
        ("Hmm, no,", "Hold on,", "Oops,", "Hmm,"),
        ("Wait,", "Actually,"),
    ),
}

OWN_OPENERS = {
    "intro": Openers(("Ok,", "Let's see,", "Now,"), ("Okay,", "Alright,", "Hmm,"), ()),
    "plan": Openers(("First,", "Let's see,", "Now,"), ("Plan:", "Working backwards,", "Step by step:"), ()),
    "compute": Openers(("Now,", "Let's see,", "Ok,", "Now then,"), ("Next,", "Okay,", "Alright,", "Moving on,"), ()),
    "recheck": Openers(
        ("Wait,", "Actually,", "Ok,"), ("Hmm,", "Quick check:", "Before going on,", "Double-checking,"), ()
    ),
    "result": Openers(
        ("So", "Thus", "Therefore,", "Clearly,", "Indeed,", "As a result,"), ("Hence,", "This means"), ()
    ),
    "conclude": Openers(
        ("So", "Therefore,", "Thus,", "In conclusion,", "So in the end,", "As a result,"),
        ("Hence,", "All in all,", "Putting it together,", "Altogether,"),
        (),
    ),
    "addition": Openers(
        ("Also,", "Moreover,", "Additionally,", "Furthermore,"),
        ("Note that", "Besides,", "On top of that,", "Plus,"),
        (),
    ),
    "example": Openers(("For example,", "For instance,"), ("To illustrate,", "Just to picture it,", "Picture it:"), ()),
    "opinion": Openers(
        ("I think", "I believe", "It seems", "Maybe", "Perhaps", "I guess"),
        ("My guess is that", "I suspect", "Honestly,"),
        (),
    ),
    "contrast": Openers(
        ("But", "However,", "Still,", "Nevertheless,"), ("Even so,", "Yet", "That said,", "Careful:", "Mind you,"), ()
    ),
}
"""The informative setting's openers: no first word is shared between two signals, and none opens with
another signal's keyword, so a step's first word names its signal."""

BODIES = {
    "intro": (
        "the question asks how many {item} {t} has.",
        "we need the number of {item} that {t} has.",
        "I want to find {t}'s {item}.",
        "the goal is to count {t}'s {item}.",
    ),
    "plan": (
        "{deps}. So I will work out {order}.",
        "I have to compute {order}, in that order, because {deps}.",
        "there are {n} operations on the way: {deps}.",
    ),
    "opinion_distractor": (
        "{d} is just a distractor, since nothing on the way to {t} uses it.",
        "the fact about {d} is there to mislead: {t} does not depend on it.",
        "{d} will not be needed at all.",
    ),
    "opinion_plain": (
        "every fact here feeds into {t}, so nothing can be skipped.",
        "the numbers are small enough to do by hand.",
        "this should not take long.",
    ),
    "compute_restate": (
        "{fact}, and {operands}, so {x} = {expr} = {v}.",
        "the problem says: {Fact}. Here {operands}, so {x} = {expr} = {v}.",
    ),
    "compute_plain": (
        "{x} = {sym} = {expr} = {v}.",
        "for {x}: {expr} = {v}.",
        "{x} has {expr} = {v} {item}.",
    ),
    "result": ("{x} has {v} {item}.", "{x} = {v}.", "{x} comes to {v}."),
    "addition_feeds": ("{x} = {v} feeds into {y}, so I keep it in mind.", "{y} will need this {v}."),
    "addition_compare": ("{x} has {v}, which is {cmp} the {w} of {o}.", "{x}'s {v} is {cmp} {o}'s {w}."),
    "addition_done": ("{o} is not used anywhere else, so it is done.", "{o} played its one part here."),
    "example": (
        "if {o} had {h} {item} instead of {w}, {x} would have {expr} = {r}.",
        "with {h} in place of {o}'s {w}, {x} would come to {expr} = {r}.",
        "had {o} owned {h}, {x} would be {expr} = {r}.",
    ),
    "example_add": ("{a} and {b} {item} put together make {expr} = {r}.", "adding {b} to {a} gives {expr} = {r}."),
    "example_sub": ("taking {b} away from {a} leaves {expr} = {r}.", "{a} {item} less {b} leaves {expr} = {r}."),
    "example_mul": ("{b} groups of {a} {item} make {expr} = {r}.", "{a} taken {b} times gives {expr} = {r}."),
    "example_div": (
        "{a} {item} split into {b} equal parts put {r} in each part, as {expr} = {r}.",
        "sharing {a} {item} out in {b} equal parts gives {r} each, since {expr} = {r}.",
    ),
    "recheck": (
        "let me double-check {x}: {expr} = {v}. Yes, that holds.",
        "let me verify {x} once more: {expr} is {v}, right.",
        "is {x} really {v}? {expr} = {v}, yes.",
    ),
    "contrast_distractor": (
        "{d} does not matter here: {t} never uses it.",
        "the fact about {d} plays no part in {t}.",
        "nothing about {d} changes {t}.",
    ),
    "contrast_misread": (
        "{x} is not {wexpr} = {w}: {why}, so {x} = {expr} = {v}.",
        "I should not read it as {wexpr} = {w}; {why}, and {x} stays {v}.",
    ),
    "contrast_confirm": (
        "could {x} be something other than a {opname}? No: the fact makes it {expr} = {v}.",
        "let me make sure {x} is not misread: it is a {opname}, {expr} = {v}, as found.",
        "is {x} really {expr}? Reading the fact again, yes, {x} = {v}.",
    ),
    "contrast_inverse": (
        "the fact about {x} reads like a {looks}, though it is a {opname}: {x} = {sym}.",
        "the wording for {x} suggests a {looks}; it is a {opname}: {x} = {sym}.",
    ),
    "correct": (
        "{expr} is {v}, not {w}. So {x} = {v}.",
        "I slipped: {expr} = {v}, not {w}, so {x} has {v} {item}.",
        "that is wrong: {expr} gives {v}, so {x} = {v}, not {w}.",
    ),
    "conclude": (
        "{t} has {v} {item}.",
        "the answer is {v}: {t} has {v} {item}.",
        "{t} ends up with {v} {item}.",
    ),
    "answer": (
        "{summary}. So {T} has {v} {item}.\n###Answer: \\boxed{{{v}}}",
        "{T} has {v} {item}.\n###Answer: \\boxed{{{v}}}",
        "The answer is {v}.\n###Answer: \\boxed{{{v}}}",
    ),
}

WHY = {
    "add": "the relation is a sum, not a difference",
    "sub": "the relation is a difference, not a sum",
    "mul": "the relation is a product, not a sum",
    "div": "the relation is a division, not a product",
}
MISREAD = {"add": "sub", "sub": "add", "mul": "add", "div": "mul"}
"""The operation a careless reader might apply instead (the Contrast step rules it out)."""
OPNAME = {"add": "sum", "sub": "difference", "mul": "product", "div": "division"}
LOOKS = {"sub": "sum", "div": "product"}
"""What an inverse wording (``phrasing.INVERSE``) of a difference or a division reads like."""
