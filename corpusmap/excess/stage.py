"""The excess stage: count words per period (or read a count table), analyse every target period, measure word
groups and subgroups, and write tables, figures, ``report.md`` and ``manifest.json`` into one folder
(``RUN/excess`` by default), which appears as a whole."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

import pandas as pd

from corpusmap.corpus import CORE_COLUMNS
from corpusmap.errors import CorpusmapError, UsageProblem
from corpusmap.excess import report as rep
from corpusmap.excess import style as sty
from corpusmap.excess.analysis import Criteria, ExcessAnalysis, analyse, check_target, group_table, subgroup_table
from corpusmap.excess.periods import before_llm_tools, earlier_periods, period_kind_of, shift_period
from corpusmap.excess.scan import DATE_COLUMNS, ENGINES, PERIOD_KINDS, periods_present, scan_corpus
from corpusmap.excess.tables import CountTable, PresenceTable, read_counts
from corpusmap.excess.words import _TOKEN_FULL
from corpusmap.manifests import canonical_hash, file_record, try_read_manifest
from corpusmap.progress import warn
from corpusmap.run import Run
from corpusmap.stage import Stage, changed_flags, check_numbers, items, params_dict

GROUP_KINDS = ("excess", "style")
SUBGROUP_DELTAS = ("study", "group")


@dataclass(frozen=True)
class ExcessParams:
    """What an excess report is made from and how. ``source``: one RUN directory, or input files, folders and
    globs in any format corpusmap reads (or nothing, with ``counts``)."""

    source: tuple = ()
    counts: Optional[str] = None
    output: Optional[str] = None
    period: str = "year"
    year_col: Optional[str] = None
    date_col: Optional[str] = "auto"
    text_col: Optional[str] = None
    with_titles: bool = False
    title_col: str = "title"
    targets: tuple = ()
    criteria: Criteria = Criteria()
    group_words: dict = field(default_factory=dict)
    group: Optional[str] = None
    group_max_freq: Optional[float] = None
    style_words: Optional[str] = None              # --group style: the annotation (None: the study's, built in)
    style_groups: tuple = ()                       # --group-words groups declared to be style words
    cutoffs: tuple = sty.STUDY_CUTOFFS             # --group style: the bound's frequency cut-offs
    rare_max_freq: float = sty.STUDY_RARE_MAX_FREQ  # subgroup δ: rare style words have p < this in t
    common_words: tuple = sty.STUDY_COMMON_WORDS   # subgroup δ: the study's fixed common words
    by: Optional[str] = None
    min_group_size: int = sty.STUDY_MIN_GROUP_SIZE
    size_window: str = "t-6:t-1"                   # subgroups need min_group_size abstracts in each of these
    subgroup_delta: str = "study"                  # study: (δ_rare + δ_common) / 2 for style; group: one δ
    clean: bool = False                            # the study's clean-up of abstracts before counting
    lemmatize: bool = False                        # excess words also as lemmas
    top: int = 20
    figures: bool = True
    csv: bool = True

    def __post_init__(self):
        check_numbers(self)
        object.__setattr__(self, "source", tuple(str(s) for s in items(self.source)))
        object.__setattr__(self, "targets", tuple(str(t).strip() for t in items(self.targets)))
        if not self.source and not self.counts:
            raise UsageProblem("give INPUT files, a RUN directory, or --counts TABLE")
        if self.period not in PERIOD_KINDS:
            raise UsageProblem(f"--period must be one of {', '.join(PERIOD_KINDS)}, not {self.period!r}")
        if self.group is not None and self.group not in GROUP_KINDS:
            raise UsageProblem(f"--group must be one of {', '.join(GROUP_KINDS)}, not {self.group!r}")
        if self.group_max_freq is not None and self.group != "excess":
            raise UsageProblem("--group-max-freq applies to --group excess")
        if self.group_max_freq is not None and not 0 < self.group_max_freq <= 1:  # NaN fails this too
            raise UsageProblem(f"--group-max-freq must be a frequency in (0, 1], not {self.group_max_freq}")
        if self.min_group_size < 1 or self.top < 1:
            raise UsageProblem("--min-group-size and --top must be at least 1")
        if self.style_words is not None and self.group != "style":
            raise UsageProblem("--style-words applies to --group style (the annotation of the target's excess words)")
        object.__setattr__(self, "style_groups", tuple(dict.fromkeys(str(g) for g in items(self.style_groups))))
        for g in self.style_groups:
            if g not in self.group_words:
                raise UsageProblem(f"--style-group {g}: no --group-words group is named {g!r}"
                                   + (f" (the groups: {', '.join(self.group_words)})" if self.group_words else ""))
        try:
            cutoffs = tuple(float(c) for c in items(self.cutoffs))
        except (TypeError, ValueError):
            raise UsageProblem(f"--cutoffs must be numbers, not {self.cutoffs!r}") from None
        if not cutoffs or any(not 0 < c <= 1 for c in cutoffs):
            raise UsageProblem("--cutoffs must be frequencies in (0, 1], e.g. "
                               + ",".join(f"{c:g}" for c in sty.STUDY_CUTOFFS))
        object.__setattr__(self, "cutoffs", tuple(sorted(set(cutoffs))))
        if not 0 < float(self.rare_max_freq) <= 1:
            raise UsageProblem("--rare-max-freq must be a frequency in (0, 1]")
        object.__setattr__(self, "rare_max_freq", float(self.rare_max_freq))
        common = tuple(dict.fromkeys(str(w).strip().lower() for w in items(self.common_words) if str(w).strip()))
        if not common:
            raise UsageProblem("--common-words needs at least one word")
        object.__setattr__(self, "common_words", common)
        sty.parse_window(self.size_window)
        if self.by is not None and not str(self.by).strip():
            raise UsageProblem("--by needs a column name (or cluster[:LEVEL]); leave it out for no subgroups")
        if self.subgroup_delta not in SUBGROUP_DELTAS:
            raise UsageProblem(f"--subgroup-delta must be one of {', '.join(SUBGROUP_DELTAS)}, not "
                               f"{self.subgroup_delta!r}")
        self._check_applicable()
        for t in self.targets:  # a malformed target fails before any counting
            try:
                period_kind_of(t)
            except CorpusmapError as exc:
                raise UsageProblem(f"--target {exc}") from None
        if (self.group_words or self.group or self.by) and not self.source:
            raise UsageProblem("word groups (--group, --group-words) and --by need the abstracts themselves "
                               "(per-abstract presence), not only a count table: give INPUT or RUN as well")
        if self.clean and (not self.source or self.counts):
            raise UsageProblem("--clean cleans the abstracts before counting: give INPUT or RUN, without --counts "
                               "(a count table made elsewhere was counted on uncleaned text)")
        if not self.source and self.output is None:
            raise UsageProblem(f"--counts {self.counts}: give an output directory with -o OUT (the default "
                               "RUN/excess needs a RUN)")

    def _check_applicable(self) -> None:
        """An option changed from its default where it has no effect is refused, not silently ignored."""
        reading = changed_flags(self, "period", "with_titles", "title_col", "text_col", "year_col", "date_col")
        if reading and not self.source:
            raise UsageProblem(f"{', '.join(reading)}: for reading abstracts, which --counts alone does not do (the "
                               "table's own periods and counts are used); leave them out, or give INPUT or RUN too")
        if changed_flags(self, "title_col") and not (self.with_titles or self.clean):
            raise UsageProblem("--title-col names the titles for --with-titles and for --clean's errata filter; add "
                               "one of them or leave it out")
        study = changed_flags(self, "cutoffs", "rare_max_freq", "common_words")
        if study and self.group != "style":
            raise UsageProblem(f"{study[0]} applies to --group style (the study's lower bound and subgroup δ); "
                               "add --group style or leave it out")
        subgroups = changed_flags(self, "min_group_size", "size_window")
        if subgroups and not self.by:
            raise UsageProblem(f"{subgroups[0]} applies to the subgroups of --by COLUMN; add --by or leave it out")
        if changed_flags(self, "subgroup_delta") and not (self.by and self.group == "style"):
            raise UsageProblem("--subgroup-delta chooses the δ of the style words' subgroups: it needs --by "
                               "COLUMN and --group style")

    @property
    def window(self) -> tuple:
        """``size_window`` as period offsets from the target, e.g. ``(-6, -1)``."""
        return sty.parse_window(self.size_window)

    @property
    def run_dir(self) -> Optional[Path]:
        """The RUN directory when the source is one."""
        if len(self.source) == 1 and Run(self.source[0]).has_corpus():
            return Path(self.source[0])
        return None

    @property
    def out_dir(self) -> Path:
        return Path(self.output) if self.output is not None else Run(self.source[0]).excess_dir

    def workspace(self) -> Run:
        """The run whose lock and staging folder the output uses: the RUN itself (``RUN/excess``, the default),
        or the output folder's parent."""
        if self.output is None:
            return Run(self.source[0])
        if len(self.source) == 1 and self.out_dir.resolve() == Run(self.source[0]).excess_dir.resolve():
            return Run(self.source[0])
        return Run(self.out_dir.resolve().parent)


