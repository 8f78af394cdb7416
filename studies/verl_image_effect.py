"""How much a figure moves the tiny VLM's token probabilities: the yardstick for verl's
``training/rollout_probs_diff_max`` in `make verl-demo-vlm` (docs/results.md#verl-cpu-demo-vlm).

verl reports the largest gap between the rollout's and the actor's probability of each response
token. Had the actor's forward pass gone without the prompt's image, that gap would be about what
dropping the image does to the model; this script measures the latter on the demo's own model
folder and training prompts: each prompt with a fixed 16-character continuation, the model's
probability of each continuation token with the image and without it (token by token, as verl
compares the rollout's and the actor's).

    .venv-verl/bin/python studies/verl_image_effect.py runs/verl-demo-vlm
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import polars as pl
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, AutoProcessor

from dps.models.vision import image_inputs, model_image_kwargs

CONTINUATION = "It has 5 sides.\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("demo", type=Path, help="the OUT folder of make verl-demo-vlm")
    parser.add_argument("--prompts", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    processor = AutoProcessor.from_pretrained(args.demo / "model", trust_remote_code=True)
    model = AutoModelForImageTextToText.from_pretrained(args.demo / "model", dtype=torch.float32).eval()
    rows = pl.read_parquet(args.demo / "data" / "train.parquet").head(args.prompts)
    gaps = []
    for cell, messages in zip(rows["images"], rows["prompt"], strict=True):
        image = Image.open(io.BytesIO(cell[0]["bytes"])).convert("RGB")
        text = messages[0]["content"].replace("<image>", "")
        turn = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
        prompt = processor.apply_chat_template(turn, add_generation_prompt=True, tokenize=False)
        ids = processor(text=[prompt + CONTINUATION], images=[image], return_tensors="pt")["input_ids"]
        tail = len(processor.tokenizer(CONTINUATION, add_special_tokens=False)["input_ids"])
        tokens = ids[0, -tail:].unsqueeze(1)
        with torch.no_grad():
            kwargs = model_image_kwargs(model, ids, [image_inputs(processor.image_processor, [image])])
            seen = model(input_ids=ids, **kwargs).logits[0, -tail - 1 : -1].softmax(-1).gather(1, tokens)
            blind = model(input_ids=ids).logits[0, -tail - 1 : -1].softmax(-1).gather(1, tokens)
        gaps.append((seen - blind).abs().squeeze(1))
    gap = torch.stack(gaps)
    print(json.dumps({"prompts": len(gaps), "positions": tail, "max": gap.max().item(), "mean": gap.mean().item()}))


if __name__ == "__main__":
    main()
