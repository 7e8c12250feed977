"""Excess vocabulary: which words became more frequent in a period than their trend predicts.

Modules: :mod:`~corpusmap.excess.periods` (years and months), :mod:`~corpusmap.excess.tables` (count tables and
their file formats), :mod:`~corpusmap.excess.scan` with :mod:`~corpusmap.excess.engines` (the counting pass and
its tokenising engines), :mod:`~corpusmap.excess.analysis` (the study's formulas), :mod:`~corpusmap.excess.words`
(word lists), :mod:`~corpusmap.excess.report` (tables, figures, report.md) and :mod:`~corpusmap.excess.stage`
(the ``corpusmap excess`` stage).
"""
from corpusmap.excess.analysis import (Criteria, ExcessAnalysis, analyse, analyse_words, check_target,
                                       counterfactual, default_targets, excess_mask, group_excess, group_table,
                                       resolve_targets, smoothed_frequency, subgroup_table)
from corpusmap.excess.periods import earlier_periods, period_kind_of, shift_period
from corpusmap.excess.scan import count_presence, count_words, scan_corpus
from corpusmap.excess.tables import CountTable, PresenceTable, read_counts
from corpusmap.excess.words import parse_word_list

__all__ = ["Criteria", "ExcessAnalysis", "CountTable", "PresenceTable", "analyse", "analyse_words", "check_target",
           "counterfactual", "default_targets", "excess_mask", "group_excess", "group_table", "resolve_targets",
           "smoothed_frequency", "subgroup_table", "earlier_periods", "period_kind_of", "shift_period",
           "count_presence", "count_words", "scan_corpus", "read_counts", "parse_word_list"]