@dataclass
class ExcessStage(Stage):
    """``corpusmap excess``. How the words are counted (engine, threads, batch size) does not change the counts."""

    engine: str = "auto"
    threads: Optional[int] = None
    batch_rows: int = 16_384
    argv: Optional[list] = None

    name = "excess"
    what = "an excess report"
    definitions = 3  # 2: the study's lower bound (style words, cut-offs), subgroup δ and size window; 3: q uncapped
    elsewhere = "another output directory (-o)"
    unset = {"by": "none", "targets": "every period"}
    packages = ("pandas", "polars", "matplotlib", "scikit-learn", "lemminflect", "breame")

    def __post_init__(self):
        if self.engine not in ENGINES:
            raise UsageProblem(f"--engine must be one of {', '.join(ENGINES)}, not {self.engine!r}")

    def key(self, params: ExcessParams) -> str:
        return "excess" if params.output is None else f"excess:{params.out_dir.resolve()}"

    def record(self, params: ExcessParams) -> dict:
        """The parameters; a RUN source is recorded as the run itself, so that a moved run stays current."""
        out = params_dict(params)
        if params.output is None or (params.run_dir is not None and self.inputs(None, params)):
            out.update(source=["RUN"], output=None)
        return out

    def where(self, run: Run, params: ExcessParams) -> Path:
        return params.out_dir

    def stored(self, run: Run, params: ExcessParams) -> Optional[dict]:
        return try_read_manifest(params.out_dir / Run.MANIFEST)

    def check_files(self, run: Run, params, manifest: dict) -> Optional[str]:
        from corpusmap.neighbors import missing_files

        return missing_files(run, params.out_dir, manifest)

    def needs(self, params: ExcessParams) -> set:
        """The clustering of ``--by cluster:NAME`` when the report is its RUN's own (``RUN/excess``)."""
        from corpusmap.clusters import named_clustering, parse_cluster_spec

        if not by_region(params.by) or params.output is not None:
            return set()
        return named_clustering(parse_cluster_spec(params.by)[0])

    def check_plan(self, run: Run, params: ExcessParams, earlier: list, planned: Optional[dict] = None) -> None:
        """The clustering of ``--by cluster[:NAME]``: held by the RUN or made by a job before it (the RUN may be the
        pipeline's, with no corpus yet)."""
        from corpusmap.clusters import check_planned_clustering, parse_cluster_spec

        runs = {r.path.resolve() for _, r, _ in earlier} | {run.path.resolve()}
        own = [Path(s) for s in params.source if Path(s).resolve() in runs]
        source = params.run_dir or (own[0] if len(params.source) == 1 and own else None)
        if by_region(params.by) and source is not None:
            check_planned_clustering(Run(source), earlier, parse_cluster_spec(params.by)[0],
                                     f"[excess] with --by {params.by}", planned)

    def prepare(self, run: Run, params: ExcessParams) -> None:
        source = params.run_dir
        counting = [flag for flag, changed in (("--engine", self.engine != "auto"), ("--threads", self.threads),
                                               ("--batch-rows", self.batch_rows != ExcessStage.batch_rows)) if changed]
        if self.batch_rows != ExcessStage.batch_rows and params.source and source is None:
            raise UsageProblem("--batch-rows: it sets the rows per batch read from a RUN, and INPUT files are read "
                               "in batches of their own; drop it")
        if counting and not params.source:
            raise UsageProblem(f"{', '.join(counting)}: for counting words in abstracts, which --counts alone does "
                               "not do; leave them out, or give INPUT or RUN too")
        if params.counts and params.source and not (params.group_words or params.group or params.by):
            given = "RUN" if source is not None else "INPUT"
            raise UsageProblem(f"--counts gives the word counts, and {given} would be read only to measure word "
                               f"groups (--group, --group-words, --by): leave {given} out, or ask for a word group")
        if params.output is None and source is None:
            raise UsageProblem("give an output directory with -o OUT (the default RUN/excess needs a RUN)")
        _check_output_folder(params)
        if by_region(params.by) and source is None:
            raise UsageProblem(f"--by {params.by}: regions belong to a RUN (corpusmap clusters RUN); give the RUN")
        if source is not None:
            _check_run_columns(Run(source), params)
        if params.counts and not Path(params.counts).is_file():
            raise UsageProblem(f"--counts {params.counts}: no such file")
        if params.group == "style":
            sty.read_annotation(params.style_words)      # a bad annotation file fails before counting
        if params.lemmatize:
            from corpusmap.excess.lemmas import check_available

            check_available()

    def inputs(self, run: Run, params: ExcessParams) -> dict:
        if params.run_dir is not None and params.workspace().path == Run(params.run_dir).path:
            return _read_of_run(params)
        return {}

    def sources(self, run: Run, params: ExcessParams) -> dict:
        from corpusmap.atomic import sha256_file
        from corpusmap.corpus import input_fingerprint, resolve_inputs

        out = {}
        if params.run_dir is not None:
            if not self.inputs(run, params):  # a report outside the RUN: what it read of the RUN is a source
                where = params.run_dir.resolve()
                out.update({f"{key}:{where}": fp for key, fp in _read_of_run(params).items()})
        elif params.source:
            out["inputs"] = canonical_hash(input_fingerprint(resolve_inputs(params.source)))
        if params.counts:
            out[f"file:{params.counts}"] = sha256_file(params.counts)
        if params.group == "style":
            annotation = params.style_words or str(sty.BUILTIN_ANNOTATION)
            out["annotation" if params.style_words is None else f"file:{params.style_words}"] = \
                sha256_file(annotation)
        return out

    def compute(self, run: Run, params: ExcessParams, staging: Path, block: dict) -> dict:
        open_batches, source, source_info, scan = self._reader(params)
        result = compute_excess(staging, params, open_batches=open_batches, source=source,
                                source_info=source_info, scan_options=scan, argv=self.argv, block=block)
        return result.manifest

    def commit(self, run: Run, params: ExcessParams, staging: Path) -> None:
        run.commit_folder(staging, params.out_dir)

    def _reader(self, params: ExcessParams):
        """``(open_batches, source description, source info, scan options)`` for the params' source."""
        scan = {"period": params.period, "date_col": None if params.date_col in ("", "none") else params.date_col,
                "workers": self.threads, "engine": self.engine,
                "title_col": params.title_col if params.with_titles else None}
        if params.clean:
            scan.update(clean=True, clean_title_col=params.title_col)
        if params.run_dir is not None:
            corpus = Run(params.run_dir)
            scan.update(text_col=params.text_col or "text", year_col=params.year_col or "year",
                        total_rows=corpus.n_rows)
            dates = DATE_COLUMNS if params.date_col in (None, "auto") else (params.date_col,)
            names = corpus.corpus_columns()
            wanted = [scan["text_col"], scan["year_col"], scan["title_col"], params.by,
                      scan.get("clean_title_col"), *[c for c in names if c in dates]]
            columns = [c for c in dict.fromkeys(wanted) if c and c in names]
            if by_region(params.by):
                _, values = region_column(corpus, params.by)
                return (lambda: _with_column(corpus.iter_corpus_batches(columns, self.batch_rows), params.by,
                                             values),
                        f"run {corpus.path} (corpus.parquet) by {params.by}", {"run": str(corpus.path)}, scan)
            return (lambda: corpus.iter_corpus_batches(columns, self.batch_rows),
                    f"run {corpus.path} (corpus.parquet)", {"run": str(corpus.path)}, scan)
        if not params.source:
            return None, str(params.counts), {}, scan
        from corpusmap.corpus import ColumnMap, CorpusStats, iter_corpus, resolve_inputs

        paths = resolve_inputs(params.source)
        # the reader names the title column "title" (found by name unless --title-col says otherwise); the scan
        # prepends it after the clean-up, which must see the abstract alone
        columns = ColumnMap(text=params.text_col, year=params.year_col,
                            title=None if params.title_col == "title" else params.title_col, prepend=False,
                            keep=(params.by,) if params.by and not by_region(params.by) else ())
        reader_stats: list = []

        def open_batches():
            stats = CorpusStats()
            reader_stats.append(stats)
            for batch in iter_corpus(paths, columns=columns, stats=stats):
                yield _by_from_core_column(batch, params.by, stats)

        scan.update(text_col="text", year_col="year", title_col="title" if params.with_titles else None,
                    **({"clean_title_col": "title"} if params.clean else {}))
        source = ", ".join(str(p) for p in paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        return open_batches, source, {"inputs": [str(p) for p in paths], "reader": reader_stats}, scan


def _check_run_columns(corpus: Run, params: ExcessParams) -> None:
    """Every column a flag names is in the RUN's corpus.parquet, and so is a period column; the errors list all
    of its columns (not only those that would be read)."""
    explicit_date = params.date_col not in (None, "", "none", "auto")
    for column, flag in ((params.text_col, "--text-col"), (params.year_col, "--year-col"),
                         (None if by_region(params.by) else params.by, "--by"),
                         (params.date_col if explicit_date else None, "--date-col"),
                         (params.title_col if params.with_titles or params.title_col != "title" else None,
                          "--title-col")):
        if column:
            corpus.check_corpus_column(column, flag)
    names = corpus.corpus_columns()
    has_date = explicit_date or (params.date_col == "auto" and any(c in names for c in DATE_COLUMNS))
    if params.period == "month" and not has_date:
        raise UsageProblem(f"--period month needs a date column: none of {', '.join(DATE_COLUMNS)} is in "
                           f"{corpus.corpus_path}; name one with --date-col (columns: {', '.join(names)})")
    if params.period == "year" and (params.year_col or "year") not in names and not has_date:
        raise UsageProblem(f"{corpus.corpus_path} has no 'year' column and no date column; name one with "
                           f"--year-col or --date-col (columns: {', '.join(names)})")
    if by_region(params.by):
        region_column(corpus, params.by)
    if params.with_titles and (params.text_col or "text") == "text" and corpus.texts_begin_with_titles:
        raise UsageProblem(f"--with-titles: the texts of {corpus.path} were read with --title-col and begin with "
                           "their titles already; leave it out (or it counts each title twice)")
    if params.targets:  # a --target the abstracts cannot have fails before hours of counting
        periods = periods_present(lambda column: corpus.iter_corpus_batches([column]), names, period=params.period,
                                  year_col=params.year_col or "year",
                                  date_col=None if params.date_col in ("", "none") else params.date_col)
        for t in params.targets if periods else ():   # no period at all: the scan says why
            check_target(sorted(periods), t, source=f"the abstracts of {corpus.corpus_path}")


def _check_output_folder(params: ExcessParams) -> None:
    """The report replaces its folder as a whole: ``-o`` onto a folder of other files (the user's, a RUN) is
    refused, which leaves it as it is; a new or empty folder, or an excess report's, is replaced."""
    out = params.out_dir
    if params.output is None or not out.exists() or _is_excess_folder(out):
        return
    if out.is_dir() and not any(out.iterdir()):
        return
    raise UsageProblem(f"-o {params.output}: a folder of other files than an excess report, which the report would "
                       "replace as a whole; choose an empty or new folder, or an existing excess report folder")


def _is_excess_folder(folder: Path) -> bool:
    """Whether ``folder`` holds an excess report (by its manifest) or is a RUN's own ``excess`` folder."""
    if (try_read_manifest(folder / Run.MANIFEST) or {}).get("command") == "excess":
        return True
    run = Run(folder.resolve().parent)
    return run.excess_dir.resolve() == folder.resolve() and run.has_corpus()


def by_region(by: Optional[str]) -> bool:
    """``--by cluster``, ``cluster:LEVEL``, ``cluster:NAME`` or ``cluster:NAME:LEVEL``: subgroups are the regions
    of the map."""
    return bool(by) and (by == "cluster" or by.startswith("cluster:"))


def _read_of_run(params: ExcessParams) -> dict:
    """What the report reads of RUN (output key -> fingerprint): its corpus, and the clustering of --by cluster."""
    source = Run(params.run_dir)
    out = {"corpus": source.corpus_fingerprint}
    if by_region(params.by):
        from corpusmap.clusters import clustering_fingerprint, default_clustering, parse_cluster_spec

        name = parse_cluster_spec(params.by)[0] or default_clustering(source)
        out[f"clusters/{name}"] = clustering_fingerprint(source, name)
    return out


def region_column(run: Run, by: str):
    """``(clustering name, per-row subgroup values)`` for ``--by cluster...``: each row's region at that level as
    ``"ID: keywords"`` (None outside every region)."""
    import numpy as np

    from corpusmap.clusters import parse_cluster_spec, read_clustering

    name, level_spec = parse_cluster_spec(by)
    clustering = read_clustering(run, name)
    level = clustering.level(level_spec, "--by")
    names = clustering.names(level)
    text = np.array([None] + [f"{c}: {n}" for c, n in enumerate(names)], dtype=object)
    return clustering.name, text[clustering.levels[level] + 1]


def _with_column(batches, name: str, values):
    """The batches with one more column, ``values`` sliced in row order."""
    import pyarrow as pa

    offset = 0
    for batch in batches:
        yield batch.append_column(name, pa.array(values[offset:offset + batch.num_rows], type=pa.string()))
        offset += batch.num_rows


def _check_group_periods(presence: PresenceTable, targets: list, counts: str) -> None:
    """Word groups are measured on the abstracts: they must hold every target of the count table and its three
    earlier periods (a table counted on another corpus would give groups without those periods)."""
    frame = presence.frame
    have = set(frame.loc[frame["subgroup"].isna(), "period"].astype(str))
    missing = sorted({p for t in targets for p in (t, *earlier_periods(t)) if p not in have})
    if missing:
        raise UsageProblem(f"the abstracts have no period {', '.join(missing[:6])}"
                           + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
                           + f", which the word groups need for the targets of --counts {counts}: give the corpus "
                           "the table was counted from, or --target periods the abstracts cover")


def _by_from_core_column(batch, by, stats):
    """``--by venue`` when the reader turned ``venue`` into its ``label`` column: add it back under its name."""
    if not by or by in batch.schema.names:
        return batch
    core = next((k for k, v in (stats.columns or {}).items() if v == by and k in batch.schema.names), None)
    if core is None:
        sources = [v for k, v in (stats.columns or {}).items() if v and k in batch.schema.names]
        names = list(dict.fromkeys(sources + [n for n in batch.schema.names if n not in CORE_COLUMNS]))
        raise UsageProblem(f"--by {by!r}: no such column in the input; its columns are {', '.join(names)} (and "
                           f"the normalised {', '.join(CORE_COLUMNS)})")
    return batch.append_column(by, batch.column(core))


@dataclass
class ExcessRun:
    """What :func:`compute_excess` made: the analysis, group results and the manifest."""

    analysis: ExcessAnalysis
    presence: Optional[PresenceTable]
    groups: pd.DataFrame
    subgroups: dict
    manifest: dict
    out_dir: Path
    bounds: pd.DataFrame = field(default_factory=pd.DataFrame)       # --group style: Δ per cut-off and target
    style_summary: pd.DataFrame = field(default_factory=pd.DataFrame)  # ... its maximum and the study's mean
    lemmas: Optional[pd.DataFrame] = None                              # --lemmatize


def compute_excess(out_dir: Path, params: ExcessParams, *, open_batches: Optional[Callable[[], Iterable]],
                   source: str = "", source_info: Optional[dict] = None, scan_options: Optional[dict] = None,
                   argv: Optional[list] = None, block: Optional[dict] = None) -> ExcessRun:
    """Count (or read counts), analyse every target, measure word groups, write everything into ``out_dir``.

    ``open_batches()`` must return a fresh iterable of batches each time it is called (a second pass over the
    corpus measures the excess-word groups).
    """
    started = time.time()
    scan_options = dict(scan_options or {})
    group_words = {k: list(v) for k, v in params.group_words.items()}
    style_group = params.group == "style"
    excess_group = params.group == "excess" or bool(params.by and not group_words and not style_group)
    criteria, by = params.criteria, params.by
    annotation = sty.read_annotation(params.style_words) if style_group else None
    notes: list[str] = []
    scans: list[dict] = []
    presence = None
    for name in group_words:
        if style_group and (name == sty.COMMON_GROUP or name.startswith("style_")) or \
                excess_group and name.startswith("excess_"):
            raise UsageProblem(f"--group-words {name}=...: the name is taken by the built-in groups (style_..., "
                               "excess_...); choose another")

    # 1. counts (and the presence of user groups, in the same pass when counting)
    if params.counts is not None:
        table = read_counts(params.counts)
        count_source = str(params.counts)
        if open_batches is not None:
            notes.append(f"Word counts come from {params.counts}; word groups were measured on the abstracts.")
            scan_options["period"] = table.period_kind   # groups per the same kind of period as the counts
    else:
        result = scan_corpus(open_batches(), words=True, groups=group_words or None,
                             by=by if group_words else None, **scan_options)
        table, presence = result.counts, result.presence
        scans.append({"pass": "words" + (" + groups" if group_words else ""), **result.stats})
        count_source = source

    # 2. analysis
    analysis = analyse(table, params.targets or None, criteria)
    targets = analysis.targets
    small = _no_word_notes(analysis) + _small_period_notes(table, targets, criteria)
    for note in small:  # the report says it, and so does the console: these targets' numbers are of few papers
        warn(note)
    notes += small

    # 3. word groups
    groups_for: dict[str, list[str]] = {t: list(group_words) for t in targets}
    all_group_words = dict(group_words)
    need: dict[str, list[str]] = {} if presence is not None else dict(group_words)
    if excess_group:
        for t in targets:
            words = analysis.excess_words(t, params.group_max_freq)
            name = f"excess_{t}" + (f"_below_{params.group_max_freq:g}" if params.group_max_freq is not None else "")
            if not words:
                notes.append(f"{t} has no excess words" + (f" below frequency {params.group_max_freq:g}"
                                                            if params.group_max_freq is not None else "")
                             + ": no excess-word group for it.")
                continue
            all_group_words[name] = need[name] = words
            groups_for[t].append(name)
    style: dict[str, dict] = {}
    if style_group:
        all_group_words[sty.COMMON_GROUP] = need[sty.COMMON_GROUP] = list(params.common_words)
        thresholds = sorted(set(params.cutoffs) | {params.rare_max_freq})
        for t in targets:
            st = sty.style_excess(analysis.words[t], annotation)
            info = {"annotation_counts": sty.annotation_counts(analysis.words[t], annotation),
                    "words": st["word"].tolist(), "p": dict(zip(st["word"], st["p"].astype(float))),
                    "below": {c: sty.below(st, c) for c in thresholds}}
            style[t] = info
            unannotated = info["annotation_counts"].get("(not annotated)", 0)
            if unannotated:
                notes.append(f"{t}: {unannotated:,} excess words are not in the annotation "
                             f"({annotation.source}) and are left out of the style group; the study annotated all "
                             "of its excess words (annotate yours with --style-words FILE.csv).")
            if st.empty:
                notes.append(f"{t} has no excess word annotated `style`: no lower bound for it.")
                continue
            all_group_words[sty.style_name(t)] = need[sty.style_name(t)] = info["words"]
            groups_for[t].append(sty.style_name(t))
            for c, ws in info["below"].items():
                if ws:
                    all_group_words[sty.cutoff_name(t, c)] = need[sty.cutoff_name(t, c)] = ws
    if need:
        result = _scan_groups(open_batches, need, by, scan_options)
        scans.append({"pass": "groups", **result.stats})
        presence = _merge_presence(presence, result.presence)
    if params.counts is not None and presence is not None:
        _check_group_periods(presence, [t for t in targets if groups_for[t]], params.counts)
    for name, words in group_words.items():
        unusable = [w for w in words if not _TOKEN_FULL.match(w)]
        if unusable:
            notes.append(f"Group `{name}`: {', '.join(unusable[:5])} can never match a token "
                         "(tokens are runs of 2+ letters, digits or underscores).")
    groups_df = group_table(presence, targets, criteria, groups_for) if presence is not None else pd.DataFrame()
    for note in _absent_group_notes(presence, groups_df):  # a δ of smoothing alone: said where it is printed
        warn(note)
        notes.append(note)
    if not groups_df.empty:
        lower = set(params.style_groups) | {sty.style_name(t) for t in style}
        groups_df["style_words"] = groups_df["group"].isin(lower)
        groups_df["lower_bound"] = groups_df["style_words"] & ~groups_df["target"].map(before_llm_tools)
    for name in group_words:
        if annotation is not None and name not in params.style_groups and \
                all(annotation.is_style(w) for w in group_words[name]):
            notes.append(f"Every word of group `{name}` is annotated `style`; declare it with --style-group {name} "
                         "to read its δ as a lower bound.")

    # the study's lower bound, per target
    bounds, style_rows = [], []
    for t, info in style.items():
        names = {c: sty.cutoff_name(t, c) for c in params.cutoffs}
        if presence is None or not info["words"]:
            continue
        tb = sty.bound_table(presence, t, params.cutoffs, info["below"], names, None, criteria.trend_steps)
        bounds.append(tb)
        rare = sty.cutoff_name(t, params.rare_max_freq) if info["below"][params.rare_max_freq] else None
        sd = sty.study_delta(presence, rare, sty.COMMON_GROUP, t, None, criteria.trend_steps)
        style_rows.append({"target": t, "excess_words": int(analysis.words[t]["is_excess"].sum()),
                           "style_words": len(info["words"]), "lower_bound": not before_llm_tools(t),
                           "not_annotated": info["annotation_counts"].get("(not annotated)", 0),
                           **sty.bound_summary(tb), "rare_words": len(info["below"][params.rare_max_freq]),
                           "delta_rare": sd["delta_rare"], "delta_common": sd["delta_common"],
                           "delta_study": sd["delta"]})
    bound_df = pd.concat(bounds, ignore_index=True) if bounds else pd.DataFrame()
    style_df = pd.DataFrame(style_rows)

    subgroups: dict = {}
    window = params.window
    if by and presence is not None:
        for t in targets:
            for g in groups_for[t]:
                if g == sty.style_name(t) and params.subgroup_delta == "study":
                    rare = sty.cutoff_name(t, params.rare_max_freq) if style[t]["below"][params.rare_max_freq] \
                        else None
                    if rare is None:
                        notes.append(f"{t}: no style word has p < {params.rare_max_freq:g}, so the study's subgroup "
                                     f"δ (the mean of the rare and the common words' δ) is not defined; "
                                     "--subgroup-delta group gives the style group's own δ.")
                        continue
                    sub = sty.study_subgroup_table(presence, g, rare, sty.COMMON_GROUP, t, params.min_group_size,
                                                   window, criteria.trend_steps)
                else:
                    sub = subgroup_table(presence, g, t, params.min_group_size, criteria, window)
                subgroups[(g, t)] = sub
            clipped = next((s.attrs for (g, tt), s in subgroups.items() if tt == t), None)
            if clipped and clipped["window"] != clipped["window_requested"]:
                req, used = clipped["window_requested"], clipped["window"]
                notes.append(f"{t}: the subgroup size window {req[0]}–{req[-1]} ({sty.format_window(window)}) starts "
                             f"before the corpus; sizes were checked in {used[0]}–{used[-1]} only."
                             if used else f"{t}: the subgroup size window {req[0]}–{req[-1]} lies before the "
                             "corpus; no size was checked.")

    lemmas = None
    excess_all = _excess_words_table(analysis, annotation)
    if params.lemmatize:
        from corpusmap.excess.lemmas import lemma_table, lemmatize

        lemmas = lemma_table(excess_all, annotation)
        excess_all.insert(2, "lemma", excess_all["word"].map(lemmatize))
    clean_stats = next((s["clean"] for s in scans if "clean" in s), None)
    if clean_stats is not None and clean_stats.get("title_column") is None:
        notes.append("--clean: the corpus has no title column, so the study's errata filter (titles such as "
                     "'Erratum:' or 'Retracted:') was not applied; the text rules were.")

    # 4. outputs
    written = _write_tables(out_dir, params, table, analysis, presence, groups_df, subgroups, excess_all,
                            bound_df, style_df, lemmas)
    figs = _write_figures(out_dir, params, table, analysis, presence, subgroups, written, bound_df) \
        if params.figures else {}
    stats = {**scans[0], "title_column": scan_options.get("title_col")} if scans and params.counts is None \
        else None
    files = [str(p.relative_to(out_dir)) for p in written] + ["report.md", Run.MANIFEST]
    group_record = {g: all_group_words[g] for g in (presence.groups if presence else {})}
    shown_groups = {g: all_group_words[g] for g in dict.fromkeys(g for t in targets for g in groups_for[t])
                    if g in group_record}
    study = {"annotation": annotation.source if annotation else None, "style": style, "bounds": bound_df,
             "summary": style_df, "cutoffs": params.cutoffs, "rare_max_freq": params.rare_max_freq,
             "common_words": list(params.common_words), "style_groups": list(params.style_groups),
             "subgroup_delta": params.subgroup_delta, "window": window, "min_group_size": params.min_group_size}
    text = rep.render_report(analysis, source=count_source, stats=stats, top=params.top, groups_df=groups_df,
                             group_words=shown_groups, subgroups=subgroups, by=by, figures=figs, notes=notes,
                             files=files, study=study, clean=clean_stats, lemmas=lemmas)
    rep.write_report(out_dir / "report.md", text)
    records = {str(p.relative_to(out_dir)): file_record(p) for p in written + [out_dir / "report.md"]}
    manifest = {
        "command": "excess",
        "argv": list(argv) if argv is not None else None,
        "seconds": round(time.time() - started, 3),
        "source": {"description": source, "counts": params.counts, **_plain(source_info or {})},
        "parameters": {**criteria.as_dict(), "targets": targets, "period": table.period_kind,
                       "scan": {k: v for k, v in scan_options.items() if k != "progress"},
                       "group_words": group_words, "excess_group": excess_group,
                       "group": params.group, "group_max_freq": params.group_max_freq,
                       "style_groups": list(params.style_groups),
                       "annotation": annotation.source if annotation else None,
                       "cutoffs": list(params.cutoffs), "rare_max_freq": params.rare_max_freq,
                       "common_words": list(params.common_words), "by": by,
                       "min_group_size": params.min_group_size, "size_window": sty.format_window(window),
                       "subgroup_delta": params.subgroup_delta, "clean": params.clean,
                       "lemmatize": params.lemmatize, "top": params.top, "figures": params.figures,
                       "csv": params.csv},
        "counts": {"periods": table.periods, "totals": table.totals.tolist(), "words": len(table),
                   "period_kind": table.period_kind},
        "scans": scans,
        "results": analysis.summary().to_dict(orient="records"),
        "groups": groups_df.to_dict(orient="records") if not groups_df.empty else [],
        "style_bound": _records(style_df),
        "subgroups": _subgroup_summary(subgroups, dict(zip(table.periods, table.totals.tolist()))),
        "clean": clean_stats,
        "lemmas": lemma_counts(lemmas) if lemmas is not None else None,
        "group_words": group_record,
        "notes": notes,
        "outputs": files,
        "files": records,
    }
    if block is not None:
        manifest["stage"] = dict(block, fingerprint=_fingerprint(records))
    from corpusmap.atomic import write_json

    write_json(out_dir / Run.MANIFEST, manifest)
    return ExcessRun(analysis, presence, groups_df, subgroups, manifest, out_dir, bound_df, style_df, lemmas)


def _fingerprint(records: dict) -> str:
    """Of the tables and figures, not of report.md: its text names the source's path, which a moved run changes."""
    return canonical_hash({name: record for name, record in records.items() if name != "report.md"})


def lemma_counts(lemmas: pd.DataFrame) -> dict:
    from corpusmap.excess.lemmas import lemma_summary

    return lemma_summary(lemmas)


def _records(df: pd.DataFrame) -> list:
    """Rows as JSON-ready dicts (NaN -> None)."""
    if df is None or df.empty:
        return []
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            for row in df.to_dict(orient="records")]


