"""``corpusmap excess --lemmatize``: the excess words of each target also as lemmas, as the study reports them.

The study (berenslab/llm-excess-vocab ``scripts/03-figures.ipynb`` cells 19-22) lemmatises only the excess words,
after detection and for reporting; counting and detection stay on surface forms, and so they do here. Its lemma of
a word is ``lemmatize(americanize(word))``:

1. ``americanize``: British to American spelling, from the ``british_spellings.json`` of
   hyperreality/American-British-English-Translator, downloaded at run time.
2. ``lemmatize``: a manual map (:data:`MANUAL_LEMMAS`: chatbots, circrnas, coronaviruses, showcased, showcases,
   showcasing); else NLTK's WordNet verb lemma if it differs from the word; else the WordNet noun lemma.
3. The type of a lemma (style, content, ...) is that of the alphabetically last excess word with the lemma
   (``lemma2word = {v: k for k, v in word2lemma.items()}`` over sorted words).

Here, offline, with packages from PyPI:

1. The UK→US map is ``breame``'s ``BRITISH_ENGLISH_SPELLINGS`` (Apache-2.0), a list of the same origin and order
   as the study's JSON with a few entries fewer. The study replaced every UK spelling as a *substring*, in the
   JSON's order, which also rewrites parts of unrelated words: ``disc`` → ``disk`` turns ``discern``,
   ``discerned``, ``discernible`` and ``discerning`` (all four in the study's word list) into ``diskern...``
   (the study's 770 lemmas of its 900 words count them as four lemmas). Here a word is replaced only when the
   whole word is a British spelling (:func:`americanize`); on the study's 900 words the two rules differ only
   on those four words.
2. The lemmatiser is ``lemminflect`` (MIT; its dictionary comes from the NIH SPECIALIST lexicon) with the
   study's rule: the verb lemma if it differs from the word, else the noun lemma, else the word itself
   (dictionary look-ups only, no guessing for unknown words, which is what WordNet's lemmatiser does: it returns
   a word it does not know unchanged). WordNet (NLTK's data) cannot be installed from PyPI; the two dictionaries
   differ on some words. On the study's 900 words this gives 767 lemmas (770 in the study, 3 of them from the
   ``diskern`` substring effect above).
3. The type of a lemma is chosen as in the study (the alphabetically last word's type).
"""
from __future__ import annotations

import functools
import pandas as pd

from corpusmap.errors import UsageProblem

#: 03 cell 19, ``lemmatize_manual``
MANUAL_LEMMAS = {"chatbots": "chatbot", "circrnas": "circrna", "coronaviruses": "coronavirus",
                 "showcased": "showcase", "showcases": "showcase", "showcasing": "showcase"}

REQUIREMENT = "--lemmatize needs the packages lemminflect and breame: pip install lemminflect breame"


def check_available() -> None:
    """UsageProblem naming the packages when the lemmatiser is not installed."""
    try:
        import breame.data.spelling_constants  # noqa: F401
        import lemminflect  # noqa: F401
    except ImportError:
        raise UsageProblem(REQUIREMENT) from None


@functools.lru_cache(maxsize=1)
def _uk_to_us() -> dict:
    check_available()
    from breame.data.spelling_constants import BRITISH_ENGLISH_SPELLINGS

    return dict(BRITISH_ENGLISH_SPELLINGS)


def americanize(word: str) -> str:
    """The American spelling of a whole word that is a British spelling (``emphasises`` → ``emphasizes``), else
    the word."""
    return _uk_to_us().get(word, word)


@functools.lru_cache(maxsize=None)
def lemmatize(word: str) -> str:
    """The study's ``lemmatize(americanize(word))`` with lemminflect in place of WordNet: the manual map, else
    the verb lemma if it differs from the word, else the noun lemma, else the word."""
    check_available()
    from lemminflect import getLemma

    word = americanize(word)
    if word in MANUAL_LEMMAS:
        return MANUAL_LEMMAS[word]
    verb = getLemma(word, upos="VERB", lemmatize_oov=False)
    if verb and verb[0] != word:
        return verb[0]
    noun = getLemma(word, upos="NOUN", lemmatize_oov=False)
    return noun[0] if noun else word


def lemma_table(excess_words: pd.DataFrame, annotation=None) -> pd.DataFrame:
    """One row per target and lemma of its excess words: ``target, lemma, n_words, words`` (by δ), the largest δ
    and the largest p among them, and with an annotation its ``type`` (that of the alphabetically last word, as
    the study). ``excess_words`` has columns ``target, word, delta, p`` (the ``excess_words`` table); targets
    keep their order, lemmas are ordered by their largest δ."""
    cols = ["target", "lemma", "n_words", "words", "max_delta", "max_p"] + (["type"] if annotation is not None
                                                                              else [])
    if excess_words.empty:
        return pd.DataFrame(columns=cols)
    df = excess_words[["target", "word", "delta", "p"]].copy()
    df["target"] = df["target"].astype(str)
    order = {t: i for i, t in enumerate(pd.unique(df["target"]))}
    df["lemma"] = df["word"].map(lemma_of_words(pd.unique(df["word"])))
    df["_t"] = df["target"].map(order)
    df = df.sort_values(["_t", "delta", "word"], ascending=[True, False, True], kind="stable")
    out = (df.groupby(["_t", "lemma"], sort=False)
           .agg(target=("target", "first"), n_words=("word", "size"), words=("word", ", ".join),
                max_delta=("delta", "max"), max_p=("p", "max"), last=("word", "max"))
           .reset_index())
    if annotation is not None:
        out["type"] = [annotation.type_of(w) for w in out["last"]]
    return out[cols].reset_index(drop=True)


def lemma_summary(lemmas: pd.DataFrame) -> dict:
    """``{target: unique lemmas}``."""
    return {str(t): int(n) for t, n in lemmas.groupby("target", sort=False)["lemma"].nunique().items()}


def lemma_of_words(words) -> dict:
    """``{word: lemma}`` for a list of words."""
    return {w: lemmatize(w) for w in words}


__all__ = ["MANUAL_LEMMAS", "americanize", "lemmatize", "lemma_table", "lemma_summary", "lemma_of_words",
           "check_available"]

