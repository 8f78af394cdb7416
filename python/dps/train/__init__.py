"""dps train: GRPO finetuning with a selection policy choosing each step's prompts."""