def _excess_words_table(analysis: ExcessAnalysis, annotation) -> pd.DataFrame:
    """Every target's excess words in one table (``target`` first), with their annotation when there is one."""
    excess_all = pd.concat([df[df["is_excess"]].assign(target=t) for t, df in analysis.words.items()],
                           ignore_index=True)
    excess_all = excess_all[["target"] + [c for c in excess_all.columns if c != "target"]]
    if annotation is not None:
        excess_all.insert(2, "annotation", sty.annotate(excess_all, annotation))
    return excess_all


def _scan_groups(open_batches, need: dict, by, scan_options: dict):
    """Presence of the groups in one pass; groups with the same words are scanned once (nested cut-off groups
    often coincide) and copied under each name."""
    first: dict = {}
    alias: dict = {}
    for name, words in need.items():
        key = frozenset(w.lower() for w in words)
        alias[name] = first.setdefault(key, name)
    unique = {name: need[name] for name in dict.fromkeys(alias.values())}
    result = scan_corpus(open_batches(), words=False, groups=unique, by=by, **scan_options)
    pres = result.presence
    copies = [pres.frame[pres.frame["group"] == src].assign(group=name) for name, src in alias.items()
              if name != src]
    frame = pd.concat([pres.frame, *copies], ignore_index=True) if copies else pres.frame
    frame = frame.sort_values(["group", "subgroup", "period"], na_position="first").reset_index(drop=True)
    groups = {name: sorted({w.lower() for w in need[name]}) for name in need}
    result.presence = PresenceTable(frame, groups, pres.by, pres.period_kind)
    return result


