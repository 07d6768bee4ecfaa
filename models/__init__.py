"""vitaltwin's forecasting models: datasets, TFT training, the streaming fast path, evaluation.

Layout (one job per module; import the module you need, this package imports nothing heavy):

- ``schema``: the documented parquet dataset (samples, static, treatments, labels) and its checks.
- ``features``: ``FeatureSpec`` (bins, steps, horizons, inputs, normalisation) and the numpy
  feature functions shared by training and the fast path.
- ``news2`` / ``outcomes``: vectorised NEWS2 and the deterioration outcome (labels).
- ``dataset``: training windows as numpy arrays, and the equivalent ``TimeSeriesDataSet``.
- ``network`` / ``losses`` / ``batches``: the TFT built from a spec, its masked multi-target
  quantile loss, and the cheap collate that feeds prebuilt tensors to it.
- ``training``: fitting (seeds, early stopping, progress) and the checkpoint it writes.
- ``anchor``: the post-network blend of each target's quantiles with its last observed value
  (weight and spread per target and step, fitted on validation patients).
- ``variable_selection``: the TFT's variable selection networks run as one stacked batch
  (training's rounding, or serving's, bit-identical to the stock forward).
- ``step``: exact, faster rewrites of one training step (flat Adam, batched variable selection).
- ``registry``: models directories; loading refuses a checkpoint whose feature spec differs.
- ``twin_inputs``: forecast inputs straight from twin states (batched bin read: ``twin.windows``).
- ``lean_network``: the TFT's forward for serving, with fewer and larger ops.
- ``runners``: the network's forward on those inputs - the lean and the stock network traced
  and frozen, eager torch, or ONNX.
- ``records``: frozen dataclass records built from complete field dicts (the forecast path).
- ``fastpath``: ``Forecaster`` - inputs, forward (split over workers), anchor, risk and
  explanation records; re-exports ``twin_inputs`` and ``runners``.
- ``risk`` / ``explain``: deterioration probability by horizon from the forecast and the observed
  history; top variables and attention.
- ``protocol``: the small ``Forecaster`` protocol and the persistence / NEWS2 baselines.
- ``evaluation`` / ``metrics`` / ``report``: held-out metrics and the HTML report.
- ``synthetic``: a small synthetic cohort in the dataset schema (tests, demos without a simulator).
- ``replay``: a dataset's rows as twin events (to build live twins from a dataset).

The shipped checkpoint is ``models/checkpoints/default`` (see its README.md).

``models`` never imports ``simulators`` or ``streams``; it learns from datasets in the schema.
"""
