"""Passes over the IR: plain functions ``pass(model, ...) -> model`` that fill in derived facts
(:mod:`.accumulator`: exact ranges and safe widths; :mod:`.thresholds`) or record a build decision
on the ops (:mod:`.acc_bits`: the width each accumulator is built with; :mod:`.folding`: PE/SIMD).
:data:`a2qhls.flow.BUILD_STEPS` runs them in order."""
