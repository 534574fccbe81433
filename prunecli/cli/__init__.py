"""The command line: `prunecli finetune | prune | evaluate | inspect | schema | demo` (the app: `cli/app.py`)."""
