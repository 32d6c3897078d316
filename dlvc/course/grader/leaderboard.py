"""``dlvc leaderboard``: the class competition of Assignment 3, every entry scored on a held-out split.

    dlvc leaderboard submissions/ --out grades/                       # the synthetic test split, seed 1
    dlvc leaderboard submissions/ --out grades/ --seed 81723          # a secret seed: a split nobody has seen
    dlvc leaderboard submissions/ --out grades/ --data-root data/     # the real Oxford-IIIT Pet test split

A competition entry is two files of a submission, beside its ``dlvc/`` (both optional
in ``assignments/assignment3/assignment.toml``)::

    competition/model.json   {"model": "pspnet", "arch": "resnet18", "num_classes": 3}
    competition/model.pt     torch.save(model.state_dict()) of dlvc.models.pspnet.PSPNet(3, arch)

What happens, in order:

1. Each argument is a submission (a zip, or a folder holding ``dlvc/``) or a folder
   of submissions, as for ``dlvc grade``.
2. The held-out split is loaded once, in this process: by default the synthetic twin,
   ``SyntheticPetSpecies(--split, --num-samples, --image-size, --seed)``; with
   ``--data-root`` the real ``PetSpecies(root, --split)``, resized to ``--image-size``
   by the evaluation transform (``--num-samples``, if given, takes the first ones).
   Anyone who knows the seed can draw the synthetic split, students too: pass a
   secret ``--seed``, or the real data, when the ranking counts.
3. Each submission (``--jobs`` at a time) is staged safely (:mod:`.submission`), its
   entry carried beside its ``dlvc/``; ``model.json`` is read and checked here.
4. In a sandboxed worker of its own, as graded tests run student code
   (:mod:`.sandbox`), the student's own PSPNet is built, the weights are loaded
   (``torch.load(..., weights_only=True)``, ``load_state_dict``), the model is put in
   eval mode, and the images go in as tensors, ``--batch-size`` at a time; under
   ``torch.inference_mode`` only the argmax of the logits comes back, (B, H, W)
   labels. An entry has ``--seconds`` and ``--memory-gib`` in all.
5. This process scores the labels against the masks, which never leave it, with the
   reference ``SegMetrics``: mIoU, IoU per class, pixel accuracy. An entry that is
   missing or malformed, does not load, crashes, hangs, or returns NaN or wrongly
   shaped logits gets no score and the reason; the others are ranked as usual.
6. The entries with a score are ranked by mIoU, ties by name.

Outputs in OUT:

    leaderboard.csv          one row per submission: rank, mIoU, IoU per class, pixel
                             accuracy, or the reason it has no score
    leaderboard.md           the same as a table, with the split and its seed, and the chart
    leaderboard.png          mIoU by submission, ranked
    <name>/leaderboard.json  the submission's entry: rank, scores or the whole reason, the split
    <name>/results.json      where ``dlvc grade --out OUT`` wrote one: its ``leaderboard``
                             field (Gradescope's, ``[{"name": "mIoU", "value": 0.81,
                             "order": "desc"}, ...]``; 0 for an entry without a score, so
                             that it sorts last) is added or replaced, everything else kept

No results.json is created where there is none: ``dlvc grade`` takes an existing
results.json for a graded submission and skips it, so one written here would keep
the submission from ever being graded. Grade first, then run the leaderboard with
the same ``--out`` (and again after a regrade, which writes results.json afresh);
the summary names the submissions that have no results.json yet. Staging and
scratch lie in ``OUT/.leaderboard/``. Every file is written atomically.

The exit status is 0 when the leaderboard was written, whatever the entries did;
1 when its class files could not be written (the message names each and why);
2 when it could not start (bad arguments, a missing dataset, no submissions, a
submission named like a class file, bubblewrap required but not working).
"""

