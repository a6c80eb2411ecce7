"""Exports of a release in the layouts training frameworks read: nnU-Net v2 raw datasets and MONAI datalists.

Both take the cases, phases and masks from the release itself (``etl.use.release``) and the folds from its
split, so a model trained on an export is evaluated on exactly the release's held-out test cases.
"""
