# Sourced by the verl launch scripts (math_dps.sh, geo3k_dps.sh): the overrides the paper's
# settings share (docs/method.md#recipe) and the launch itself. The caller sets MODEL,
# POLICY, OPTIONS, GPUS, OUT and EXPERIMENT, and its own ARGS (what differs between settings).
# Environment: PYTHON (default python3), NNODES (1), DRY_RUN=1 prints the composed config only.

COMMON_ARGS=(
    data.max_prompt_length=1024
    data.filter_overlong_prompts=True
    algorithm.adv_estimator=grpo
    algorithm.norm_adv_by_std_in_grpo=True
    algorithm.use_kl_in_reward=False
    actor_rollout_ref.model.path="$MODEL"
    actor_rollout_ref.model.use_remove_padding=True
    actor_rollout_ref.model.enable_gradient_checkpointing=True
    actor_rollout_ref.actor.optim.lr=1e-6
    actor_rollout_ref.actor.optim.lr_warmup_steps=0
    actor_rollout_ref.actor.optim.weight_decay=0.1
    actor_rollout_ref.actor.grad_clip=1.0
    actor_rollout_ref.actor.use_dynamic_bsz=True
    actor_rollout_ref.actor.clip_ratio_low=0.2
    actor_rollout_ref.actor.clip_ratio_high=0.28
    actor_rollout_ref.actor.clip_ratio_c=10.0
    actor_rollout_ref.actor.loss_agg_mode=token-mean
    actor_rollout_ref.actor.entropy_coeff=0.001
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.n=8
    actor_rollout_ref.rollout.temperature=1.0
    actor_rollout_ref.rollout.top_p=1.0
    actor_rollout_ref.rollout.top_k=-1
    actor_rollout_ref.rollout.gpu_memory_utilization=0.6
    actor_rollout_ref.rollout.log_prob_use_dynamic_bsz=True
    actor_rollout_ref.rollout.val_kwargs.n=16
    actor_rollout_ref.rollout.val_kwargs.temperature=0.6
    actor_rollout_ref.rollout.val_kwargs.do_sample=True
    trainer.n_gpus_per_node="$GPUS"
    trainer.nnodes="${NNODES:-1}"
    trainer.save_freq=20
    trainer.test_freq=20
    trainer.default_local_dir="$OUT"
    trainer.project_name=dps
    trainer.experiment_name="$EXPERIMENT"
    trainer.logger='["console"]'
    dps.policy="$POLICY"
    dps.options="$OPTIONS"
)

# Runs verl's PPO entry point with the dps trainer: the common overrides, then the caller's
# ARGS, then the command line's (a later override of the same key wins).
dps_verl_launch() {
    local python=${PYTHON:-python3}
    if [[ -n "${DRY_RUN:-}" ]]; then
        exec "$python" -m dps.integrations.verl "${COMMON_ARGS[@]}" "${ARGS[@]}" "$@" --cfg job
    fi
    exec "$python" -m dps.integrations.verl "${COMMON_ARGS[@]}" "${ARGS[@]}" "$@"
}
