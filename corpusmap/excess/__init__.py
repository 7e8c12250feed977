"""Excess vocabulary: which words became more frequent in a period than their trend predicts.

Modules: :mod:`~corpusmap.excess.periods` (years and months), :mod:`~corpusmap.excess.tables` (count tables and
their file formats), :mod:`~corpusmap.excess.scan` with :mod:`~corpusmap.excess.engines` (the counting pass and
its tokenising engines), :mod:`~corpusmap.excess.analysis` (the study's formulas), :mod:`~corpusmap.excess.style`
(the study's lower bound on LLM-processed abstracts and its subgroup δ, with its annotated word list in
``data/``), :mod:`~corpusmap.excess.cleanup` (the study's clean-up of abstracts, ``--clean``),
:mod:`~corpusmap.excess.lemmas` (excess words as lemmas, ``--lemmatize``), :mod:`~corpusmap.excess.words` (word
lists), :mod:`~corpusmap.excess.report` (tables, figures, report.md) and :mod:`~corpusmap.excess.stage` (the
``corpusmap excess`` stage).
"""
from corpusmap.excess.analysis import (Criteria, ExcessAnalysis, analyse, analyse_words, check_target,
                                       counterfactual, default_targets, excess_mask, group_excess, group_table,
                                       resolve_targets, smoothed_frequency, subgroup_table)
from corpusmap.excess.periods import earlier_periods, period_kind_of, shift_period
from corpusmap.excess.cleanup import Cleaner, clean_text
from corpusmap.excess.scan import count_presence, count_words, scan_corpus
from corpusmap.excess.style import (STUDY_COMMON_WORDS, STUDY_CUTOFFS, bound_summary, bound_table,
                                    builtin_annotation, read_annotation, study_delta, study_subgroup_table)
from corpusmap.excess.tables import CountTable, PresenceTable, read_counts
from corpusmap.excess.words import parse_word_list

__all__ = ["Criteria", "ExcessAnalysis", "CountTable", "PresenceTable", "analyse", "analyse_words", "check_target",
           "counterfactual", "default_targets", "excess_mask", "group_excess", "group_table", "resolve_targets",
           "smoothed_frequency", "subgroup_table", "earlier_periods", "period_kind_of", "shift_period",
           "count_presence", "count_words", "scan_corpus", "read_counts", "parse_word_list", "Cleaner", "clean_text",
           "STUDY_COMMON_WORDS", "STUDY_CUTOFFS", "bound_summary", "bound_table", "builtin_annotation",
           "read_annotation", "study_delta", "study_subgroup_table"]
