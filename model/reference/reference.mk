# Placeholder: the reference model's rules (models, test-reference) go here.
.PHONY: models test-reference
models:
test-reference:
