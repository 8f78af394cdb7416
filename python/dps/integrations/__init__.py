"""Plug a dps policy into the trainers people already run.

Each framework has its own module, imported only when used (they pull in heavy packages):

* `dps.integrations.trl`: `DPSGRPOTrainer`, TRL's GRPOTrainer with prompts chosen by a policy.
* `dps.integrations.verl`: `DPSTrainer`, verl's V1 trainer (mode ``dps``) with prompts chosen
  by a policy; `python -m dps.integrations.verl` runs it with verl's Hydra config.
"""
