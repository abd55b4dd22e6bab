"""Routing as code: providers, models, prices, the policy and rules, read from and written to YAML.

A load runs four stages, and writes only if the first three found nothing wrong, so bad input
never leaves a half-loaded database; every message names the file, the line and the key path,
because a person has to fix it by hand:

    loading.py     read the files: YAML with line numbers, merged into one Config
    schema.py      the sections' shape: keys, types, references (checker.py: the converters)
    validation.py  the models' own validation and the shared rules (routing.rules), at their keys
    apply.py       write what differs, in one transaction, and say what changed

`dump.py` goes the other way (export). `agents.config_io` adds the `agents` section and runs
the stages; routing never imports agents.
"""
