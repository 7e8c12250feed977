r"""``corpusmap excess --clean``: the excess-vocabulary study's clean-up of abstracts before counting.

The rules, their order and their mechanics are those of ``cleanup_abstracts_inplace`` in
berenslab/llm-excess-vocab ``scripts/02-preprocess-and-count.py`` (lines 43-357 at commit 95c5976):

1. **Errata** (lines 46-55): a row whose title contains ``Correction:``, ``Correction to:``, ``Erratum:``,
   ``Erratum to:``, ``Corrigendum:``, ``Corrigendum to:`` or ``Retracted:``, or whose title is exactly
   ``Retraction``, keeps its place (it still counts in the period's number of abstracts) but its abstract becomes
   the empty string, so it contributes no word.
2. **Boilerplate** (the table ``to_replace``, lines 64-318, in :data:`RULES`): for each rule in order, the rows
   to edit are chosen once, by a literal, case-sensitive substring test on the current text (a rule with several
   selectors needs all of them), and then each of the rule's regular expressions is applied in order to those
   rows with ``re.sub`` semantics (every match, no flags: ``^``/``$`` anchor at the whole text and ``.`` does not
   match a newline). The study's patterns are ordinary Python strings; here they are raw strings with the same
   value (``"\\s"`` in the study is ``r"\s"`` here), checked against the study's table when this module was
   written.

The rules strip HTML entities and tags, leading notes ("This article has been ..."), "Graphical abstract" and
similar tails, leading ``ABSTRACT``/``Abstract`` headings, copyright lines (``Copyright ©``, `` © ``, ``.© ``,
`` ©20``, "Published 20xx Wiley Periodicals Inc"), DOI/PMID/Epub tails, levels of evidence, about twenty
journal-specific citation tails, notes on themed issues, citations and trial registrations, section headings of
structured abstracts (only when the text contains both ``RESULTS`` and ``CONCLUSIONS``, or both ``Results`` and
``Conclusions``, and only after a full stop), abbreviation lists and Portuguese/Spanish tails. The study's log
says 270,189 of 15.1 million PubMed abstracts were edited.

The rule table is data from llm-excess-vocab, MIT licence, Copyright (c) 2024 Dmitry Kobak, Rita
González-Márquez (the notice is ``corpusmap/excess/data/LICENSE-llm-excess-vocab``).

:class:`Cleaner` applies the rules to batches of texts and counts, per rule, the abstracts it changed; the scan
(:mod:`corpusmap.excess.scan`) runs it on every batch before tokenising when ``clean=True``.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Optional, Sequence

#: the study's title filter (02 lines 46-53): titles containing any of these, or equal to ``ERRATUM_EXACT_TITLE``
ERRATUM_TITLE_PARTS = ("Correction:", "Correction to:", "Erratum:", "Erratum to:", "Corrigendum:",
                       "Corrigendum to:", "Retracted:")
ERRATUM_EXACT_TITLE = "Retraction"

#: the study's ``to_replace`` table, in its order: ``(selector, ((pattern, replacement), ...))``; a selector is a
#: literal substring, or a tuple of substrings that must all occur
RULES = (
    (r"&ldquo;", ((r"&ldquo;", '"'), (r"&rdquo;", '"'),)),
    (r"&lsquo;", ((r"&lsquo;", r"'"), (r"&rsquo;", r"'"),)),
    (r"&nbsp;", ((r"&nbsp;", r" "),)),
    (r"&shy;", ((r"&shy;", r""),)),
    (r"&mdash;", ((r"&mdash;", r"---"),)),
    (r"&ndash;", ((r"&ndash;", r"--"),)),
    (r"u2002", ((r"\u2002", r" "),)),
    (r"<p>", ((r"<p>", r""), (r"</p>", r""),)),
    (r"<em>", ((r"<em>", r""), (r"</em>", r""),)),
    (r"This article", ((r"^This article has been.*", r""),)),
    (r"This manuscript", ((r"^This manuscript has been.*", r""),)),
    (r"The above article", ((r"^The above article.*", r""), (r".*The above article, published online.*", r""),)),
    (r"http", ((r"^http.*", r""),)),
    (r"For complete details", ((r"\s*For complete details on the use and execution of this protocol.*", r""),)),
    (r"For further information", ((r"For further information please consult linked data\.*", r""),)),
    (r"Communicated by", ((r"\s*\(?Communicated by.{0,100}$", r""),)),
    (r"Graphical abstract", ((r"\.\s*Graphical abstract.*", r"."),)),
    (r"GRAPHICAL ABSTRACT", ((r"\.\s*GRAPHICAL ABSTRACT.*", r"."),)),
    (r"VIDEO ABSTRACT", ((r"\.\s*VIDEO ABSTRACT.*", r"."),)),
    (r"Video Abstract", ((r"\s*Video Abstract Available\.*", r""),)),
    (r"MINI ABSTRACT", ((r"\.\s*MINI ABSTRACT.*", r"."),)),
    (r"ABSTRACT", (
        (r"^ABSTRACT[:.]?\s*", r""),
        (r"^Abstract ABSTRACT[:.]?\s*", r""),
        (r"^.{0,200} ABSTRACT: ", r""),
    )),
    (r"Abstract", ((r"^Abstract:?\s*", r""),)),
    (r"CONSPECTUS", ((r"CONSPECTUS: ", r""),)),
    (r"THIS ARTICLE", ((r"\s*THIS ARTICLE HAD BEEN MADE AVAILABLE FREE OF CHARGE.*", r""),)),
    (r"Copyright ©", ((r"\s*Copyright ©.*", r""),)),
    (r" © ", (
        (r"\.\s*[^.]*[0-9]\. © [12].*", r"."),
        (r"\. [a-zA-Z]+\.$", r"."),
        (r"\. [ab-zA-Z]+\.$", r"."),
        (r"\. [abc-zA-Z]+\.$", r"."),
        (r"\. [abcd-zA-Z]+\.$", r"."),
        (r"\. Pediatr Pulmonol.$", r"."),
        (r"\. Lasers Surg.$", r"."),
        (r"\s+© .*", r""),
    )),
    (r".© ", (
        (r"\.\s*[^.]*[0-9]\.© [12].*", r"."),
        (r"\. [a-zA-Z]+\.$", r"."),
        (r"\. [ab-zA-Z]+\.$", r"."),
        (r"\. [abc-zA-Z]+\.$", r"."),
        (r"\. [abcd-zA-Z]+\.$", r"."),
        (r"\. Pediatr Pulmonol.$", r"."),
        (r"\. Lasers Surg.$", r"."),
        (r"\s+\.© .*", r""),
    )),
    (r" ©20", (
        (r"\.\s*[^.]*[0-9]\. ©20.{0,20}$", r"."),
        (r"\s+©20.{0,20}$", r""),
        (r"\.\s*[^.]*[0-9]\. ©20[0-2][0-9] AACRSee.*", r"."),
        (r"\s+©20[0-2][0-9] AACRSee.*", r""),
    )),
    (r"Wiley Periodicals Inc", (
        (r"\.\s*[^.]*[0-9]\.\s*Published [12][890][0-9][0-9] Wiley Periodicals Inc.*", r"."),
        (r"\. [a-zA-Z]+\.$", r"."),
        (r"\. [ab-zA-Z]+\.$", r"."),
        (r"\. [abc-zA-Z]+\.$", r"."),
        (r"\. [abcd-zA-Z]+\.$", r"."),
        (r"\s*Published [12][890][0-9][0-9] Wiley Periodicals Inc.*", r"."),
    )),
    (r"doi", (
        (r"\s*doi:\s*10\.[0-9a-zA-Z\.\/\-]*\s*$", r""),
        (r"\s*doi:\s*10\.[0-9a-zA-Z\.\/\-]*\s*\(.*\)\.?\s*$", r""),
        (r"\s*http://dx\.doi\.org/10\.[0-9a-zA-Z\.\/\-]*\s*$", r""),
    )),
    (r"DOI", ((r"\s*DOI: http://dx.doi.org/[0-9a-zA-Z\.\/\-]*\s*$", r""),)),
    (r"PMID", ((r".*PubMed PMID: [0-9]*\.\s*", r""),)),
    (r"Epub", ((r"\sEpub.{0,10}[12][890][0-9][0-9]\.?\s*$", r""),)),
    (r"Level of Evidence", ((r"\s*Level of Evidence:?\s*[0-9IV].*", r""),)),
    (r"LEVEL OF EVIDENCE", ((r"\s*LEVEL OF EVIDENCE:?\s*[0-9IV].*", r""),)),
    (r"Technical Efficacy", ((r"\s*[0-9] Technical Efficacy: Stage [0-9].*", r""),)),
    (r"Geriatr", (
        (r"\s*Geriatr Gerontol Int [\s0-9,;:\-\.\(\)]*$", r""),
        (r"\s*J Am Geriatr Soc [\s0-9,;:\-\.\(\)]*$", r""),
    )),
    (r"Genet Med", ((r"\s*Genet Med [\s0-9,;:\-\.\(\)]*$", r""),)),
    (r"Ann Neurol", ((r"\s*Ann Neurol [\s0-9,;:\-\.\(\)]*$", r""), (r"\s*Ann Neurol [\s01-9,;:\-\.\(\)]*$", r""),)),
    (r"ANN NEUROL", ((r"\s*ANN NEUROL [\s0-9,;:\-\.\(\)]*$", r""),)),
    (r"J Drugs Dermatol", ((r"\s*J Drugs Dermatol\. [\s0-9,;:\-\.\(\)]*$", r""),)),
    (r"Infect Control Hosp", ((r"\s*Infect Control Hosp Epidemiol [\s0-9,;:\-\.\(\)]*$", r""),)),
    (r"Magn. Reson.", ((r"\.\s*[0-9]\s*J\. Magn\. Reson\. Imaging [\s0-9,;:\-\.\(\)]*$", r""),)),
    (r"MAGN. RESON.", ((r"\.\s*[0-9]\s*J\. MAGN\. RESON\. IMAGING [\s0-9,;:\-\.\(\)]*$", r""),)),
    (r"Magnetic Resonance", ((r"\s*Magnetic Resonance in Medicine published by Wiley Periodicals\.*", r""),)),
    (r"(Pediatr Dent", ((r"\s*\(Pediatr Dent 20.*", r""),)),
    (r"Environ Toxicol Chem", ((r"\s*Environ Toxicol Chem [\s0-9,;:\-\.\(\)]*$", r""),)),
    (r"Environ Health Perspect", ((r"\s*Environ Health Perspect [\s0-9,;:\-\.\(\)]*$", r""),)),
    (r"Antioxid. Redox Signal.", ((r"\s*Antioxid\. Redox Signal\. [\s0-9,;:\-\.\(\)]*$", r""),)),
    (r"J Orthop Sports Phys Ther", ((r"\s*J Orthop Sports Phys Ther\.? [\sA0-9,;:\-\.\(\)]*$", r""),)),
    (r"J Strength Cond Res", ((r".*J Strength Cond Res.{0,20}20[012][0-9]-([A-Z])", r"\1"),)),
    (r"Turk J Pediatr", ((r".*Turk J Pediatr [\s0-9,;:\-\.\(\)]*([A-Z])", r"\1"),)),
    (r"Laryngoscope", (
        (r"\s*[1-9][a-zA-Z]?\. Laryngoscope[^\.]*\.\s*$", r""),
        (r"[\.][^\.]*Laryngoscope[^\.]*\.\s*$", r"."),
        (r"\s*N/A\.$", r""),
    )),
    (r"Indian J Crit Care Med", ((r"\s*[^\.]*\.[^\.]*[\.?!] Indian J Crit Care Med [\s0-9,;:\-\.\(\)]*$", r""),)),
    (r"Int J Clin Pediatr Dent", ((r"\s*[^\.]*\.[^\.]*[\.?!] Int J Clin Pediatr Dent [\s0-9,;:\-\.\(\)]*$", r""),)),
    (r"J Clin Sleep Med", ((r"\s*[^\.]*\.[^\.]*[\.?!] J Clin Sleep Med\. [\s0-9,;:\-\.\(\)]*$", r""),)),
    (r"Hepatology", (
        (r"\(Hepatology [\s0-9,;:\-\.\(\)]*\)\.?\s*$", r""),
        (r"\(Hepatology Communications [\s0-9,;:\-\.\(\)]*\)\.?\s*$", r""),
    )),
    (r"AASLD", ((r"[^\.]*AASLD\.\s*$", r""),)),
    (r"Database Record", ((r"\s*\(PsycINFO Database Record.*", r""), (r"\s*\(PsycInfo Database Record.*", r""),)),
    (r"advance online publication", (
        (r"[^\.]* advance online publication,?\s*[0-9][0-9] [A-Za-z]* [0-9]{4}[\.;,]?\s*$", r""),
    )),
    (r"This article is protected", ((r"\sThis article is protected by copyright.*", r""),)),
    (r"This article is part", (
        (r"\s*This article is part of the themed issue.*", r""),
        (r"\s*This article is part of a themed issue.*", r""),
        (r"\s*This article is part of a themed section.*", r""),
        (r"\s*This article is part of a Special Issue entitled.*", r""),
    )),
    (r"Elsevier Ltd", ((r"\s*20[012][0-9] Elsevier Ltd.*", r""),)),
    (r"How to cite this article:", ((r"\s*How to cite this article:.*", r""),)),
    (r"Cite this article:", ((r"\s*Cite this article:.*", r""),)),
    (r"Citation", ((r"\s+Citation: .*", r""),)),
    (r"ClinicalTrials.gov:", ((r"\s*\(?ClinicalTrials.gov: .{0,100}$", r""),)),
    (r".].", ((r"\[[^\[]*[0-9]\.\]\.?$", r""),)),
    (r"https://youtu.be", (
        (r"\.\s*[^.]*: https://youtu.be.{0,100}$", r"."),
        (r"\. https://youtu.be.{0,50}.$", r"."),
    )),
    (r"The virtual slide(s) for this article", ((r"\s*The virtual slide\(s\) for this article.*", r""),)),
    (r"IMPACT STATEMENT", ((r"\.\s*IMPACT STATEMENT[A-Z].*", r"."),)),
    (r"Impact statement", ((r"\.\s*Impact Statement[A-Z].*", r"."),)),
    ((r"RESULTS", r"CONCLUSIONS"), (
        (r"\.\s*PURPOSE[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*BACKGROUND[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*INTRODUCTION[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*OBJECTIVE[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*MATERIALS AND METHODS[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*MATERIALS & METHODS[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*METHODS?[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*METHODOLOGY[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*DESIGN[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*STUDY DESIGN[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*KEY RESULTS[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*RESULTS[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*CONCLUSIONS[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*CONCLUSIONS AND INFERENCES[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*CONCLUSIONS & INFERENCES[.: ][.:]?\s*([A-Z])", r". \1"),
    )),
    ((r"Results", r"Conclusions"), (
        (r"\.\s*Purpose[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Background[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Introduction[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Objective[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Materials and methods[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Materials and Methods[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Materials & Methods[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Methods?[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Methodology[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Design[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Study Design[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Key Results[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Results[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Conclusions[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Conclusions and inferences[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Conclusions and Inferences[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Conclusions & inferences[.: ][.:]?\s*([A-Z])", r". \1"),
        (r"\.\s*Conclusions & Inferences[.: ][.:]?\s*([A-Z])", r". \1"),
    )),
    (r"Expert commentary", ((r"\.\s*Expert commentary:\s*", r". "), (r"\.\s*Areas covered:\s*", r". "),)),
    (r"Details of funding", ((r"\s*Details of funding are provided.*", r""),)),
    (r"This journal requires", ((r"\s*This journal requires.*", r""),)),
    (r"Proprietary or commercial disclosure", ((r"\s*Proprietary or commercial disclosure.*", r""),)),
    (r"See acknowledgments", ((r".\s*See acknowledgments.\s*$", r"."),)),
    (r"This article is one of ten", ((r"\s*This article is one of ten reviews.*", r""),)),
    (r"In an effort to expedite the publication of articles", (
        (r"^In an effort to expedite the publication of articles.*", r""),
    )),
    (r"For complete coverage", ((r"\s*For complete coverage of all related areas of Endocrinology.*", r""),)),
    (r"Abbreviations", ((r"\.\s*Abbreviations:.*", r"."), (r"\.\s*Abbreviations [Uu]sed:.*", r"."),)),
    (r"ABBREVIATIONS", ((r"\.\s*ABBREVIATIONS:.*", r"."), (r"\.\s*ABBREVIATIONS USED:.*", r"."),)),
    (r"Registration number", ((r"\s*Registration number of the clinical trial:.*", r""),)),
    (r" de ", (
        (r"\.\s*:?\s*[Aa]nalisar .*", r"."),
        (r"\.\s*:?\s*[Dd]escrever .*", r"."),
        (r"\.\s*:?\s*[Ii]mplementar .*", r"."),
        (r"\.\s*:?\s*[Cc]ompreender .*", r"."),
        (r"\.\s*:?\s*[Aa]valiar .*", r"."),
        (r"\.\s*:?\s*[Ee]stimar .*", r"."),
        (r"\.\s*:?\s*[Dd]eterminar .*", r"."),
        (r"\.\s*:?\s*[Rr]ealizar .*", r"."),
        (r"\.\s*:?\s*[Cc]aracterizar .*", r"."),
        (r"\.\s*:?\s*[Ii]dentificar .*", r"."),
        (r"\.\s*:?\s*[Dd]iscutir .*", r"."),
        (r"\.\s*:?\s*[Cc]onhecer .*", r"."),
        (r"\.\s*:?\s*[Cc]onocer .*", r"."),
        (r"\.\s*:?\s*Resumo .*", r"."),
    )),
)

ERRATA = "errata (title filter)"


def rule_name(selector) -> str:
    """A rule's name in reports: its selector, or the selectors joined with `` + ``."""
    return selector if isinstance(selector, str) else " + ".join(selector)


