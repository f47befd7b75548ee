# scores rules (see workflow/rules/common.smk for shared paths and helpers)