import argparse
import csv
import io
import json
import math
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ...metrics import SegMetrics
from .grade import REPOSITORY_ROOT, GradeError, find_submissions
from .reports import (
    LEADERBOARD_CHART_NAME as CHART_NAME,
    LEADERBOARD_CSV_NAME as CSV_NAME,
    LEADERBOARD_DIRNAME as WORK_DIRNAME,
    LEADERBOARD_MARKDOWN_NAME as MARKDOWN_NAME,
    RESULTS_NAME,
    ReportError,
    _cell,
    _write_atomically,
    read_results,
    write_files,
)
from .isolation import SandboxError, add_isolation_arguments, choose_isolation
from .sandbox import Limits, Sandbox, WorkerError, describe_value
from .submission import SubmissionError, stage, submission_name
from ..sandboxed.probes import PROBE_PREFIX

MAX_CHANNELS, MAX_UPSAMPLING_STAGES = 4096, 5
"""The widest decoder and the most upsampling stages a model.json may ask for."""
MODEL_JSON, WEIGHTS = ENTRY_FILES = ("competition/model.json", "competition/model.pt")
MODEL = "pspnet"
MODEL_JSON_BYTES = 64 * 2**10
DEFAULT_SEED = 1
"""The synthetic split's seed: not the datasets' default 0 that students evaluate on, but public all the same."""
DEFAULT_NUM_SAMPLES = 200
ENTRY_NAME = "leaderboard.json"
SHORT_REASON_CHARACTERS = 300
"""Of a reason, what the tables and the terminal show; leaderboard.json holds all of it."""


class LeaderboardError(Exception):
    """The leaderboard cannot start; the message says why."""


class EntryError(Exception):
    """One submission's entry gets no score; the message is the reason."""


@dataclass(frozen=True)
class HeldOutSplit:
    """The images and masks every entry is scored on, in batches, and what they are."""

    batches: list[tuple[torch.Tensor, torch.Tensor]]  # float (B, 3, H, W) images, int64 (B, H, W) masks
    classes: tuple
    settings: dict  # dataset, split, samples, image size, seed or root: recorded with every result

    def describe(self) -> str:
        s = self.settings
        source = f"seed {s['seed']}" if s["dataset"] == "synthetic" else f"root {s['root']}"
        return f"{s['dataset']} {s['split']} split, {s['num_samples']} images of {s['image_size']} x {s['image_size']}, {source}"


@dataclass(frozen=True)
class Options:
    """How entries are run: the sandbox's isolation and limits, and what it must hide."""

    isolation: str
    seconds: float
    memory_bytes: int
    hidden: tuple[Path, ...]
    work: Path
    worker_user: str | None = None


