"""The curation report: ``report.md`` and PNG plots, from the stats dict of ``run_curate``.

    write_plots(stats, doc_bytes, doc_kept, doc_tokens, out_dir)  # length_histogram.png, ...
    (out_dir / "report.md").write_text(render_markdown(stats))

The Markdown has tables of what was read and skipped, what each filter, the
decontamination and the two dedup stages removed, example near-duplicate pairs,
the decontamination hits, the tokenizer and the shards; the plots sit beside it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from diffucoder.plots import pyplot, save_figure

LENGTH_PLOT = "length_histogram.png"
REMOVALS_PLOT = "removals.png"


def _mb(n: float) -> str:
    return f"{n / 1e6:,.2f} MB"


def _pct(part: float, whole: float) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines + [""]


def removal_rows(stats: dict[str, Any]) -> list[tuple[str, str, int, int]]:
    """(stage, reason, documents, bytes) for every way a document can be removed."""
    rows = [("read", reason, n, 0) for reason, n in stats["read"]["bad_input"].items()]
    removed, removed_bytes = stats["removed"], stats["removed_bytes"]
    for stage in ("filter", "decontam", "dedup"):
        for reason, n in removed[stage].items():
            rows.append((stage, reason, n, removed_bytes[stage].get(reason, 0)))
    return rows


def render_markdown(stats: dict[str, Any]) -> str:
    read, kept, pack, tok = stats["read"], stats["kept"], stats["pack"], stats["tokenizer"]
    docs = read["documents"]
    out = ["# Curation report", "",
           f"Artifact: `{stats['output_uri']}`  ", f"Inputs: {', '.join(stats['inputs'])}  ",
           f"Time: {stats['timings']['total_s']:.1f} s on {stats['throughput']['workers']} "
           f"worker(s), {stats['throughput']['mb_per_s_per_core']:.2f} MB/s per core", ""]
    out += ["## Summary", ""] + _table(["", "documents", "bytes"], [
        ["read", f"{docs:,}", _mb(read["bytes"])],
        ["kept", f"{kept['documents']:,} ({_pct(kept['documents'], docs)})", _mb(kept["bytes"])],
        ["train tokens", f"{pack['train']['tokens']:,}", f"{pack['train']['rows']:,} rows"],
        ["validation tokens", f"{pack['val']['tokens']:,}", f"{pack['val']['rows']:,} rows"]])
    if read["limit_reached"]:
        out += ["Reading stopped at the input limit (input.max_files / input.max_bytes).", ""]
    out += ["## Not selected (excluded paths, other languages)", ""]
    out += _table(["reason", "count"], sorted(read["skipped"].items(), key=lambda kv: -kv[1])
                  or [["(none)", 0]])
    out += ["## Removed", "", "Each document counts once, under the first stage that removed it.",
            ""]
    out += _table(["stage", "reason", "documents", "share of read", "bytes"],
                  [[s, r, f"{n:,}", _pct(n, docs), _mb(b) if b else "-"]
                   for s, r, n, b in removal_rows(stats)])
    out += _near_dup_section(stats["near_dedup"])
    out += _decontam_section(stats["decontam"])
    out += ["## Tokenizer", ""] + _table(["", ""], [
        ["kind", tok["kind"]], ["id", f"`{tok['id']}`"], ["vocabulary", f"{tok['vocab_size']:,}"],
        ["special tokens", ", ".join(f"{k}={v}" for k, v in tok["special_tokens"].items())],
        ["trained on", _mb(tok["trained_on_bytes"]) if tok["trained_on_bytes"] else "-"]])
    out += ["## Shards", "", f"seq_len {pack['seq_len']}, dtype {pack['dtype']}; documents "
            "joined with `<|endoftext|>`.", ""]
    out += _table(["split", "documents", "rows", "tokens", "shards", "dropped tail tokens"],
                  [[name, f"{pack[name]['documents']:,}", f"{pack[name]['rows']:,}",
                    f"{pack[name]['tokens']:,}", pack[name]["shard_count"],
                    pack[name]["dropped_tail_tokens"]] for name in ("train", "val")])
    out += ["## Timing", ""] + _table(["phase", "seconds"],
                                      [[k, f"{v:.2f}"] for k, v in stats["timings"].items()])
    if stats.get("plots"):
        out += ["## Plots", ""] + [f"![{p}]({p})" for p in stats["plots"]] + [""]
    return "\n".join(out)


def _near_dup_section(near: dict[str, Any]) -> list[str]:
    out = ["## Near-duplicates", ""]
    if not near["enabled"]:
        return out + ["Near-dedup was off.", ""]
    out += [f"MinHash LSH: {near['num_perm']} permutations, {near['bands']} bands x "
            f"{near['rows']} rows, {near['shingle_size']}-token shingles, Jaccard threshold "
            f"{near['threshold']}. {near['pairs']:,} documents dropped in {near['clusters']:,} "
            f"clusters (largest: {near['largest_cluster']}).", ""]
    if "checked_pairs" in near:
        out += [f"Engine: datatrove ({near.get('candidate_pairs', '-')} LSH candidate pairs). "
                f"Exact-Jaccard check: {near['below_threshold']} of {near['checked_pairs']} "
                "removed files are below the threshold against the kept file they matched "
                "(the MinHash estimate is a sample; the check measures its misses).", ""]
    if near["examples"]:
        out += ["Examples (the kept representative, the dropped file, MinHash estimate, "
                "exact Jaccard of their shingle sets):", ""]
        out += _table(["kept", "dropped", "estimated J", "true J"],
                      [[f"`{e['kept']}`", f"`{e['dropped']}`", f"{e['estimated_jaccard']:.3f}",
                        f"{e['true_jaccard']:.3f}"] for e in near["examples"]])
    return out


def _decontam_section(dec: dict[str, Any]) -> list[str]:
    out = ["## Decontamination", ""]
    if not dec["enabled"]:
        return out + ["Decontamination was off.", ""]
    benches = ", ".join(f"{k} ({v} problems)" for k, v in dec["benchmarks"].items())
    out += [f"Benchmarks: {benches}; {dec['targets']} prompt/solution targets "
            f"({dec['skipped_short_targets']} too short to index); solution n-gram "
            f"{dec['ngram']}, prompt n-gram {dec['prompt_ngram']}, threshold {dec['threshold']}. "
            f"{dec['hit_count']} file(s) removed.", ""]
    if dec["hits"]:
        out += _table(["file", "benchmark", "task", "part", "overlap"],
                      [[f"`{h['path']}`", h["benchmark"], h["task_id"], h["part"],
                        f"{h['overlap']:.2f}"] for h in dec["hits"]])
    return out


def write_plots(stats: dict[str, Any], doc_bytes: np.ndarray, doc_kept: np.ndarray,
                kept_tokens: np.ndarray, out_dir: Path) -> list[str]:
    """Length histograms and the removals bar chart; the file names written."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    sizes = np.maximum(doc_bytes, 1)
    bins = np.logspace(0, np.log10(max(sizes.max(initial=1), 10)) + 0.1, 40)
    left.hist([sizes[doc_kept], sizes[~doc_kept]], bins=bins, stacked=True,
              label=["kept", "removed"], color=["tab:green", "tab:red"])
    left.set(xscale="log", xlabel="document size (bytes)", ylabel="documents",
             title="Documents read")
    left.legend()
    if len(kept_tokens):
        tbins = np.logspace(0, np.log10(max(kept_tokens.max(), 10)) + 0.1, 40)
        right.hist(np.maximum(kept_tokens, 1), bins=tbins, color="tab:blue")
    right.set(xscale="log", xlabel="tokens per document", ylabel="documents",
              title="Kept documents (tokenized)")
    save_figure(fig, out_dir / LENGTH_PLOT)

    rows = [r for r in removal_rows(stats) if r[2] > 0] or [("-", "nothing removed", 0, 0)]
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.5))
    colors = {"read": "tab:gray", "filter": "tab:orange", "decontam": "tab:red",
              "dedup": "tab:purple"}
    ax.barh([f"{s}: {r}" for s, r, _, _ in rows], [n for _, _, n, _ in rows],
            color=[colors.get(s, "tab:gray") for s, _, _, _ in rows])
    for i, (_, _, n, _) in enumerate(rows):
        ax.text(n, i, f" {n:,}", va="center")
    ax.invert_yaxis()
    ax.set(xlabel="documents removed", title="What each stage removed")
    save_figure(fig, out_dir / REMOVALS_PLOT)
    return [LENGTH_PLOT, REMOVALS_PLOT]
