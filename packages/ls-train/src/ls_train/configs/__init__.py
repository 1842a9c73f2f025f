"""The packaged Hydra config tree of ls-train (found as ``pkg://ls_train.configs``)."""
