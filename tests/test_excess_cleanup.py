"""`excess --clean`: the excess-vocabulary study's clean-up (llm-excess-vocab 02-preprocess-and-count.py,
cleanup_abstracts_inplace), rule by rule, on real abstracts (from ../shared/data: PubMed and arXiv records, quoted
here so that the tests run anywhere) or abstracts written after the real PubMed tails each rule was made for. The
expected outputs were worked out by hand from the study's regular expressions."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from conftest import cli
from corpusmap.excess.cleanup import ERRATA, RULES, Cleaner, clean_text, is_erratum, rule_name

# --- real abstracts ----------------------------------------------------------------------------------------------
# PubMed 25741385 (medline16n0902_sample.xml.gz), the end of its abstract
PUBMED_GRAPHICAL = ("We also present a list of publicly available data and resources to aid in discovery of drug "
                    "combinations. Integration of these systems approaches will enable faster discovery and "
                    "translation of clinically relevant drug combinations. Graphical abstractSpectrum of Systems "
                    "Biology Approaches for Drug Combinations.")
# PubMed 20939768, its first sentence
PUBMED_ABSTRACT = ("Abstract Here we review a novel class of delivery vehicles based on pH-sensitive, moderately "
                   "polar membrane peptides, which we call pH (Low) Insertion Peptides (pHLIPs), that target cells "
                   "located in the acidic environment found in many diseased tissues, including tumours.")
# PubMed 26109528: a doi that is not at the end is left alone
PUBMED_DOI_INSIDE = ("This review focused on current nanotechnology modalities and other promising nonviral "
                     "strategies being used to deliver therapeutic genes in order to treat various devastating ocular "
                     "diseases. WIREs Nanomed Nanobiotechnol 2015, 8:160-174. doi: 10.1002/wnan.1356 For further "
                     "resources related to this article, please visit the WIREs website.")
# arXiv 2508.17207 (arxiv_2025_2026.jsonl.gz), a structured abstract with title-case headings
ARXIV_RESULTS = (
    "Background: This study investigates how variations in Major Depressive Disorder (MDD) symptoms, quantified by "
    "the Hamilton Rating Scale for Depression (HAM-D), causally influence the prescription of SSRIs versus SNRIs. "
    "Methods: We applied explainable counterfactual reasoning with counterfactual explanations (CFs) to assess the "
    "impact of specific symptom changes on antidepressant choice. Results: Among 17 binary classifiers, Random "
    "Forest achieved highest performance (accuracy, F1, precision, recall, ROC-AUC near 0.85). Sample-based CFs "
    "revealed both local and global feature importance of individual symptoms in medication selection. "
    "Conclusions: Counterfactual reasoning elucidates which MDD symptoms most strongly drive SSRI versus SNRI "
    "selection, enhancing interpretability of AI-based clinical decision support systems. Future work should "
    "validate these findings on more diverse cohorts and refine algorithms for clinical deployment.")
ARXIV_RESULTS_CLEAN = ARXIV_RESULTS.replace(" Methods: We", " We").replace(" Results: Among", " Among").replace(
    " Conclusions: Counterfactual", " Counterfactual")
# arXiv 2512.17279, upper-case headings (IMPORTANCE and OUTCOMES are not among the study's headings; the first
# heading is never removed: it follows no full stop)
ARXIV_UPPER = (
    "IMPORTANCE: Current ultrasound AI remains fragmented into single-task tools, limiting clinical utility "
    "compared to versatile modern ultrasound systems. OBJECTIVE: To evaluate the diagnostic accuracy and efficiency "
    "of single general-purpose deep learning models for multi-organ classification and segmentation. DESIGN: The "
    "Universal UltraSound Image Challenge 2025 (UUSIC25) involved developing algorithms on 11,644 images "
    "(public/private). OUTCOMES: Diagnostic performance (Dice Similarity Coefficient [DSC]; Area Under the Receiver "
    "Operating Characteristic Curve [AUC]) and computational efficiency (inference time, GPU memory). RESULTS: Of "
    "15 valid algorithms, the top model (SMART) achieved a macro-averaged DSC of 0.854 across 5 segmentation tasks. "
    "CONCLUSIONS: General-purpose AI models achieve high accuracy and efficiency across multiple tasks using a "
    "single architecture.")
ARXIV_UPPER_CLEAN = (ARXIV_UPPER.replace(" OBJECTIVE: To", " To").replace(" DESIGN: The", " The")
                     .replace(" RESULTS: Of", " Of").replace(" CONCLUSIONS: General", " General"))
# arXiv 2602.14865, the end of its abstract
ARXIV_YOUTUBE = ("Our demo shows minimal retrofitting effort and robust multi-step behaviors grounded in a live UI "
                 "setting. Live Demo: https://youtu.be/Cy06Ljee1JQ")
# arXiv 2508.11068 and 2602.22287: the study's `^Abstract:?\s*` has no word boundary, so it also cuts words that
# begin with "Abstract" (reproduced as the study has it)
ARXIV_ABSTRACT_MEANING = ("Abstract meaning representation (AMR) is a semantic formalism used to represent the "
                          "meaning of sentences as directed acyclic graphs.")
ARXIV_ABSTRACTIONS = ("Abstractions of causal models allow for the coarsening of models such that relations of "
                      "cause and effect are preserved.")

# (rule, abstract, expected): one real or real-modelled abstract per rule of the study's table, in its order
EXAMPLES = [
    ("&ldquo;", "Participants rated the statement &ldquo;I feel safe at home&rdquo; on a 5-point scale.",
     'Participants rated the statement "I feel safe at home" on a 5-point scale.'),
    ("&lsquo;", "We examined the so-called &lsquo;obesity paradox&rsquo; in heart failure.",
     "We examined the so-called 'obesity paradox' in heart failure."),
    ("&nbsp;", "Mean age was 54&nbsp;years.", "Mean age was 54 years."),
    ("&shy;", "Immuno&shy;histochemistry was performed on all samples.",
     "Immunohistochemistry was performed on all samples."),
    ("&mdash;", "Two outcomes&mdash;mortality and readmission&mdash;were assessed.",
     "Two outcomes---mortality and readmission---were assessed."),
    ("&ndash;", "Participants aged 18&ndash;65 years were enrolled.", "Participants aged 18--65 years were enrolled."),
    # the selector is the literal text "u2002" (an escape left in the text); the pattern is the EN SPACE itself
    ("u2002", "Doses were 10\u2002mg (written u2002 in the source).",
     "Doses were 10 mg (written u2002 in the source)."),
    ("<p>", "<p>Sepsis is common.</p><p>We enrolled 120 patients.</p>", "Sepsis is common.We enrolled 120 patients."),
    ("<em>", "Infection with <em>Staphylococcus aureus</em> was confirmed.",
     "Infection with Staphylococcus aureus was confirmed."),
    ("This article", "This article has been withdrawn at the request of the author(s) and/or editor.", ""),
    ("This manuscript", "This manuscript has been withdrawn by the authors due to an error in Figure 2.", ""),
    ("The above article", "RETRACTION: The above article, published online on 12 March 2015 in Wiley Online "
     "Library, has been retracted by agreement between the authors and the journal.", ""),
    ("http", "http://onlinelibrary.wiley.com/doi/10.1111/jan.12345/abstract", ""),
    ("For complete details", "This protocol describes the isolation of mouse hepatocytes. For complete details on "
     "the use and execution of this protocol, please refer to Smith et al. (2021).",
     "This protocol describes the isolation of mouse hepatocytes."),
    ("For further information", "Antibodies were detected in 12% of samples. For further information please "
     "consult linked data.", "Antibodies were detected in 12% of samples. "),
    ("Communicated by", "We report the crystal structure of the complex. Communicated by Ramaswamy H. Sarma",
     "We report the crystal structure of the complex."),
    ("Graphical abstract", PUBMED_GRAPHICAL, PUBMED_GRAPHICAL[:PUBMED_GRAPHICAL.index(" Graphical")]),
    ("GRAPHICAL ABSTRACT", "Serum levels were elevated. GRAPHICAL ABSTRACT: A schematic of the pathway.",
     "Serum levels were elevated."),
    ("VIDEO ABSTRACT", "Tumour growth was slower in mice. VIDEO ABSTRACT.", "Tumour growth was slower in mice."),
    ("Video Abstract", "Outcomes improved after surgery. Video Abstract Available.",
     "Outcomes improved after surgery."),
    ("MINI ABSTRACT", "Surgery reduced pain. MINI ABSTRACT: Patients had less pain after surgery.",
     "Surgery reduced pain."),
    ("ABSTRACT", "ABSTRACT: Obesity is a risk factor for diabetes.", "Obesity is a risk factor for diabetes."),
    ("ABSTRACT", "Effects of exercise on sleep ABSTRACT: Exercise improves sleep.", "Exercise improves sleep."),
    ("Abstract", PUBMED_ABSTRACT, PUBMED_ABSTRACT[len("Abstract "):]),
    ("Abstract", ARXIV_ABSTRACT_MEANING, ARXIV_ABSTRACT_MEANING[len("Abstract "):]),
    ("Abstract", ARXIV_ABSTRACTIONS, ARXIV_ABSTRACTIONS[len("Abstract"):]),
    ("CONSPECTUS", "CONSPECTUS: Metal-organic frameworks are porous materials.",
     "Metal-organic frameworks are porous materials."),
    ("THIS ARTICLE", "Case report of a rare tumor. THIS ARTICLE HAD BEEN MADE AVAILABLE FREE OF CHARGE ON THE "
     "WEBSITE.", "Case report of a rare tumor."),
    ("Copyright ©", "Mortality was 12% at one year. Copyright © 2016 Elsevier Inc. All rights reserved.",
     "Mortality was 12% at one year."),
    # the rule's regexes keep running after the first removed the "©": its "Pediatr Pulmonol." tail goes too
    (" © ", "Lung function improved in all children. Pediatr Pulmonol. 2016;51:123-130. © 2015 Wiley "
     "Periodicals, Inc.", "Lung function improved in all children."),
    (" © ", "Sleep quality improved. © 2019 The Authors.", "Sleep quality improved."),
    (".© ", "Birth weight was lower. Lasers Surg. Med. 2016;48:1-5.© 2016 Wiley Periodicals, Inc.",
     "Birth weight was lower."),
    (" ©20", "Tumour growth slowed. Cancer Res; 76(5); 1-9. ©2016 AACR.", "Tumour growth slowed."),
    (" ©20", "Resistance was reversed in xenografts. Mol Cancer Ther; 15(3); 1-10. ©2016 AACRSee related "
     "commentary by Smith, p. 12", "Resistance was reversed in xenografts."),
    ("Wiley Periodicals Inc", "Cell migration increased. Microsc. Res. Tech. 79:1-8, 2016. Published 2016 Wiley "
     "Periodicals Inc.", "Cell migration increased."),
    ("doi", "Pain scores decreased after the intervention. doi: 10.1111/pme.12345",
     "Pain scores decreased after the intervention."),
    ("doi", PUBMED_DOI_INSIDE, PUBMED_DOI_INSIDE),   # real: the doi is not at the end, nothing changes
    # "DOI: http://dx.doi.org/10...." is removed by the "doi" rule before this one runs (its selector "doi" is in
    # "dx.doi.org"), which leaves "DOI:"; the DOI rule itself only acts on a path that does not start with 10.
    ("doi", "Participants reported less pain. DOI: http://dx.doi.org/10.3949/ccjm.83a.15020",
     "Participants reported less pain. DOI:"),
    ("DOI", "Participants reported less pain. DOI: http://dx.doi.org/ccjm.83a.15020",
     "Participants reported less pain."),
    ("PMID", "Smith J, Doe A. Sepsis in adults. J Med. 2010;5:1-2. PubMed PMID: 20123456. We studied sepsis.",
     "We studied sepsis."),
    ("Epub", "Outcomes were similar in both arms. Epub Jan 2016.", "Outcomes were similar in both arms."),
    ("Level of Evidence", "Fusion rates were high. Level of Evidence: 4.", "Fusion rates were high."),
    ("LEVEL OF EVIDENCE", "Fusion rates were high. LEVEL OF EVIDENCE: III.", "Fusion rates were high."),
    ("Technical Efficacy", "Image quality improved. Evidence Level: 2 Technical Efficacy: Stage 3 J. Magn. Reson. "
     "Imaging 2017;46:1-9.", "Image quality improved. Evidence Level:"),
    ("Geriatr", "Frailty predicted falls. Geriatr Gerontol Int 2017; 17: 1-8.", "Frailty predicted falls."),
    ("Geriatr", "Frailty predicted falls. J Am Geriatr Soc 64:1-8, 2016.", "Frailty predicted falls."),
    ("Genet Med", "Most variants were pathogenic. Genet Med 18 10, 1011-1019.", "Most variants were pathogenic."),
    ("Ann Neurol", "Seizures decreased. Ann Neurol 2016;80:1-10 Ann Neurol 2016;80:1-10.", "Seizures decreased."),
    ("ANN NEUROL", "Seizures decreased. ANN NEUROL 2016;80:1-10.", "Seizures decreased."),
    ("J Drugs Dermatol", "Scarring improved. J Drugs Dermatol. 2016;15(4):1-5.", "Scarring improved."),
    ("Infect Control Hosp", "Infection rates fell. Infect Control Hosp Epidemiol 2016;37:1-7.",
     "Infection rates fell."),
    # the pattern starts with the full stop and replaces it with nothing
    ("Magn. Reson.", "Image quality improved. 2 J. Magn. Reson. Imaging 2016;43:1-9.", "Image quality improved"),
    ("MAGN. RESON.", "Image quality improved. 3 J. MAGN. RESON. IMAGING 2016;43:1-9.", "Image quality improved"),
    ("Magnetic Resonance", "Perfusion was reduced. Magnetic Resonance in Medicine published by Wiley Periodicals.",
     "Perfusion was reduced."),
    ("(Pediatr Dent", "Caries decreased. (Pediatr Dent 2016;38:1-5)", "Caries decreased."),
    ("Environ Toxicol Chem", "Toxicity increased. Environ Toxicol Chem 2016;35:1-9.", "Toxicity increased."),
    ("Environ Health Perspect", "Exposure was associated with asthma. Environ Health Perspect 124:1-8 (2016).",
     "Exposure was associated with asthma."),
    ("Antioxid. Redox Signal.", "ROS levels rose. Antioxid. Redox Signal. 25, 1-12.", "ROS levels rose."),
    ("J Orthop Sports Phys Ther", "Strength improved. J Orthop Sports Phys Ther 2016;46(5):1-9. Epub 2 Apr 2016.",
     "Strength improved."),
    ("J Strength Cond Res", "Smith, J and Doe, A. Sprint times. J Strength Cond Res 30(5): 1-8, 2016-The purpose "
     "of this study was to compare sprint times.", "The purpose of this study was to compare sprint times."),
    ("Turk J Pediatr", "Yilmaz A. Kawasaki disease. Turk J Pediatr 2016; 58: 1-7. Kawasaki disease is a "
     "vasculitis.", "Kawasaki disease is a vasculitis."),
    ("Laryngoscope", "Voice outcomes improved. 4. Laryngoscope, 126:1-5, 2016.", "Voice outcomes improved."),
    ("Laryngoscope", "Voice improved. Level of Evidence: N/A. Laryngoscope, 2016.",
     "Voice improved. Level of Evidence:"),
    ("Indian J Crit Care Med", "Mortality was 20%. Sharma R, Gupta S. Sepsis in the ICU. Indian J Crit Care Med "
     "2020;24(5):1-5.", "Mortality was 20%."),
    ("Int J Clin Pediatr Dent", "Caries risk was high. Rao A, Singh B. Caries in children. Int J Clin Pediatr Dent "
     "2016;9(2):1-6.", "Caries risk was high."),
    ("J Clin Sleep Med", "Apnea improved. Lee K, Kim J. CPAP adherence. J Clin Sleep Med. 2016;12(4):1-7.",
     "Apnea improved."),
    ("Hepatology", "Fibrosis regressed after treatment. (Hepatology 2016;64:1-12).",
     "Fibrosis regressed after treatment. "),
    ("AASLD", "Fibrosis regressed in most patients. Copyright 2016 by the AASLD.",
     "Fibrosis regressed in most patients."),
    ("Database Record", "Depression scores fell. (PsycINFO Database Record (c) 2016 APA, all rights reserved)",
     "Depression scores fell."),
    ("advance online publication", "Tumours regressed. Oncogene advance online publication, 14 March 2016.",
     "Tumours regressed."),
    ("This article is protected", "Results were robust. This article is protected by copyright. All rights "
     "reserved.", "Results were robust."),
    ("This article is part", "Plasticity shapes behaviour. This article is part of the themed issue 'Evolution of "
     "plasticity'.", "Plasticity shapes behaviour."),
    ("Elsevier Ltd", "Yields increased. 2016 Elsevier Ltd. All rights reserved.", "Yields increased."),
    ("How to cite this article:", "Outcomes were good. How to cite this article: Rao A. Title. J Dent 2016;1:1.",
     "Outcomes were good."),
    ("Cite this article:", "Bone healed. Cite this article: Bone Joint J 2016;98-B:1-6.", "Bone healed."),
    ("Citation", "Patients improved. Citation: Smith J (2016) Title. PLoS ONE 11(3): e0150000.",
     "Patients improved."),
    ("ClinicalTrials.gov:", "Mortality did not differ. ClinicalTrials.gov: NCT01234567.",
     "Mortality did not differ."),
    (".].", "Survival improved with the drug [Chin J Oncol 2016;38:1-5.].", "Survival improved with the drug "),
    ("https://youtu.be", ARXIV_YOUTUBE, ARXIV_YOUTUBE[:ARXIV_YOUTUBE.index(" Live Demo")]),
    ("The virtual slide(s) for this article", "Histology confirmed carcinoma. The virtual slide(s) for this "
     "article can be found here: http://www.diagnosticpathology.diagnomx.eu/vs/1234", "Histology confirmed carcinoma."),
    ("IMPACT STATEMENT", "Bone density increased. IMPACT STATEMENTThis work shows how to grow bone.",
     "Bone density increased."),
    # the study's selector is "Impact statement" but its pattern "Impact Statement": both must occur
    ("Impact statement", "Bone density increased. Impact StatementThis work (see the Impact statement) helps.",
     "Bone density increased."),
    (("RESULTS", "CONCLUSIONS"), ARXIV_UPPER, ARXIV_UPPER_CLEAN),
    (("Results", "Conclusions"), ARXIV_RESULTS, ARXIV_RESULTS_CLEAN),
    ("Expert commentary", "Biologics are changing care. Areas covered: This review summarizes trials. Expert "
     "commentary: More data are needed.",
     "Biologics are changing care. This review summarizes trials. More data are needed."),
    ("Details of funding", "Costs were lower. Details of funding are provided at the end of the article.",
     "Costs were lower."),
    ("This journal requires", "Pain decreased. This journal requires that authors assign a level of evidence to "
     "each article.", "Pain decreased."),
    ("Proprietary or commercial disclosure", "Visual acuity improved. Proprietary or commercial disclosure may be "
     "found after the references.", "Visual acuity improved."),
    ("See acknowledgments", "Trial outcomes were positive. See acknowledgments.", "Trial outcomes were positive."),
    ("This article is one of ten", "Sepsis guidelines are reviewed. This article is one of ten reviews selected "
     "from the Annual Update in Intensive Care and Emergency Medicine 2016.", "Sepsis guidelines are reviewed."),
    ("In an effort to expedite the publication of articles", "In an effort to expedite the publication of articles "
     "related to the COVID-19 pandemic, AJHP is posting these manuscripts online as soon as possible.", ""),
    ("For complete coverage", "Thyroid function was normal. For complete coverage of all related areas of "
     "Endocrinology, please visit our on-line Textbook.", "Thyroid function was normal."),
    ("Abbreviations", "Stroke risk was reduced. Abbreviations: AF, atrial fibrillation; OR, odds ratio.",
     "Stroke risk was reduced."),
    ("ABBREVIATIONS", "Stroke risk was reduced. ABBREVIATIONS: AF = atrial fibrillation.", "Stroke risk was reduced."),
    ("Registration number", "Pain decreased. Registration number of the clinical trial: NCT01234567.",
     "Pain decreased."),
    (" de ", "Adherence was low among older adults. Analisar a adesão ao tratamento de idosos. Método: estudo "
     "transversal.", "Adherence was low among older adults."),
]


def _name(rule) -> str:
    return rule_name(rule)


@pytest.mark.parametrize("rule, text, expected", EXAMPLES, ids=[f"{_name(r)}-{i}" for i, (r, _, _) in
                                                                   enumerate(EXAMPLES)])
def test_each_rule_on_a_real_example(rule, text, expected):
    assert clean_text(text) == expected
    cleaner = Cleaner()
    assert cleaner.clean([text]) == [expected]
    if text != expected:
        assert cleaner.counts[_name(rule)] == 1, dict(cleaner.counts)   # this very rule changed the text
        assert cleaner.changed == 1


def test_every_rule_of_the_study_has_an_example():
    assert {_name(r) for r, _, _ in EXAMPLES} == {_name(sel) for sel, _ in RULES}
    assert len(RULES) == 87 and sum(len(subs) for _, subs in RULES) == 175    # the study's table (lines 64-318)
    assert RULES[0][0] == "&ldquo;" and RULES[-1][0] == " de "               # in its order


def test_rules_need_their_literal_selector():
    # an EN SPACE without the text "u2002": the study's selector does not pick the abstract
    assert clean_text("Doses were 10\u2002mg.") == "Doses were 10\u2002mg."
    # "Impact Statement" without the selector "Impact statement" is left as it is
    assert clean_text("Bone density increased. Impact StatementThis work helps.") == \
        "Bone density increased. Impact StatementThis work helps."
    # headings only when the text has both RESULTS and CONCLUSIONS (or Results and Conclusions)
    only_methods = "Sepsis is common. METHODS: We enrolled 120 patients. RESULTS: Mortality was 20%."
    assert clean_text(only_methods) == only_methods
    # a heading that follows no full stop stays (the study's patterns start with "\.")
    assert clean_text(ARXIV_RESULTS).startswith("Background: This study")
    # ^-anchored rules act only at the very start
    middle = "Data are at http://example.org/data. This article has been corrected."
    assert clean_text(middle) == middle


def test_selection_happens_once_per_rule_on_the_current_text():
    # "Copyright ©" removes the copyright line before " © " is looked for: " © " selects nothing then
    cleaner = Cleaner()
    cleaner.clean(["Mortality was 12%. Copyright © 2016 Elsevier Inc. All rights reserved."])
    assert dict(cleaner.counts) == {"Copyright ©": 1}
    # chained rules are each counted
    cleaner = Cleaner()
    out = cleaner.clean(["Strength improved. J Orthop Sports Phys Ther 2016;46(5):1-9. Epub 2 Apr 2016."])
    assert out == ["Strength improved."] and dict(cleaner.counts) == {"Epub": 1, "J Orthop Sports Phys Ther": 1}


def test_errata_titles():
    blanked = ["Correction: Sepsis in adults", "Erratum to: A trial of aspirin", "Corrigendum: Figure 2",
               "Retracted: A study of mice", "Retraction", "Correction to: Lung function in children",
               "Erratum: Dose tables", "Corrigendum to: Methods"]
    kept = ["Retraction of a shoulder", "Corrections for multiple testing", "Erratum", "retracted: lower case",
            "Retraction Watch and research integrity", None, ""]
    assert all(is_erratum(t) for t in blanked)
    assert not any(is_erratum(t) for t in kept)
    # a literal substring test: real arXiv titles (arxiv_2025_2026) that are no erratum match it too
    assert is_erratum("Chinese Grammatical Error Correction: A Survey")
    cleaner = Cleaner()
    texts = ["Sepsis is common. Copyright © 2016 Elsevier Inc.", "We present a survey of error correction.", None]
    out = cleaner.clean(texts, ["Erratum: Sepsis", "Chinese Grammatical Error Correction: A Survey", "Correction: x"])
    assert out == ["", "", None]                     # a missing abstract stays missing (it is skipped, not counted)
    assert cleaner.counts[ERRATA] == 2 and cleaner.changed == 2 and cleaner.seen == 2
    assert cleaner.as_dict()["rules"] == {ERRATA: 2}


def test_clean_counts_in_the_scan_and_the_report(tmp_path):
    """Errata keep their place in the yearly totals but give no word; the report and the manifest say what each
    rule changed."""
    rows = []
    for year in (2019, 2020, 2021, 2022):
        for i in range(6):
            rows.append({"title": f"Sepsis study {i}", "abstract": f"Sepsis mortality was lower in cohort {i}. "
                         "Copyright © 2016 Elsevier Inc. All rights reserved.", "year": year})
        rows.append({"title": "Erratum: Sepsis study", "abstract": "Figure 2 was wrong in the elsevier version.",
                     "year": year})
        rows.append({"title": "Tables", "abstract": ARXIV_RESULTS, "year": year})
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cli("excess", corpus, "-o", tmp_path / "clean", "--clean", "--no-figures", "--min-freq", "0", "-q", ok=True)
    cli("excess", corpus, "-o", tmp_path / "raw", "--no-figures", "--min-freq", "0", "-q", ok=True)
    clean = pd.read_csv(tmp_path / "clean" / "counts.csv", keep_default_na=False).set_index("word")
    raw = pd.read_csv(tmp_path / "raw" / "counts.csv", keep_default_na=False).set_index("word")
    assert clean.loc[""].tolist() == raw.loc[""].tolist() == [8, 8, 8, 8]    # errata still counted in the totals
    assert raw.loc["elsevier"].tolist() == [7, 7, 7, 7] and "elsevier" not in clean.index
    assert raw.loc["figure"].tolist() == [1, 1, 1, 1] and "figure" not in clean.index     # the erratum's words
    assert clean.loc["sepsis"].tolist() == [6, 6, 6, 6]
    assert raw.loc["methods"].tolist() == [1, 1, 1, 1] and "methods" not in clean.index    # a heading only
    manifest = json.loads((tmp_path / "clean" / "manifest.json").read_text())
    assert manifest["parameters"]["clean"] is True and manifest["stage"]["params"]["clean"] is True
    assert manifest["clean"]["rules"] == {ERRATA: 4, "Copyright ©": 24, "Results + Conclusions": 4}
    assert manifest["clean"]["changed"] == 32 and manifest["clean"]["abstracts"] == 32
    report = (tmp_path / "clean" / "report.md").read_text()
    assert "## Clean-up (`--clean`)" in report and "| `Copyright ©` | 24 |" in report
    assert "| `errata (title filter)` | 4 |" in report and "32 of 32 abstracts changed" in report
    assert json.loads((tmp_path / "raw" / "manifest.json").read_text())["clean"] is None


@pytest.mark.parametrize("source", ["file", "run"])
def test_clean_finds_errata_by_the_named_title_column_and_cleans_before_titles_join(tmp_path, source):
    """--title-col names the titles of the errata filter; with --with-titles the title is prepended after the
    clean-up, so that rules reading the abstract's start (headings) see the abstract alone."""
    rows = []
    for year in (2019, 2020, 2021, 2022):
        rows.append({"headline": "Sepsis study", "abstract": "Sepsis mortality was lower. Copyright © 2016 Elsevier "
                     "Inc. All rights reserved.", "year": year})
        rows.append({"headline": "Erratum: Sepsis study", "abstract": "Figure 2 was wrong.", "year": year})
        rows.append({"headline": "Tables", "abstract": ARXIV_RESULTS, "year": year})
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    if source == "run":
        cli("embed", corpus, "-o", tmp_path / "run", "--model", "tfidf", "--prepare-only", "-q", ok=True)
        corpus = tmp_path / "run"
    cli("excess", corpus, "-o", tmp_path / "out", "--clean", "--with-titles", "--title-col", "headline",
        "--no-figures", "--min-freq", "0", "-q", ok=True)
    counts = pd.read_csv(tmp_path / "out" / "counts.csv", keep_default_na=False).set_index("word")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["clean"]["rules"] == {ERRATA: 4, "Copyright ©": 4, "Results + Conclusions": 4}
    assert counts.loc["tables"].tolist() == [1, 1, 1, 1] and counts.loc["sepsis"].tolist() == [1, 1, 1, 1]
    assert "methods" not in counts.index and "figure" not in counts.index and "erratum" not in counts.index
    res = cli("excess", corpus, "-o", tmp_path / "bad", "--clean", "--title-col", "nosuch", "--no-figures", "-q")
    assert res.exit_code in (1, 2) and "--title-col" in res.output and "'nosuch'" in res.output
    assert not (tmp_path / "bad").exists()