def _no_word_notes(analysis) -> list[str]:
    """Targets whose filters leave no word to analyse: no excess words there, whatever the counts say."""
    empty = [t for t in analysis.targets if analysis.words[t].empty]
    if not empty:
        return []
    c = analysis.params
    return [f"{', '.join(empty)}: no word passes --min-freq {c.min_freq:g} (in t and t-1) and --min-letters "
            f"{c.min_letters}{' (of the letters a-z)' if c.letters_only else ''}: nothing to analyse; lower them."]


def _small_period_notes(table: CountTable, targets: list, criteria: Criteria) -> list[str]:
    if criteria.min_freq <= 0:
        return []
    small = sorted({p for t in targets for p in (t, shift_period(t, -1)) if table.total(p) + 1 < 1 / criteria.min_freq})
    if not small:
        return []
    shown = sorted(sorted(small, key=table.total)[:8])  # the smallest periods, where it matters most, named
    named = [f"{p} ({table.total(p):,})" for p in shown]
    more = f" and {len(small) - len(shown)} more" if len(small) > len(shown) else ""
    return [f"{', '.join(named)}{more}: fewer than {1 / criteria.min_freq - 1:,.0f} "
            f"abstracts, so even an absent word has a smoothed frequency 1/(n+1) above --min-freq "
            f"{criteria.min_freq:g}: every word passes the frequency filter and small counts dominate; read these "
            "periods with care."]


