"""A few held-out `figures` prompts with a trained VLM's answers, as one picture.

    .venv/bin/python studies/figures_answers.py RUN_DIR --out docs/assets/figures-answers.png

RUN_DIR is a `dps train` run folder on the `figures` task (its config.json names the task, its
model/ folder is the trained model). The first N test prompts are answered greedily, as the
run's evaluation does; each panel shows the image, the question, the model's answer and the
reference, green when judged right.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path


def answers(run: Path, n: int) -> list[tuple[object, str, str, str, bool]]:
    """(image, question, answer, reference, correct) for the first n test prompts."""
    from dps.tasks import make_task
    from dps.tasks.images import decode_image
    from dps.train.engines import HFEngine
    from dps.train.model import load_model
    from dps.train.prompts import PromptSet

    cfg = json.loads((run / "config.json").read_text())["config"]
    task = make_task(cfg["task"]["name"], **cfg["task"]["options"])
    examples = task.test()[:n]
    model, tok, vision = load_model(run / "model")
    prompts = PromptSet(examples, tok, vision, cfg["model"]["chat_template"], task.response_prefix)
    engine = HFEngine(model, tok)
    out = engine.generate(
        prompts.ids,
        1,
        max_new_tokens=cfg["rollout"]["max_new_tokens"],
        greedy=True,
        images=prompts.images_of(range(len(examples))),
    )
    rows = []
    for ex, (response,) in zip(examples, out, strict=True):
        text = tok.decode(response, skip_special_tokens=True)
        ok = task.verify(ex, text, timeout_s=0)
        rows.append((decode_image(ex.images[0]), ex.prompt, text.strip(), ex.answer, ok))
    return rows


def draw(rows: list[tuple[object, str, str, str, bool]], path: Path, columns: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = (len(rows) + columns - 1) // columns
    fig, axes = plt.subplots(lines, columns, figsize=(2.6 * columns, 3.0 * lines))
    for ax, (image, question, answer, reference, ok) in zip(axes.flat, rows, strict=False):
        ax.imshow(image, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title("\n".join(textwrap.wrap(question, 30)), fontsize=7)
        ax.set_xlabel(f"model: {answer!r}   reference: {reference}", fontsize=8, color="green" if ok else "red")
    for ax in list(axes.flat)[len(rows) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a dps train run folder on the figures task")
    ap.add_argument("--out", type=Path, required=True, help="the PNG to write")
    ap.add_argument("-n", type=int, default=12, help="test prompts to show (default 12)")
    args = ap.parse_args()
    rows = answers(args.run, args.n)
    draw(rows, args.out)
    print(f"{sum(r[4] for r in rows)} of {len(rows)} right; wrote {args.out}")


if __name__ == "__main__":
    main()
