"""Models: plain ``nn.Module``s, one per file, each split into ``embed -> backbone -> head``.

Every model takes keyword-only, typed arguments (never a config object) and is built by Hydra from
``configs/model/<name>.yaml`` with the data-dependent sizes (``n_num``, ``cardinalities``) filled in by the
training code from the feature spec.
"""
