"""The path of fastai.callback.hook: `hook_output`, `Hooks`, `ActivationStats`, `model_sizes` ...."""

from ..callbacks.hook import (ActivationStats, Hook, HookCallback, Hooks, dummy_eval, has_params, hook_output,
                              hook_outputs, model_sizes, num_features_model)

__all__ = ["Hook", "hook_output", "Hooks", "hook_outputs", "dummy_eval", "model_sizes", "num_features_model",
           "has_params", "HookCallback", "ActivationStats"]