def test_clean_needs_the_abstracts(tmp_path):
    table = tmp_path / "counts.csv"
    table.write_text("word,2020,2021,2022,2023\nsepsis,1,2,3,4\n,10,10,10,10\n")
    res = cli("excess", "--counts", table, "-o", tmp_path / "out", "--clean")
    assert res.exit_code == 2 and "--clean" in res.output


def test_clean_on_real_pubmed_records(pubmed_dir, tmp_path):
    """The MEDLINE sample (604 records, 526 abstracts) end to end: its one erratum (PMID 26407471, "[Correction:
    Adverse events ...]") is blanked but still counted, its one "Graphical abstract" tail and its one leading
    "Abstract" are removed, and the counts differ from the raw ones by exactly those words."""
    path = pubmed_dir / "medline16n0902_sample.xml.gz"
    cli("excess", path, "-o", tmp_path / "clean", "--clean", "--no-figures", "--min-freq", "0", "-q", ok=True)
    cli("excess", path, "-o", tmp_path / "raw", "--no-figures", "--min-freq", "0", "-q", ok=True)
    manifest = json.loads((tmp_path / "clean" / "manifest.json").read_text())
    assert manifest["clean"]["rules"] == {ERRATA: 1, "Graphical abstract": 1, "Abstract": 1}
    assert manifest["counts"]["totals"] == json.loads((tmp_path / "raw" / "manifest.json").read_text())[
        "counts"]["totals"]
    clean = pd.read_parquet(tmp_path / "clean" / "counts.parquet").set_index(["word", "period"])["count"]
    raw = pd.read_parquet(tmp_path / "raw" / "counts.parquet").set_index(["word", "period"])["count"]
    diff = (raw - clean.reindex(raw.index, fill_value=0))
    diff = diff[diff != 0]
    erratum = set(re.findall(r"\w\w+", "[This corrects the Table 4 of the article: pmid: 22828228].".lower()))
    tail = set(re.findall(r"\w\w+", "Graphical abstractSpectrum of Systems Biology Approaches for Drug "
                                      "Combinations.".lower()))
    assert set(diff.index.get_level_values("word")) <= erratum | tail | {"abstract"}
    assert {"graphical", "abstractspectrum", "corrects", "22828228"} <= set(diff.index.get_level_values("word"))
    assert (diff == 1).all() and set(clean.index) <= set(raw.index)


def test_rule_table_is_the_study_table():
    """Spot checks of the table against the study's text (02 lines 64-318): raw strings with the same value."""
    table = dict(RULES)
    assert table["u2002"] == ((r"\u2002", " "),)
    assert table["J Strength Cond Res"] == ((r".*J Strength Cond Res.{0,20}20[012][0-9]-([A-Z])", r"\1"),)
    assert table[("RESULTS", "CONCLUSIONS")][6] == (r"\.\s*METHODS?[.: ][.:]?\s*([A-Z])", r". \1")
    assert len(table[("Results", "Conclusions")]) == 18 and len(table[" de "]) == 14
    for _, subs in RULES:
        for pattern, _ in subs:
            re.compile(pattern)
