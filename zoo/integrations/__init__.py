"""Integrations with other training stacks: `zoo.integrations.hf.ZOTrainer` for the Hugging Face Trainer."""