def _absent_group_notes(presence: Optional[PresenceTable], groups_df: pd.DataFrame) -> list[str]:
    """Groups none of whose words occurs in the target or the three periods before: their δ is smoothing alone."""
    notes = []
    for row in groups_df.to_dict(orient="records") if not groups_df.empty else []:
        periods, n_with, _ = presence.series(row["group"])
        used = [str(row["target"]), *earlier_periods(row["target"])]
        if not any(n_with[periods.index(p)] for p in used):
            notes.append(f"group {row['group']}: none of its words occurs in {', '.join(used)}, so its δ in "
                         f"{row['target']} ({row['delta'] * 100:+.2f} percentage points) comes from the smoothing "
                         "(count + 1) alone; check the words")
    return notes


def _subgroup_summary(subgroups: dict, totals: dict) -> list[dict]:
    """Per (group, target) of ``--by``: how many subgroups were kept, left out for size or for want of abstracts in
    t … t−3 (``unmeasurable``), which δ they report (``delta_rule``), the two ends, and the periods of the size
    window without any abstract (``empty``: there no subgroup can pass, whatever its minimum size)."""
    rows = []
    for (g, t), sub in subgroups.items():
        unmeasurable = int(sub.attrs.get("unmeasurable", 0))
        window = [str(p) for p in sub.attrs.get("window") or []]
        row = {"group": g, "target": str(t), "delta_rule": sub.attrs.get("delta_rule", "group"), "kept": len(sub),
               "smaller": int(sub.attrs.get("skipped", 0)) - unmeasurable, "unmeasurable": unmeasurable,
               "min_group_size": int(sub.attrs.get("min_group_size", 0)), "window": window,
               "empty": [p for p in window if not totals.get(p)]}
        if len(sub):
            for end, at in (("highest", 0), ("lowest", -1)):
                row[end] = {"subgroup": str(sub["subgroup"].iloc[at]), "delta": float(sub["delta"].iloc[at])}
        rows.append(row)
    return rows


