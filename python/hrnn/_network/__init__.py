"""The HRNN network in torch (docs/model.md), shared by training and :class:`hrnn.TrainedModel`.

Private: :mod:`hrnn.training` trains it and exports :class:`hrnn.TrainedModel`;
:meth:`hrnn.TrainedModel.score` replays histories through it. Neither imports the other's package
for it, so ``hrnn.trained_model`` never imports ``hrnn.training``. This ``__init__`` imports
nothing: :mod:`.time_feature` is numpy-only, :mod:`.model` and :mod:`.kernels` need torch.
"""
