"""Data: GLUE (hub or TSV folders), users' files, the embedded demo corpus, tokenization, GLUE metrics.

`load_task_data(cfg)` (`prunecli.data.sources`) reads raw examples, `tokenize_task_data(...)`
(`prunecli.data.tokenize`) turns them into cached model inputs, `compute_metrics(...)`
(`prunecli.data.metrics`) scores predictions with the task's GLUE metric.
"""