_COMPILED = tuple((sel if isinstance(sel, tuple) else (sel,), rule_name(sel),
                   tuple((re.compile(p), r) for p, r in subs)) for sel, subs in RULES)
_SELECTORS = tuple(sorted({s for sel, _, _ in _COMPILED for s in sel}))


def is_erratum(title: Optional[str]) -> bool:
    """The study's title filter (a missing title never matches)."""
    if not title:
        return False
    return title == ERRATUM_EXACT_TITLE or any(part in title for part in ERRATUM_TITLE_PARTS)


def clean_text(text: str) -> str:
    """One abstract through every rule of :data:`RULES`, in order (no title filter)."""
    for selectors, _, subs in _COMPILED:
        if all(s in text for s in selectors):
            for pattern, repl in subs:
                text = pattern.sub(repl, text)
    return text


class Cleaner:
    """Applies the study's clean-up to batches of texts and counts what it changed.

    ``counts[rule]`` is the number of abstracts a rule changed (a rule's regexes, together, gave a different
    text), ``counts[ERRATA]`` the number blanked by the title filter; ``changed`` the abstracts changed by
    anything, ``seen`` the abstracts looked at."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.changed = 0
        self.seen = 0

    def clean(self, texts: Sequence[Optional[str]], titles: Optional[Sequence[Optional[str]]] = None) -> list:
        """Cleaned copies of ``texts`` (None stays None). The rows to edit are found per rule with polars'
        literal substring search (the same test as ``str.contains(regex=False)``), then edited with ``re``."""
        import polars as pl

        out = list(texts)
        touched = [False] * len(out)
        if titles is not None:
            for i, title in enumerate(titles):
                if out[i] is not None and is_erratum(title):
                    if out[i] != "":
                        touched[i] = True
                    out[i] = ""
                    self.counts[ERRATA] += 1
        # only texts holding some rule's selector can be edited (an edit happens only to such a text, so the
        # others never gain one): find them in one Aho-Corasick pass, then run the rules on them alone
        candidates = pl.Series("text", out, dtype=pl.String).str.contains_any(list(_SELECTORS)).arg_true().to_list()
        series = pl.Series("text", [out[i] for i in candidates], dtype=pl.String)
        for selectors, name, subs in _COMPILED:
            mask = series.str.contains(selectors[0], literal=True)
            for sel in selectors[1:]:
                mask = mask & series.str.contains(sel, literal=True)
            rows = mask.arg_true().to_list()
            if not rows:
                continue
            new_values, new_rows = [], []
            for j in rows:
                i = candidates[j]
                before = text = out[i]
                for pattern, repl in subs:
                    text = pattern.sub(repl, text)
                if text != before:
                    out[i] = text
                    touched[i] = True
                    new_rows.append(j)
                    new_values.append(text)
            if new_rows:
                self.counts[name] += len(new_rows)
                series = series.scatter(new_rows, pl.Series(new_values, dtype=pl.String))
        self.changed += sum(touched)
        self.seen += sum(t is not None for t in texts)
        return out

    def as_dict(self) -> dict:
        """``{"abstracts": seen, "changed": any rule, "rules": {name: abstracts changed}}`` in the rules' order
        (errata first), rules that changed nothing left out."""
        order = [ERRATA] + [name for _, name, _ in _COMPILED]
        return {"abstracts": self.seen, "changed": self.changed,
                "rules": {name: int(self.counts[name]) for name in order if self.counts.get(name)}}


__all__ = ["RULES", "ERRATA", "ERRATUM_TITLE_PARTS", "ERRATUM_EXACT_TITLE", "Cleaner", "clean_text", "is_erratum",
           "rule_name"]
