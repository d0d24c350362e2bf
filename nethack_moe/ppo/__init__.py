"""PPO: rollout storage, GAE, the loss, the update, the training loop, distributed training, benchmarks."""
