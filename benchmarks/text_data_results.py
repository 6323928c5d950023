"""Write the ``text-data`` section of benchmarks/RESULTS.md from the built data's manifests.

Reads ``benchmarks/out/ood/*/manifest.json`` (benchmarks/build_ood_sets.py), the many-class task
(built on the fly, ~3 s) and ``benchmarks/out/corpus/manifest.json`` + ``build.json``
(benchmarks/build_text_corpus.py). No CPU-heavy work:

    .venv/bin/python benchmarks/text_data_results.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

from results_md import replace_section

from mrl.data.wordnet_classes import load_wordnet_classes
from mrl.io import read_json

ROOT = Path(__file__).resolve().parent.parent


def ood_section(root: Path) -> list[str]:
    lines = [
        "### Out-of-domain retrieval sets (BEIR format)",
        "",
        "Built by `flock /work/coord/cpu.lock .venv/bin/python benchmarks/build_ood_sets.py` (seed 0) into "
        "`benchmarks/out/ood/<name>/`: `corpus.jsonl`, `queries.jsonl`, `qrels/test.tsv` (one relevant document per "
        "query, grade 1), `unlabeled.jsonl` (same-domain documents for label-free fitting: never an evaluated "
        "document, never from a page/entry that has one) and `manifest.json` (sources, counts, seed, sha256 of every "
        "file, the evaluated groups). Load with `mrl.data.beir.load_beir(folder, max_queries=..., max_corpus=...)` and "
        "`mrl.data.beir.load_unlabeled(folder)`; `mrl eval-text --beir <folder>` evaluates on them. Rules: duplicate "
        "documents dropped; a query must be unique and must not appear verbatim in its document.",
        "",
        "| set | query -> document | queries | evaluated corpus | unlabeled | documents (after dedupe) | usable queries | build |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    notes = []
    for folder in sorted(p for p in root.glob("*") if (p / "manifest.json").is_file()):
        m = read_json(folder / "manifest.json")
        c, st = m["counts"], m["stats"]
        lines.append(f"| {folder.name} | {m.get('query', '')} -> {m.get('document', '')} | {c['queries']:,} | {c['corpus']:,} | {c.get('unlabeled', 0):,} | {st['documents_after_dedupe']:,} | {st['query_eligible']:,} | {m.get('build_seconds', '?')} s |")
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(st["queries_by_kind"].items(), key=lambda kv: -kv[1])[:8])
        unl = ", ".join(f"{k} {v}" for k, v in sorted(st["unlabeled_by_kind"].items(), key=lambda kv: -kv[1])[:6])
        notes.append(f"- **{folder.name}**: sources: {'; '.join(m['sources'])}. Queries by kind: {kinds}. Unlabeled by kind: {unl}. corpus.jsonl sha256 `{m['files']['corpus.jsonl']['sha256'][:16]}…`.")
    return [*lines, "", *notes]


def classes_section() -> list[str]:
    t = load_wordnet_classes()
    i = t.info
    table = " · ".join(f"{r['depth']}: {r['kept_categories']}/{r['categories']} ({r['members']:,})" for r in i["depth_table"][:8])
    return [
        "### Many-class text classification (WordNet hypernym categories)",
        "",
        "`mrl.data.wordnet_classes.load_wordnet_classes()` (WordNet 3.0 `data.noun`, seed 0; ~3 s): label = the ancestor at a fixed "
        "depth of the first-hypernym path (`@`/`@i`) to `entity` (depth 0); text = `lemma: definition`; stratified "
        "split by synset; calibration and test are disjoint (the cascade fits on one, reports on the other).",
        "",
        "| depth | classes (>= {} members) | members (before cap) | cap per class | members kept | class size min / median / max | train | val | calibration | test |".format(i["min_members"]),
        "|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        f"| {i['depth']} | {i['classes']} | {i['members_before_cap']:,} | {i['max_per_class']} | {i['members']:,} | {i['class_size_min']} / {i['class_size_median']:.0f} / {i['class_size_max']} | {i['splits']['train']:,} | {i['splits']['val']:,} | {i['splits']['calibration']:,} | {i['splits']['test']:,} |",
        "",
        f"Depth chosen as the smallest with >= 100 categories of >= 50 members. Per depth, kept/all categories (members covered): {table}. "
        "Without the cap (`max_per_class=None`) the largest category (`living thing`) holds 26 % of the 75,329 members; the cap keeps "
        "the task closer to ImageNet's near-balanced classes. Many test synsets are in the WordNet retrieval task's *training* split "
        "(the two tasks split independently): a text model fine-tuned on WordNet pairs has seen their definitions.",
    ]


def corpus_section(root: Path) -> list[str]:
    m = read_json(root / "manifest.json")
    b = read_json(root / "build.json") if (root / "build.json").is_file() else {}
    if not m.get("complete"):
        return ["### Text corpus", "", "Not built yet (run benchmarks/build_text_corpus.py)."]
    lw, tok, tim = m["lengths_words"], b.get("tokens", {}), b.get("timing", {})
    desc = {s["name"]: s for s in m["sources"]}
    rows = [
        "| source | what | files | passages extracted | after dedupe | in corpus |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, c in m["counts"].items():
        rows.append(f"| {name} | {desc[name]['description']} | {desc[name]['files']:,} | {c['passages_extracted']:,} | {c['after_dedupe']:,} | {c['in_corpus']:,} |")
    rows.append(f"| **total** | | | {sum(c['passages_extracted'] for c in m['counts'].values()):,} | {sum(c['after_dedupe'] for c in m['counts'].values()):,} | **{m['total']:,}** |")
    pct = lw["percentiles"]
    tp = tok.get("percentiles", {})
    return [
        "### Text corpus for retrieval benchmarks",
        "",
        f"`flock /work/coord/cpu.lock .venv/bin/python benchmarks/build_text_corpus.py` (seed {m['seed']}; needs `make bench-data`) writes "
        f"`benchmarks/out/corpus/`: {len(m['shards'])} shards `passages-*.jsonl` (`_id` p0000000…, `text`, `source`, `doc`), "
        f"`queries/test.jsonl` ({m['queries']['test']:,} held-out passages) and `queries/tune.jsonl` ({m['queries']['tune']:,}, disjoint), "
        f"the WordNet noun test task over the whole corpus (`wordnet/queries.jsonl` + `wordnet/qrels/test.tsv`: {m['queries']['wordnet_test']:,} "
        "queries of `load_wordnet()`'s test split, each relevant to its synset's definition passage), and fitting exclusions "
        f"(`exclude/wordnet_test_definitions.txt`: {m['exclusions']['wordnet_test_definitions']:,} passages; `exclude/ood_evaluated.txt`: "
        f"{m['exclusions']['ood_evaluated']:,} passages of the out-of-domain sets' evaluated pages/entries). Load with `mrl.corpora.corpus`: "
        "`load_corpus`, `iter_shards`, `load_queries`, `load_wordnet_task`, `fit_exclusions`.",
        "",
        "Passage rules: paragraphs of 8..80 words (longer ones cut on sentence boundaries into ~50-word runs), whitespace "
        "normalised, code/tables/option lists dropped by a prose filter, exact duplicates removed (lower-cased normalised text; "
        "first source in the table order wins); WordNet definitions are kept whole (the WordNet task retrieves them), and the "
        "usage examples of WordNet test synsets are left out (the task's queries are made of them). Held-out queries are never "
        f"WordNet test definitions. {m['duplicates_removed']:,} duplicates removed.",
        "",
        *rows,
        "",
        f"Length (words, whole corpus): mean {lw['mean']}, median {pct['50']}, p90 {pct['90']}, p99 {pct['99']}, max {lw['max']}; "
        f"{100 * lw['share_le_60']:.1f} % of passages have <= 60 words, {100 * lw['share_le_30']:.1f} % <= 30. "
        + (
            f"all-MiniLM-L6-v2 tokens (seeded sample of {tok['sample']:,}, [CLS]/[SEP] included): mean {tok['mean']}, median {tp['50']}, "
            f"p90 {tp['90']}, p99 {tp['99']}, max {tok['max']}; {100 * tok['share_le_128']:.1f} % <= 128 tokens, {100 * tok['share_gt_256']:.2f} % > 256 "
            "(the model's max_seq_length truncates those)."
            if tok
            else ""
        ),
        "",
        f"Build time: {tim.get('wall_seconds', '?')} s wall, {tim.get('cpu_seconds', '?')} s CPU ({tim.get('processes', '?')} processes) on the "
        "shared 2-core AMD EPYC CPU box, holding the CPU lock (other jobs outside the lock were running, so wall time is an upper bound); "
        f"extraction {m['seconds']['extract']} s, de-duplication + hold-out + shards {m['seconds']['finalise']} s. A rerun after a kill keeps finished "
        "extraction units and listed shards (tested in tests/test_corpus.py).",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ood", type=Path, default=ROOT / "benchmarks" / "out" / "ood")
    ap.add_argument("--corpus", type=Path, default=ROOT / "benchmarks" / "out" / "corpus")
    args = ap.parse_args()
    body = [
        "## Text data (out-of-domain sets, many-class task, 1M-passage corpus)",
        "",
        "Machine: the shared 2-core AMD EPYC CPU box. Section written by `.venv/bin/python benchmarks/text_data_results.py` from the manifests. "
        "Debian package descriptions are used nowhere (reserved for held-out evaluation).",
        "",
        *ood_section(args.ood),
        "",
        *classes_section(),
        "",
        *(corpus_section(args.corpus) if (args.corpus / "manifest.json").is_file() else ["### Text corpus", "", "Not built yet."]),
    ]
    replace_section("text-data", "\n".join(body))
    print("\n".join(body))


if __name__ == "__main__":
    main()
