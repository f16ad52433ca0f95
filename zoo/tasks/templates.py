"""Prompt templates: a context and one candidate answer per class.

A causal LM classifies an example by scoring the log-likelihood of each
candidate after the context (MeZO, Malladi et al. 2023, appendix E; the
templates named "mezo" follow its `templates.py`). Candidates may be several
tokens long and may differ per example (COPA's two choices).
"""

from __future__ import annotations

from dataclasses import dataclass

from .example import Example


@dataclass(frozen=True)
class Template:
    """`prompt` and `answers` are `str.format` strings over an example's fields.

    Answers carry their own leading space or newline, because the model scores
    exactly the tokens of `context + answer`.
    """

    name: str
    prompt: str
    answers: tuple[str, ...]
    source: str = ""

    def context(self, example: Example) -> str:
        return self.prompt.format(**example.fields)

    def candidates(self, example: Example) -> list[str]:
        return [a.format(**example.fields) for a in self.answers]

    def demonstration(self, example: Example) -> str:
        """The example with its correct answer, for in-context learning."""
        return self.context(example) + self.candidates(example)[example.label]


MEZO = "MeZO templates.py (Malladi et al. 2023)"
LMBFF = "LM-BFF manual template (Gao et al. 2021), put in causal form"

TEMPLATES: dict[str, dict[str, Template]] = {
    "sst2": {
        "mezo": Template("mezo", "{text} It was", (" terrible", " great"), MEZO),
        "review": Template("review", "Review: {text}\nSentiment:", (" negative", " positive"),
                           "the issue's zero-shot probe"),
    },
    "sst5": {
        "mezo": Template("mezo", "{text} It was", (" terrible", " bad", " okay", " good", " great"), LMBFF),
        "review": Template("review", "Review: {text}\nSentiment:",
                           (" terrible", " bad", " okay", " good", " great"), "review form of the SST-2 probe"),
    },
    "trec": {
        "mezo": Template("mezo", "{text} Answer type:",
                         (" Description", " Entity", " Abbreviation", " Human", " Location", " Number"), LMBFF),
        # one token each in SmolLM2's vocabulary, where " Abbreviation" is three: one-token
        # candidates share one row per example (PromptScorer), a sixth of the mezo template's rows, and
        # mean log-likelihood no longer favours the long answer whose later tokens are easy to predict
        "words": Template("words", "{text} Answer type:",
                          (" description", " entity", " abbreviation", " human", " location", " number"),
                          "LM-BFF's label words in lower case"),
    },
    "rte": {
        "mezo": Template("mezo", 'Suppose "{premise}" Can we infer that "{hypothesis}"? Yes or No?\n',
                         ("Yes", "No"), MEZO),
    },
    "cb": {
        "mezo": Template("mezo", 'Suppose {premise} Can we infer that "{hypothesis}"? Yes, No, or Maybe?\n',
                         ("Yes", "No", "Maybe"), MEZO),
    },
    "boolq": {
        "mezo": Template("mezo", "{passage} {question}?", (" No", " Yes"), MEZO),
    },
    "copa": {
        "mezo": Template("mezo", "{premise_stem} {connective}", (" {choice1_lc}", " {choice2_lc}"), MEZO),
    },
    "wic": {
        "mezo": Template("mezo", 'Does the word "{word}" have the same meaning in these two sentences? '
                         "Yes, No?\n{sentence1}\n{sentence2}\n", ("No", "Yes"), MEZO),
    },
    "wsc": {
        "mezo": Template("mezo", '{text}\nIn the previous sentence, does the pronoun "{pronoun}" refer to '
                         "{referent}? Yes or No?\n", ("No", "Yes"), MEZO),
    },
    "multirc": {
        "mezo": Template("mezo", '{paragraph}\nQuestion: {question}\nI found this answer "{answer}". '
                         "Is that correct? Yes or No?\n", ("No", "Yes"), MEZO),
    },
}


def generic_template(label_names: tuple[str, ...], has_pair: bool) -> Template:
    """For a user's own file: the label names themselves are the candidates."""
    prompt = "{text}\n{text_b}\nAnswer:" if has_pair else "{text}\nAnswer:"
    return Template("generic", prompt, tuple(" " + str(n) for n in label_names), "zoo generic template")
