"""Models shared by the trainer and the integrations: the tiny ones built from configs (a text
Qwen2 and a Qwen2-VL-shaped vision-language model, with tokenizers and an image processor made
locally, nothing downloaded) in `dps.models.tiny`, and how a prompt of text and images becomes
model inputs (any Qwen2-VL-family model: the tiny one on a CPU, Qwen2.5-VL on a GPU) in
`dps.models.vision`. It imports nothing else of dps, so `dps.train` and `dps.integrations` both
use it."""
