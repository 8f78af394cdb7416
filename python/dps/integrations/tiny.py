"""A tiny, local GRPO setting for the TRL and verl integrations on a CPU (nothing downloaded).

* a tokenizer of 17 tokens (digits, ``+``, ``-``, ``=``, newline and three specials, the end of
  a turn being Qwen's ``<|im_end|>``, which verl's Qwen token handling looks up) with a chat
  template that just joins the messages, saved as a Hugging Face folder when asked;
* a freshly initialised Qwen2 of about 12k parameters (`dps.models.tiny.tiny_model`);
* arithmetic prompts ``"a+b="`` / ``"a-b="`` whose answers are single digits, and a reward that
  says whether a response starts with that digit.

A random model answers right about one time in 17, so with 8 responses a prompt comes out
unsolved, partly solved or (rarely) solved: the states a selection policy tells apart.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

PAD, EOS, UNK = "<pad>", "<|im_end|>", "<unk>"
#: Byte-level symbols (GPT-2's mapping: "Ċ" is the newline), so that the folder reads the same
#: through transformers' Qwen2 tokenizer class, which AutoTokenizer picks for a Qwen2 model.
SYMBOLS = ["Ċ"] + list("0123456789+-=")
#: Joins the messages' contents: the prompt "3+4=" is the model's whole input.
CHAT_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
DATA_SOURCE = "dps_tiny_arithmetic"


def digit_tokenizer() -> Any:
    """A fast tokenizer with one token per symbol (a byte-level BPE without merges; left padding)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: i for i, token in enumerate([PAD, EOS, UNK] + SYMBOLS)}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=EOS, unk_token=UNK)
    tokenizer.padding_side = "left"
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def tiny_policy_model(tokenizer: Any, seed: int = 0) -> Any:
    """A freshly initialised Qwen2 causal LM: one layer of width 32 (about 12k parameters)."""
    from dps.models.tiny import tiny_model

    return tiny_model(
        tokenizer, hidden_size=32, layers=1, heads=2, kv_heads=1, intermediate_size=64, max_positions=64, seed=seed
    )


def save_model_folder(path: str | Path, seed: int = 0) -> Path:
    """The tiny model and its tokenizer as a Hugging Face folder (what verl's workers load)."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = digit_tokenizer()
    model = tiny_policy_model(tokenizer, seed)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def arithmetic_problems(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """`n` distinct (prompt, answer) pairs, "a+b=" or "a-b=" with a one-digit answer, shuffled."""
    pairs = [(f"{a}+{b}=", str(a + b)) for a in range(10) for b in range(10) if a + b < 10]
    pairs += [(f"{a}-{b}=", str(a - b)) for a in range(10) for b in range(a + 1)]
    if not 1 <= n <= len(pairs):
        raise ValueError(f"the tiny arithmetic set has {len(pairs)} distinct problems; asked for {n}")
    random.Random(seed).shuffle(pairs)
    return pairs[:n]


def is_correct(response: str, answer: str) -> bool:
    """The response's first non-space character is the answer digit."""
    stripped = response.lstrip()
    return bool(stripped) and stripped[0] == answer


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: Any = None, **kwargs: Any
) -> dict[str, float]:
    """verl's custom reward function signature: 1 for a right first digit, else 0; ``acc`` too."""
    score = float(is_correct(solution_str, str(ground_truth)))
    return {"score": score, "acc": score}


def write_verl_parquet(path: str | Path, n: int, seed: int = 0) -> Path:
    """The problems as verl's RL dataset reads them (prompt messages, reward_model.ground_truth)."""
    import pandas as pd

    rows = [
        {
            "data_source": DATA_SOURCE,
            "prompt": [{"role": "user", "content": prompt}],
            "ability": "arithmetic",
            "reward_model": {"style": "rule", "ground_truth": answer},
            "extra_info": {"index": i, "split": "train"},
        }
        for i, (prompt, answer) in enumerate(arithmetic_problems(n, seed))
    ]
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(out)
    return out


# -- the tiny VLM setting: figures ---------------------------------------------------------------
#: Polygons of 3 to 6 sides: one-digit answers, read from the picture.
FIGURES_LEVELS = ["sides:3-6"]


def figures_task(n_train: int = 32, n_test: int = 8, seed: int = 0) -> Any:
    """The `figures` task at its easiest levels, answered by the first integer of a response (a
    fresh VLM writes no ``\\boxed{}``; a random one names the right count a few times in a hundred)."""
    from dps.tasks import make_task

    return make_task(
        "figures",
        n_train=n_train,
        n_test=n_test,
        n_warmup=0,
        levels=FIGURES_LEVELS,
        answer_format="first_int",
        seed=seed,
    )


def tiny_vlm_with_processor(seed: int = 0) -> tuple[Any, Any]:
    """The tiny Qwen2-VL (`dps.models.tiny.tiny_vlm`, with Qwen's ``<|im_end|>`` among its tokens)
    and its processor, a transformers `ProcessorMixin` (`dps.models.processor`): what TRL's
    ``processing_class`` and verl's multimodal data path take."""
    from dps.models.processor import Qwen2VLProcessor
    from dps.models.tiny import tiny_vlm

    model, vision = tiny_vlm(seed=seed, extra_tokens=(EOS,))
    tok = vision.tokenizer
    model.generation_config.pad_token_id = tok.pad_token_id
    processor = Qwen2VLProcessor(image_processor=vision.image_processor, tokenizer=tok, chat_template=tok.chat_template)
    return model, processor


def save_vlm_folder(path: str | Path, seed: int = 0) -> Path:
    """The tiny VLM and its processor as a Hugging Face folder; the processor is the folder's
    code (load it with ``trust_remote_code=True``, `dps.models.processor`)."""
    from dps.models.processor import save_processor

    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    model, processor = tiny_vlm_with_processor(seed)
    model.save_pretrained(folder, safe_serialization=True)
    save_processor(processor, folder)
    return folder


def figures_compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: Any = None, **kwargs: Any
) -> dict[str, float]:
    """verl's custom reward function for `figures_task`: 1 when the response's first integer is
    the answer, else 0; ``acc`` too."""
    from dps.tasks.base import extract_answer
    from dps.tasks.figures import parse_number

    answer = extract_answer(solution_str, "first_int")
    score = float(answer is not None and parse_number(answer) == parse_number(str(ground_truth)))
    return {"score": score, "acc": score}


def write_figures_parquet(folder: str | Path, n_train: int, n_test: int, seed: int = 0) -> tuple[Path, Path]:
    """`figures_task` as verl's RL dataset reads it (``prompt`` with ``<image>``, ``images``,
    ``reward_model.ground_truth``): ``folder/train.parquet`` and ``folder/test.parquet``."""
    from dps.tasks.geometry3k import write_parquet

    train, test = write_parquet(figures_task(n_train, n_test, seed), folder, layout="verl", instruction="")
    return Path(train), Path(test)