def _write_tables(out_dir: Path, params: ExcessParams, table: CountTable, analysis: ExcessAnalysis,
                  presence: Optional[PresenceTable], groups_df: pd.DataFrame, subgroups: dict,
                  excess_all: pd.DataFrame, bound_df: pd.DataFrame, style_df: pd.DataFrame,
                  lemmas: Optional[pd.DataFrame]) -> list[Path]:
    csv = params.csv
    written: list[Path] = []
    if params.counts is None:
        written += list(table.write(out_dir, csv=csv).values())
    for t, df in analysis.words.items():
        written += rep.write_table(df, out_dir / f"excess_{rep.safe_name(t)}", csv)
    written += rep.write_table(excess_all, out_dir / "excess_words", csv)
    written += rep.write_table(analysis.summary(), out_dir / "summary", csv)
    if lemmas is not None:
        written += rep.write_table(lemmas, out_dir / "excess_lemmas", csv)
    if not bound_df.empty:
        written += rep.write_table(bound_df, out_dir / "style_bound", csv)
    if not style_df.empty:
        written += rep.write_table(style_df, out_dir / "style_summary", csv)
    if presence is not None:
        written += rep.write_table(presence.frame, out_dir / "group_presence", csv)
        if not groups_df.empty:
            written += rep.write_table(groups_df, out_dir / "groups", csv)
        if subgroups:
            sub_all = pd.concat([d.assign(target=t) for (g, t), d in subgroups.items()], ignore_index=True)
            written += rep.write_table(sub_all, out_dir / "subgroups", csv)
    return written