@dataclass
class Entry:
    """One submission on the leaderboard: its scores, or the reason it has none."""

    name: str
    miou: float | None = None
    iou: list[float] = field(default_factory=list)  # per class; NaN for a class absent from masks and predictions
    pixel_accuracy: float | None = None
    reason: str | None = None
    seconds: float | None = None
    rank: int | None = None

    @property
    def scored(self) -> bool:
        return self.reason is None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("submissions", nargs="+", type=Path, help="zips, folders holding dlvc/, or folders of those")
    parser.add_argument("--out", type=Path, required=True, help="the output folder (the one dlvc grade wrote, to add to its results.json)")
    parser.add_argument("--split", choices=("test", "val"), default="test", help="the held-out split (default: %(default)s)")
    parser.add_argument("--data-root", type=Path, default=None, help="folder holding oxford-iiit-pet/: the real data (default: the synthetic twin)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the synthetic split; pass a secret one (default: %(default)s)")
    parser.add_argument("--num-samples", type=int, default=None, help=f"images in the split (default: {DEFAULT_NUM_SAMPLES} synthetic, all real ones)")
    parser.add_argument("--image-size", type=int, default=64, help="side of the square images in pixels (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=16, help="images sent to a model at a time (default: %(default)s)")
    parser.add_argument("--seconds", type=float, default=600.0, help="time an entry may take in all, loading included (default: %(default)s)")
    parser.add_argument("--memory-gib", type=float, default=4.0, help="memory an entry's worker may add (default: %(default)s)")
    parser.add_argument("--jobs", type=int, default=1, help="entries evaluated at a time, one core each (default: %(default)s)")
    add_isolation_arguments(parser)


def run(args: argparse.Namespace) -> int:
    try:
        check_arguments(args)
        sources = find_submissions(args.submissions)
        split = load_split(args)
        isolation, warning = choose_isolation(args.isolation, args.worker_user)
    except (LeaderboardError, GradeError, SandboxError) as error:
        print(f"dlvc leaderboard: {error}", file=sys.stderr)
        return 2
    if warning:
        print(f"dlvc leaderboard: {warning}", file=sys.stderr)
    out = args.out.resolve()
    options = Options(isolation, args.seconds, int(args.memory_gib * 2**30), hidden_folders(out, sources, args.data_root), out / WORK_DIRNAME, args.worker_user)
    print(f"dlvc leaderboard: {len(sources)} submission(s), {split.describe()}, isolation {isolation}, {args.jobs} job(s)", file=sys.stderr)
    try:
        entries = ranked(evaluate_all(sources, split, options, args.jobs))
    except SandboxError as error:
        print(f"dlvc leaderboard: {error}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(options.work, ignore_errors=True)
    try:
        without_results = write_outputs(out, entries, split)
    except ReportError as error:
        print(f"dlvc leaderboard: every entry was scored, but {error}", file=sys.stderr)
        return 1
    for line in summary_lines(entries, without_results):
        print(line)
    return 0


def check_arguments(args: argparse.Namespace) -> None:
    for name in ("num_samples", "image_size", "batch_size", "jobs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise LeaderboardError(f"--{name.replace('_', '-')}: expected at least 1, got {value}")
    for name in ("seconds", "memory_gib"):
        if not getattr(args, name) > 0:
            raise LeaderboardError(f"--{name.replace('_', '-')}: expected a positive number, got {getattr(args, name)}")
    if args.out.exists() and not args.out.is_dir():
        raise LeaderboardError(f"--out {args.out}: a file, not a folder")


def hidden_folders(out: Path, sources: list[Path], data_root: Path | None) -> tuple[Path, ...]:
    """What the sandbox must not show: the repository, the outputs, every submission, the masks of the real data."""
    folders = [REPOSITORY_ROOT, out, *{source.resolve().parent for source in sources}]
    return tuple(folders + ([data_root.resolve()] if data_root is not None else []))


# ----- the held-out split ----------------------------------------------------------------------


def load_split(args: argparse.Namespace) -> HeldOutSplit:
    """The split of the arguments, in batches; LeaderboardError with the dataset's own message when it cannot be read."""
    # Imported here: the datasets bring torchvision, and every `dlvc` command imports this module.
    from ...datasets.species import SPECIES_CLASSES, PetSpecies
    from ...datasets.synthetic import SyntheticPetSpecies
    from ...datasets.transforms import eval_transforms

    settings = {"split": args.split, "image_size": args.image_size}
    try:
        if args.data_root is None:
            count = args.num_samples or DEFAULT_NUM_SAMPLES
            dataset = SyntheticPetSpecies(args.split, num_samples=count, image_size=args.image_size, seed=args.seed)
            settings.update(dataset="synthetic", seed=args.seed)
        else:
            dataset = PetSpecies(args.data_root, args.split, transforms=eval_transforms(args.image_size))
            count = min(args.num_samples or len(dataset), len(dataset))
            settings.update(dataset="Oxford-IIIT Pet", root=str(args.data_root))
        items = [dataset[index] for index in range(count)]
    except (OSError, ValueError) as error:
        raise LeaderboardError(str(error)) from None
    if not items:
        raise LeaderboardError(f"the {args.split} split holds no images")
    settings["num_samples"] = len(items)
    batches = [
        (torch.stack([image for image, _ in items[start : start + args.batch_size]]), torch.stack([mask for _, mask in items[start : start + args.batch_size]]))
        for start in range(0, len(items), args.batch_size)
    ]
    return HeldOutSplit(batches, SPECIES_CLASSES, settings)


# ----- one entry --------------------------------------------------------------------------------


def evaluate_all(sources: list[Path], split: HeldOutSplit, options: Options, jobs: int) -> list[Entry]:
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(evaluate_submission, source, split, options) for source in sources]
        return [future.result() for future in tqdm(futures, desc="leaderboard", unit="submission", file=sys.stderr)]


def evaluate_submission(source: Path, split: HeldOutSplit, options: Options) -> Entry:
    """Stage one submission and score its entry; the Entry holds the reason when there is no score."""
    name = submission_name(source)
    staging = options.work / "staging" / name
    started = time.monotonic()
    try:
        staged = stage(source, staging, ENTRY_FILES, carried_files=ENTRY_FILES)
        if staged.missing:
            raise EntryError(f"no competition entry: the submission has no {' and no '.join(staged.missing)}")
        config = read_model_json(staged.root / MODEL_JSON, len(split.classes))
        metric = SegMetrics(split.classes)
        predict_split(staged.root, config, split, options, metric, key=name)
        entry = Entry(name, metric.mIoU(), metric.iou().tolist(), metric.pixel_accuracy())
    except SubmissionError as error:
        entry = Entry(name, reason=f"the submission could not be staged: {error}")
    except EntryError as error:
        entry = Entry(name, reason=str(error))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    entry.seconds = time.monotonic() - started
    return entry


def read_model_json(path: Path, num_classes: int) -> dict:
    """The keyword arguments of the PSPNet that ``competition/model.json`` names; EntryError saying what is wrong.

    Required: ``model`` ("pspnet"), ``arch`` and ``num_classes``; optional: the
    decoder's widths, ``decoder_channels`` (an int) and ``upsampling_channels`` (a list
    of ints), as the Assignment 3 notebook writes them.
    """
    from ...models.pspnet import ENCODERS  # the reference's list of encoders (imported here: it brings torchvision)

    expected = (
        f'expected {{"model": "{MODEL}", "arch": one of {", ".join(sorted(ENCODERS))}, "num_classes": {num_classes}}}, '
        'optionally with "decoder_channels": an int and "upsampling_channels": a list of ints'
    )
    if path.stat().st_size > MODEL_JSON_BYTES:
        raise EntryError(f"{MODEL_JSON} is {path.stat().st_size} bytes, more than {MODEL_JSON_BYTES}; {expected}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EntryError(f"{MODEL_JSON} is not valid JSON ({error}); {expected}") from None
    required, optional = {"model", "arch", "num_classes"}, {"decoder_channels", "upsampling_channels"}
    if not isinstance(data, dict) or not required <= set(data) <= required | optional:
        keys = sorted(data) if isinstance(data, dict) else type(data).__name__
        raise EntryError(f"{MODEL_JSON}: {expected}, got {keys}")
    widths = data.get("upsampling_channels", [1])
    if (
        data["model"] != MODEL
        or data["arch"] not in ENCODERS
        or type(data["num_classes"]) is not int
        or data["num_classes"] != num_classes
        or not _width(data.get("decoder_channels", 1))
        or not (isinstance(widths, list) and 1 <= len(widths) <= MAX_UPSAMPLING_STAGES and all(map(_width, widths)))
    ):
        raise EntryError(f"{MODEL_JSON}: {expected}, got {json.dumps(data)[:200]}")
    return {key: value for key, value in data.items() if key != "model"}


def _width(value) -> bool:
    """Whether a channel count in model.json is an int in [1, MAX_CHANNELS]."""
    return type(value) is int and 1 <= value <= MAX_CHANNELS


def predict_split(package_root: Path, config: dict, split: HeldOutSplit, options: Options, metric: SegMetrics, key: str) -> None:
    """Run the entry in a sandboxed worker on every batch and add its labels to ``metric``; EntryError when it goes wrong."""
    limits = Limits(seconds=options.seconds, memory_bytes=options.memory_bytes)
    scratch = options.work / "tmp"
    with Sandbox(package_root, options.isolation, limits, hidden=options.hidden, scratch=scratch, worker_user=options.worker_user) as sandbox, sandbox.session(key) as worker:
        try:
            predictor = worker.new(f"{PROBE_PREFIX}SavedModelPredictor", config, WEIGHTS)
            first = 0
            for images, masks in split.batches:
                labels = predictor.call("predict", images)
                check_labels(labels, masks, config["num_classes"], first)
                metric.update(labels.to(torch.int64), masks)
                first += len(masks)
        except WorkerError as error:
            raise EntryError(str(error)) from None


def check_labels(labels, masks: torch.Tensor, num_classes: int, first: int) -> None:
    """EntryError unless ``labels`` are int64 or uint8 labels in [0, K) shaped like ``masks``."""
    where = f"images {first} to {first + len(masks) - 1}"
    if not isinstance(labels, torch.Tensor) or labels.dtype not in (torch.int64, torch.uint8) or labels.shape != masks.shape:
        raise EntryError(f"the predictions for {where} are {describe_value(labels)}; expected int64 or uint8 labels {tuple(masks.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise EntryError(f"the predictions for {where} hold labels outside [0, {num_classes})")


# ----- the ranking and what is written ------------------------------------------------------------


def ranked(entries: list[Entry]) -> list[Entry]:
    """The scored entries by mIoU (ties by name), numbered from 1, then the others by name."""
    scored = sorted((entry for entry in entries if entry.scored), key=lambda entry: (-entry.miou, entry.name))
    for rank, entry in enumerate(scored, start=1):
        entry.rank = rank
    return scored + sorted((entry for entry in entries if not entry.scored), key=lambda entry: entry.name)


def write_outputs(out: Path, entries: list[Entry], split: HeldOutSplit) -> list[str]:
    """Write every file of the module docstring; returns the names of the submissions that have no results.json.

    ReportError, once every submission's files are written, when a class file could not be.
    """
    without_results = []
    for entry in entries:
        folder = out / entry.name
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(folder / ENTRY_NAME, (json.dumps(entry_record(entry, split), indent=2) + "\n").encode())
        if not add_to_results(folder, gradescope_leaderboard(entry, split)):
            without_results.append(entry.name)
    write_files(out, {
        CSV_NAME: lambda: leaderboard_csv(entries, split).encode(),
        CHART_NAME: lambda: leaderboard_png(entries),
        MARKDOWN_NAME: lambda: leaderboard_markdown(entries, split).encode(),
    })
    return without_results


def entry_record(entry: Entry, split: HeldOutSplit) -> dict:
    record = asdict(entry)
    record["iou"] = {item.name: _finite_or_none(value) for item, value in zip(split.classes, entry.iou)}
    return {**record, "split": split.settings, "leaderboard": gradescope_leaderboard(entry, split)}


def gradescope_leaderboard(entry: Entry, split: HeldOutSplit) -> list[dict]:
    """Gradescope's ``leaderboard`` field: mIoU first (it sorts by it), each class's IoU, pixel accuracy; 0 without a score."""
    columns = [("mIoU", entry.miou)]
    columns += [(f"IoU {item.name}", value) for item, value in zip(split.classes, entry.iou) if math.isfinite(value)]
    columns.append(("pixel accuracy", entry.pixel_accuracy))
    return [{"name": name, "value": round(value, 4) if value is not None else 0.0, "order": "desc"} for name, value in columns]


def add_to_results(folder: Path, leaderboard: list[dict]) -> bool:
    """Add or replace the ``leaderboard`` field of ``folder/results.json``, keeping the rest; False when there is none."""
    results = read_results(folder)
    if results is None:
        return False
    results["leaderboard"] = leaderboard
    _write_atomically(folder / RESULTS_NAME, (json.dumps(results, indent=2, allow_nan=False) + "\n").encode())
    return True


def table_rows(entries: list[Entry], split: HeldOutSplit) -> tuple[list[str], list[list[str]]]:
    """The header and one row per entry, as the CSV and the Markdown show them."""
    header = ["rank", "submission", "mIoU", *(f"IoU {item.name}" for item in split.classes), "pixel accuracy", "reason"]
    rows = []
    for entry in entries:
        if entry.scored:
            scores = [_score(entry.miou), *(_score(value) for value in entry.iou), _score(entry.pixel_accuracy)]
            rows.append([str(entry.rank), entry.name, *scores, ""])
        else:
            rows.append(["", entry.name, *[""] * (len(split.classes) + 2), _short(entry.reason)])
    return header, rows


def leaderboard_csv(entries: list[Entry], split: HeldOutSplit) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header, rows = table_rows(entries, split)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def leaderboard_markdown(entries: list[Entry], split: HeldOutSplit) -> str:
    header, rows = table_rows(entries, split)
    scored = sum(entry.scored for entry in entries)
    lines = [
        "# Assignment 3: the class competition",
        "",
        f"{len(entries)} submission(s), {scored} with a score, on the {split.describe()}. "
        "Ranked by mIoU (ties by name); the scores were computed by the grader from the labels each model predicted.",
        "",
        "| " + " | ".join(name if "IoU" in name else name.capitalize() for name in header) + " |",
        "|---:|---|" + "---:|" * (len(header) - 3) + "---|",
        *("| " + " | ".join(_cell(value) or ("–" if index == 0 else "") for index, value in enumerate(row)) + " |" for row in rows),
        "",
        f"![mIoU by submission]({CHART_NAME})",
    ]
    return "\n".join(lines) + "\n"


def leaderboard_png(entries: list[Entry]) -> bytes:
    """A PNG bar chart of the scored entries' mIoU, the best at the top."""
    # The object-oriented Figure needs no pyplot backend and no closing (as in reports.scores_png).
    from matplotlib.figure import Figure

    scored = [entry for entry in entries if entry.scored]
    figure = Figure(figsize=(7, 1.5 + 0.35 * max(1, len(scored))), layout="constrained")
    axes = figure.subplots()
    positions = range(len(scored))
    axes.barh(list(positions), [entry.miou for entry in scored], color="tab:blue")
    axes.set_yticks(list(positions), [f"{entry.rank}. {entry.name}" for entry in scored])
    for position, entry in zip(positions, scored):
        axes.text(entry.miou, position, f" {entry.miou:.3f}", va="center")
    axes.invert_yaxis()
    axes.set_xlim(0, 1)
    axes.set_xlabel("mIoU")
    unscored = len(entries) - len(scored)
    axes.set_title("Class competition: mIoU by submission" + (f" ({unscored} without a score)" if unscored else ""))
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def summary_lines(entries: list[Entry], without_results: list[str]) -> list[str]:
    """What the command prints at the end: a short table, and where the files are."""
    width = max(len("submission"), *(len(entry.name) for entry in entries))
    lines = [f"{'rank':>4}  {'submission':<{width}}  {'mIoU':>6}  {'pixel acc.':>10}"]
    for entry in entries:
        if entry.scored:
            lines.append(f"{entry.rank:>4}  {entry.name:<{width}}  {entry.miou:6.4f}  {entry.pixel_accuracy:10.4f}")
        else:
            lines.append(f"{'-':>4}  {entry.name:<{width}}  no score: {_short(entry.reason, 160)}")
    lines.append(f"Wrote {CSV_NAME}, {MARKDOWN_NAME} and {CHART_NAME} in the output folder, and <name>/{ENTRY_NAME} for each submission.")
    with_results = len(entries) - len(without_results)
    lines.append(f"The leaderboard field is in {with_results} results.json." + (
        f" {len(without_results)} submission(s) have none yet ({', '.join(without_results[:10])}): "
        "grade them with `dlvc grade --out` into the same folder, then run this command again." if without_results else ""
    ))
    return lines


def _score(value: float) -> str:
    return "absent" if math.isnan(value) else f"{value:.4f}"


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _short(text: str, characters: int = SHORT_REASON_CHARACTERS) -> str:
    """A reason on one line, cut to ``characters``."""
    line = " ".join(text.split())
    return line if len(line) <= characters else line[: characters - 3] + "..."
