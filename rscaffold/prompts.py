"""The prompts the project sends to models, as data with a version string that is part of every cache
key (changing the wording can never return answers to the old wording): the teacher's generation
prompt (METHOD.md section 3, "Generate") and the judge's labelling prompt ("Label, stage 2")."""

from __future__ import annotations

from rscaffold.signals import Signal

PROMPTS: dict[str, dict[str, str]] = {
    "paper-v1": {
        "system": "",
        "user": (
            "Solve the following problem. Think step by step, then give the final answer on the last line "
            "as ###Answer: \\boxed{{answer}}.\n\nProblem: {question}"
        ),
    },
}
"""Generation prompts by version: ``user`` holds ``{question}``; an empty ``system`` sends no system message."""

JUDGED = [s for s in Signal if s is not Signal.RESPONSE]

DEFINITIONS = {
    Signal.CONTRAST: "the step turns against, corrects or concedes something said before it.",
    Signal.ADDITION: "the step adds a further point to, or expands on, what came just before.",
    Signal.EXAMPLE: "the step gives a concrete example, case or illustration of a point.",
    Signal.OPINION: "the step states a belief, a guess or a hunch, or recalls a fact from memory.",
    Signal.REASONING: "the step starts or continues work on the problem: it plans, computes, checks or analyses.",
    Signal.CONCLUSION: "the step states a result: an intermediate conclusion or a summary of what was found.",
}
"""Our own wording of the roles in METHOD.md section 2 (the paper's judge prompt is not public)."""

JUDGE_PROMPTS = {
    "judge-v1": (
        "You label the steps of a reasoning model's thinking by their discourse role.\n\n"
        "Question:\n{question}\n\n"
        "Thinking before the step:\n<<<\n{context}\n>>>\n\n"
        "Step to label:\n<<<\n{step}\n>>>\n\n"
        "Choose the one signal that best describes the role of the step:\n{signals}\n\n"
        "Answer with the signal's name only, written as \\boxed{{name}}."
    ),
}