def _write_figures(out_dir: Path, params: ExcessParams, table: CountTable, analysis: ExcessAnalysis,
                   presence: Optional[PresenceTable], subgroups: dict, written: list,
                   bound_df: Optional[pd.DataFrame] = None) -> dict:
    figs: dict[str, str] = {}
    fig_dir = out_dir / "figures"

    def keep(key: str, path: Optional[Path]) -> None:
        if path is not None:
            figs[key] = str(path.relative_to(out_dir))
            written.append(path)

    for t, df in analysis.words.items():
        st = rep.safe_name(t)
        keep(f"words_{t}", rep.plot_word_trends(fig_dir / f"words_{st}.png", table, df, t, 12,
                                                params=params.criteria))
        keep(f"scatter_{t}", rep.plot_delta_scatter(fig_dir / f"scatter_{st}.png", df, t, params=params.criteria))
    if presence is not None and presence.groups:
        shown = [g for g in presence.groups if not (g.startswith("style_") and "_below_" in g)]
        keep("groups", rep.plot_groups(fig_dir / "groups.png", presence, shown))
    if bound_df is not None and not bound_df.empty:
        for t, tb in bound_df.groupby("target", sort=False):
            keep(f"bound_{t}", rep.plot_bound(fig_dir / f"bound_{rep.safe_name(t)}.png", tb, t))
    for (g, t), sub in subgroups.items():
        key = f"subgroups_{rep.safe_name(g)}_{t}"
        keep(key, rep.plot_subgroups(fig_dir / f"{key}.png", sub, g, t, params.by))
    return figs


def _plain(value):
    """JSON-ready copy: objects with ``as_dict()`` (reader statistics) become dicts."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _merge_presence(first: Optional[PresenceTable], second: PresenceTable) -> PresenceTable:
    if first is None:
        return second
    frame = pd.concat([first.frame, second.frame], ignore_index=True)
    return PresenceTable(frame, {**first.groups, **second.groups}, second.by or first.by, second.period_kind)


__all__ = ["ExcessParams", "ExcessStage", "ExcessRun", "compute_excess"]
