"""Shared test set-up: keep torch to the machine's 2 cores and quiet NLE's log line."""

import logging

import torch

torch.set_num_threads(2)
logging.getLogger("nle").setLevel(logging.WARNING)
